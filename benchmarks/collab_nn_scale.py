"""CollabNN (the nn recipe) on a big catalogue, before and after this round's changes, in one process:
training batches and scoring every item.

    python benchmarks/collab_nn_scale.py                       # 1M ratings, 100,000 users, 50,000 items
    python benchmarks/collab_nn_scale.py --ratings 200000 --users 20000 --items 10000 --batches 10

Synthetic ratings (``latentrec synth``'s generator, power-law popularity), the recipe's batch size (2048),
Adam with decoupled decay 0.3, one hidden layer of 100. Training, ``--batches`` batches timed after one warm-up
batch, each setup from its own seeded weights:

* ``before``: fastai's embedding widths (up to 600), gradients made dense, Adam in torch ops on every row;
* ``capped``: widths capped at 128 (``embedding_size``), still dense, torch ops;
* ``now``: capped, sparse gradients stepped only on the rows a batch touched, by the compiled Adam kernel.

An epoch figure is the mean batch times the epoch's batch count; the loss is the first batch's. Scoring: every
item for ``--users-scored`` users, by ``score_users`` and by the concatenated MLP on every (user, item) pair.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from collab_nn_implicit import batch_seconds

from latentrec.data.batches import Encoded
from latentrec.data.synth import SynthSpec, synth_arrays
from latentrec.models.dot import sigmoid_range
from latentrec.models.nn import CollabNN
from latentrec.solvers.optim import Adam, Optimizer


class TorchAdam(Adam):
    """Adam in torch's ops on the CPU too (what CUDA runs), not the compiled kernel."""

    apply = Optimizer.apply


def build(n_users: int, n_items: int, data: Encoded, widths: tuple[int, int] | None) -> CollabNN:
    torch.manual_seed(0)
    model = CollabNN(n_users + 1, n_items + 1, *(widths or (None, None)), y_range=(0.5, 5.5), implicit=True)
    model.set_rated(data.users, data.items)
    return model


@torch.no_grad()
def concatenated_scores(model: CollabNN, users: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    """Every item for ``users`` through the whole MLP, pair by pair (the reference ``score_users`` replaced)."""
    items = model.item_embeddings(torch.arange(model.n_items))
    per = max(1, chunk // model.n_items)
    rows = []
    for s in range(0, len(users), per):
        u = model.user_embeddings(users[s:s + per])
        z = model.mlp(torch.cat([u.repeat_interleave(model.n_items, 0), items.repeat(len(u), 1)], 1))[:, 0]
        rows.append(sigmoid_range(z, *model.y_range).view(len(u), -1))
    return torch.cat(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--users-scored", type=int, default=200)
    ap.add_argument("--bs", type=int, default=2048)
    args = ap.parse_args()
    u, i, r = synth_arrays(SynthSpec(args.ratings, args.users, args.items, seed=0))
    data = Encoded(u + 1, i + 1, r)
    n_batches = -(-args.ratings // args.bs)
    row = {"ratings": args.ratings, "users": args.users, "items": args.items, "batches_per_epoch": n_batches}
    fastai = tuple(min(600, round(1.6 * (n + 1) ** 0.56)) for n in (args.users, args.items))
    for name, widths, now in (("before", fastai, False), ("capped", None, False), ("now", None, True)):
        model = build(args.users, args.items, data, widths)
        opt = (Adam if now else TorchAdam)(model.parameters(), 0.3, "decoupled")
        seconds, loss = batch_seconds(model.train(), data, args.batches, args.bs, opt, dense=not now)
        row[f"{name}_widths"] = [model.user_factors.shape[1], model.item_factors.shape[1]]
        row[f"{name}_epoch_s"], row[f"{name}_loss"] = round(seconds * n_batches, 1), round(loss, 4)
    row["train_speedup"] = round(row["before_epoch_s"] / row["now_epoch_s"], 1)
    model.eval()
    users = torch.arange(1, args.users_scored + 1)
    model.score_users(users[:1])  # compiles the kernel (or loads it from numba's cache)
    for name, score in (("split", model.score_users), ("concatenated", lambda us: concatenated_scores(model, us))):
        t0 = time.perf_counter()
        scores = score(users)
        row[f"{name}_pairs_per_s"] = round(scores.numel() / (time.perf_counter() - t0))
        row[f"{name}_checksum"] = round(float(scores.double().sum()), 3)
    row["scoring_speedup"] = round(row["split_pairs_per_s"] / row["concatenated_pairs_per_s"], 1)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
