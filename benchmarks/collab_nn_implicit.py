"""CollabNN with implicit embeddings (the nn recipe): training seconds per epoch, batch-only sums vs
the whole-matrix product they replaced, in one process.

    python benchmarks/collab_nn_implicit.py --ratings 1e6 3e6 --batches 20
    LATENTREC_DATA=../shared/data python benchmarks/collab_nn_implicit.py --ratings ml-100k --batches 40

Synthetic ratings (``latentrec synth``'s generator, 20 users and 4 items per 1000 ratings), the nn
recipe's batch size (2048), Adam, fastai's embedding sizes and one hidden layer of 100. For each
size both models start from the same weights; ``--batches`` batches of each are timed (after one
warm-up batch), twice, alternating the two models, and the epoch is the faster mean times the
epoch's batch count (on a busy machine the first model timed paid for the machine's warm-up). The old way multiplied the
whole sparse who-rated-what matrix on every batch; it is kept here, and only here, as the reference.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import numpy as np
import torch

from latentrec.data.batches import Batches, Encoded
from latentrec.data.synth import SynthSpec, synth_arrays
from latentrec.models.nn import CollabNN
from latentrec.solvers.optim import make_optimizer


class SparseTimes(torch.autograd.Function):
    """``x @ y`` for a constant sparse ``x``, with the transpose for the backward pass built once."""

    @staticmethod
    def forward(ctx, x, x_t, y):
        ctx.x_t = x_t
        return x @ y

    @staticmethod
    def backward(ctx, grad):
        return None, None, ctx.x_t @ grad


class WholeMatrixCollabNN(CollabNN):
    """The previous implicit path: every embedding from the full sparse product, then the batch's rows."""

    def _incidence(self):
        if getattr(self, "_sparse", None) is None:
            u, i = self.rated_users, self.rated_items
            cu = torch.bincount(u, minlength=self.n_users).float().clamp_min(1)
            ci = torch.bincount(i, minlength=self.n_items).float().clamp_min(1)
            xu = torch.sparse_coo_tensor(torch.stack([u, i]), cu[u].rsqrt(), (self.n_users, self.n_items)).coalesce()
            xi = torch.sparse_coo_tensor(torch.stack([i, u]), ci[i].rsqrt(), (self.n_items, self.n_users)).coalesce()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._sparse = tuple(m.to_sparse_csr() for m in (xu, xu.t(), xi, xi.t()))
        return self._sparse

    def forward(self, x):
        xu, xu_t, xi, xi_t = self._incidence()
        users = self.user_factors + SparseTimes.apply(xu, xu_t, self.user_implicit)
        items = self.item_factors + SparseTimes.apply(xi, xi_t, self.item_implicit)
        return self.head(users[x[:, 0]], items[x[:, 1]])


def batch_seconds(model, data: Encoded, n_batches: int, bs: int, opt=None, dense: bool = False) -> tuple[float, float]:
    """Mean seconds of a training batch (forward, backward, Adam step), and the first loss; ``opt`` defaults to
    the recipe's Adam, ``dense`` makes sparse gradients dense before the step."""
    opt = opt or make_optimizer("adam", model.parameters(), 0.3, "decoupled", 0.9)
    it = iter(Batches(data, bs=bs, shuffle=True, seed=0))
    first = None
    for b in range(n_batches + 1):
        if b == 1:
            t0 = time.perf_counter()
        x, y = next(it)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        if dense:
            for p in model.parameters():
                p.grad = p.grad.to_dense()
        opt.step(5e-3)
        opt.zero_grad()
        first = loss.item() if first is None else first
    return (time.perf_counter() - t0) / n_batches, first


def synthetic(n: int) -> tuple[Encoded, int, int]:
    n_users, n_items = n // 50, n // 250
    u, i, r = synth_arrays(SynthSpec(n, n_users, n_items, seed=0))
    return Encoded(u + 1, i + 1, r), n_users, n_items


def ml100k_u1() -> tuple[Encoded, int, int]:
    from latentrec.data.ratings import load_ratings
    from latentrec.data.split import ml100k_split_files
    from latentrec.data.vocab import Vocab
    from latentrec.training.fit import encode

    df = load_ratings(ml100k_split_files("u1")[0]).df
    users, items = Vocab.from_ids(df["user"]), Vocab.from_ids(df["item"])
    return encode(df, users, items), len(users) - 1, len(items) - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", nargs="+", default=["1e6", "3e6"], help="sizes, or ml-100k (its u1.base)")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--bs", type=int, default=2048)
    args = ap.parse_args()
    for size in args.ratings:
        data, n_users, n_items = ml100k_u1() if size == "ml-100k" else synthetic(int(float(size)))
        n = len(data)
        torch.manual_seed(0)
        new = CollabNN(n_users + 1, n_items + 1, y_range=(0.5, 5.5), implicit=True)
        new.set_rated(data.users, data.items)
        old = WholeMatrixCollabNN(n_users + 1, n_items + 1, y_range=(0.5, 5.5), implicit=True)
        old.set_rated(data.users, data.items)
        start = {k: v.clone() for k, v in new.state_dict().items()}
        old.load_state_dict(start)
        x = torch.from_numpy(np.stack([data.users[:4096], data.items[:4096]], 1).astype(np.int64))
        with torch.no_grad():
            gap = float((new.eval()(x) - old.eval()(x)).abs().max())
        n_batches = -(-n // args.bs)
        row = {"ratings": n, "users": n_users, "items": n_items, "sizes": [new.user_factors.shape[1],
               new.item_factors.shape[1]], "batches_per_epoch": n_batches, "max_prediction_gap": gap}
        for _ in range(2):
            for name, model in (("batch_rows", new.train()), ("whole_matrix", old.train())):
                model.load_state_dict(start)
                s, loss = batch_seconds(model, data, args.batches, args.bs)
                row[f"{name}_epoch_s"] = min(row.get(f"{name}_epoch_s", math.inf), round(s * n_batches, 1))
                row[f"{name}_first_loss"] = round(loss, 5)
        row["speedup"] = round(row["whole_matrix_epoch_s"] / row["batch_rows_epoch_s"], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
