"""CollabNN (the nn recipe) on a big catalogue: lazy row steps against dense ones, split-layer scoring
against the concatenated MLP, in one process.

    python benchmarks/collab_nn_scale.py                       # 1M ratings, 100,000 users, 50,000 items
    python benchmarks/collab_nn_scale.py --ratings 200000 --users 20000 --items 10000 --batches 10

Synthetic ratings (``latentrec synth``'s generator, power-law popularity), the recipe's batch size (2048),
Adam with decoupled decay 0.3 and embedding widths from ``embedding_size``. Training: ``--batches`` batches
timed (after one warm-up batch) with the sparse gradients stepped row by row, then the same batches from the
same weights with the gradients made dense first, so that Adam steps every row (what it did before); the
epoch figure is the mean batch times the epoch's batch count. Scoring: every item for ``--users-scored``
users, by ``score_users`` and by the concatenated MLP on every (user, item) pair. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from latentrec.data.batches import Batches, Encoded
from latentrec.data.synth import SynthSpec, synth_arrays
from latentrec.models.dot import sigmoid_range
from latentrec.models.nn import CollabNN
from latentrec.solvers.optim import make_optimizer


def batch_seconds(model: CollabNN, data: Encoded, n_batches: int, bs: int, dense: bool) -> tuple[float, float]:
    """Mean seconds of a training batch (forward, backward, Adam step) and the last batch's loss."""
    opt = make_optimizer("adam", model.parameters(), 0.3, "decoupled", 0.9)
    it = iter(Batches(data, bs=bs, shuffle=True, seed=0))
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
    return (time.perf_counter() - t0) / n_batches, float(loss)


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
    torch.manual_seed(0)
    model = CollabNN(args.users + 1, args.items + 1, y_range=(0.5, 5.5), implicit=True)
    model.set_rated(data.users, data.items)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    n_batches = -(-args.ratings // args.bs)
    row = {"ratings": args.ratings, "users": args.users, "items": args.items,
           "widths": [model.user_factors.shape[1], model.item_factors.shape[1]],
           "weights_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "batches_per_epoch": n_batches}
    for name, dense in (("lazy", False), ("dense", True)):
        model.load_state_dict(start)
        seconds, loss = batch_seconds(model.train(), data, args.batches, args.bs, dense)
        row[f"{name}_epoch_s"], row[f"{name}_loss"] = round(seconds * n_batches, 1), round(loss, 4)
    row["train_speedup"] = round(row["dense_epoch_s"] / row["lazy_epoch_s"], 2)
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
