"""Data-parallel training under ``torchrun`` (torch.distributed: gloo on CPU, NCCL on GPU).

``torchrun --nproc-per-node N -m latentrec train ...`` starts N copies of the command. Each
rank keeps an equal share of the training rows (its shard; the fewer than N rows left over by
the split into equal shares are left out) and trains its own copy of the model on it; after every step the copies are made identical again:

- ``--solver autograd``: gradients are averaged across ranks inside ``backward`` (a hook per
  parameter), so every rank takes the same optimizer step (batch = N x bs);
- ``--solver sgd``: each rank runs the per-rating kernel over a quarter of its shard, then
  the row updates (weights minus the starting weights) are summed across ranks and added to
  the starting weights, four times an epoch: to first order, the single-process epoch;
- ``--solver als`` and ``bayes`` are not data-parallel but row-parallel: every rank solves a
  contiguous range of the users (then of the items) holding about ``1/N`` of the ratings, and the
  ranges are joined with ``all_gather`` (``rating_graph.Partition``). Gibbs hyperparameters and
  noise come from the same seeded generator on every rank, so N ranks run the one-process chain.

Validation runs on every rank over the whole validation set (same weights, same result);
only rank 0 prints and writes the model. Every rank restores a checkpoint; rank 0 writes it,
with every rank's random generator states (:func:`gather_states`).
"""

from __future__ import annotations

import atexit
import json
import math
import os

import numpy as np
import torch

from latentrec.data.batches import Encoded
from latentrec.data.file_shares import Share
from latentrec.solvers.base import Runner
from latentrec.solvers.diverged import Diverged, check_loss
from latentrec.solvers.rating_graph import Partition

LEAVE_WAIT_S = 30  # how long a leaving rank waits for the others
SYNCS_PER_EPOCH = 4  # --solver sgd: row updates are summed across ranks this often per epoch


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def active() -> bool:
    return world()[1] > 1


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, ``cuda`` means this process's own GPU (``cuda:LOCAL_RANK``)."""
    if active() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def init(device: torch.device) -> None:
    """Join the process group (once): NCCL for CUDA, gloo otherwise."""
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        # leave the group before the interpreter exits: a group torn down by exit-time destructors
        # can abort the process ("terminate called without an active exception") after good work
        atexit.register(_leave)


def _leave() -> None:
    """Wait (bounded) until every rank is leaving, then tear the group down: a rank that destroys its
    group while a peer still talks to it can abort the peer (seen after an interrupted run)."""
    from datetime import timedelta

    import torch.distributed as dist

    if dist.is_initialized():
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=LEAVE_WAIT_S))
            else:
                dist.barrier()
        except RuntimeError:
            pass  # a peer is gone already: nothing left to wait for
        dist.destroy_process_group()


def shard(data: Encoded, rank: int, size: int, seed: int | None) -> Encoded:
    """This rank's share of the rows: a seeded shuffle dealt round-robin, equal sizes on all ranks (the last
    ``len(data) % size`` rows of the shuffle are left out, so that every rank runs as many batches)."""
    n = len(data) // size * size
    idx = np.sort(np.random.default_rng(seed or 0).permutation(len(data))[:n][rank::size])
    return data.take(idx)


class DataParallelRunner(Runner):
    """Wraps an epoch runner built on this rank's shard; keeps all ranks' weights identical."""

    def __init__(self, factory, model: torch.nn.Module, data: Encoded, cfg, device: torch.device):
        import torch.distributed as dist

        init(device)
        self.dist = dist
        rank, self.size = world()
        self.model = model
        self.params = [p for p in model.parameters()]
        for p in self.params:  # start from rank 0's initial weights
            dist.broadcast(p.data, 0)
        part = shard(data, rank, self.size, cfg.seed)
        self.sum_updates = cfg.solver == "sgd"
        syncs = SYNCS_PER_EPOCH if self.sum_updates else 1
        self.inners = [factory(model, shard(part, j, syncs, cfg.seed), cfg, device) for j in range(syncs)]
        for inner in self.inners:  # a check inside one rank's epoch would leave its peers in a collective
            inner.checks_batches = False
        if not self.sum_updates:
            for p in self.params:
                if p.requires_grad:
                    p.register_post_accumulate_grad_hook(self._average)

    def _average(self, p: torch.Tensor) -> None:
        """Replace ``p``'s gradient by the mean of every rank's. A sparse one (an embedding table's) is made dense:
        the ranks' batches touch different rows, NCCL reduces dense tensors only, and a hook on the gradient
        itself may not change its layout. So under torchrun the optimizer steps every row of such a table."""
        grad = p.grad.to_dense() if p.grad.is_sparse else p.grad.contiguous()
        self.dist.all_reduce(grad)
        p.grad = grad / self.size

    def epoch(self, lr_at) -> float:
        """One epoch on this rank's shard, with every rank's updates combined; the divergence check is made
        once, on the loss summed over all ranks, so that all ranks raise together or none does. A shard
        that alone went non-finite counts as an infinite loss (its updates spread the NaN to every rank)."""
        n = len(self.inners)
        mse = 0.0
        for j, inner in enumerate(self.inners):
            start = [p.data.clone() for p in self.params] if self.sum_updates else None
            try:
                mse += inner.epoch(lambda frac, j=j: lr_at((j + frac) / n)) / n
            except Diverged:
                mse = math.inf
            if self.sum_updates:
                with torch.no_grad():
                    for p, p0 in zip(self.params, start):
                        delta = p.data - p0
                        self.dist.all_reduce(delta)
                        p.data.copy_(p0 + delta)
        loss = torch.tensor([mse], dtype=torch.float64, device=self.params[0].device)
        self.dist.all_reduce(loss)
        return check_loss(float(loss) / self.size, self.limit)


def data_parallel(factory, model: torch.nn.Module, data: Encoded, cfg, device: torch.device):
    """``factory(model, data, cfg, device)`` alone; under torchrun wrapped in :class:`DataParallelRunner`
    (sgd, autograd), or the closed-form solvers' runners on this rank's rows (als, bayes)."""
    if not active():
        return factory(model, data, cfg, device)
    if cfg.solver in ("als", "bayes"):  # row-parallel: the factory takes this rank's share of the rows
        init(device)
        return factory(model, data, cfg, device, Partition(*world()))
    return DataParallelRunner(factory, model, data, cfg, device)


def _collective_device() -> torch.device:
    """Where the process group's collectives take their tensors: this process's GPU under NCCL, else the CPU."""
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def join(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Every rank's 1-D ``values`` (same dtype on all ranks) joined in rank order, on every rank, and each
    rank's length: the lengths by ``all_gather``, then each rank's values broadcast into their place of
    one buffer of the joined length (no padding, which unequal parts would multiply)."""
    import torch.distributed as dist

    rank, size = world()
    device = _collective_device()
    values = np.ascontiguousarray(values)
    mine = torch.from_numpy(values if values.flags.writeable else values.copy()).to(device)
    lengths = torch.zeros(size, dtype=torch.int64, device=device)
    dist.all_gather(list(lengths.view(size, 1)), torch.tensor([len(mine)], device=device))
    sizes = lengths.tolist()
    out = torch.empty(sum(sizes), dtype=mine.dtype, device=device)
    at = 0
    for r, n in enumerate(sizes):
        if n:
            place = out[at:at + n]
            if r == rank:
                place.copy_(mine)
            dist.broadcast(place, r)
        at += n
    return out.cpu().numpy(), sizes


def from_rank0(value: int) -> int:
    """Rank 0's ``value``, on every rank: for a choice every rank must make alike, such as whether to take part in a
    collective now (a rank's own clock may say otherwise) or a random seed; ``value`` outside torchrun."""
    if not active():
        return value
    import torch.distributed as dist

    said = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.broadcast(said, 0)
    return int(said.item())


def agreed(flag: bool) -> bool:
    """Rank 0's ``flag``, on every rank (:func:`from_rank0`)."""
    return bool(from_rank0(int(flag)))


def file_share() -> Share:
    """This rank's part in reading one file together (the process group joined already)."""
    return Share(*world(), join)


def gather_states(tensors: dict[str, torch.Tensor], meta: dict) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """Every rank's ``(tensors, JSON-able meta)``, in rank order, on every rank; just this one outside torchrun.

    Sent as safetensors bytes (nothing is pickled).
    """
    if not active():
        return [(tensors, meta)]
    from safetensors.torch import load, save

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata={"meta": json.dumps(meta)})
    joined, sizes = join(np.frombuffer(bytearray(blob), np.uint8))
    out, at = [], 0
    for size in sizes:
        data = joined[at:at + size].tobytes()
        at += size
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        out.append((load(data), json.loads(header["__metadata__"]["meta"])))
    return out
