"""``--solver sgd`` on CUDA: the CPU kernel's per-rating update as one Triton kernel launch per epoch.

Each Triton program walks its own contiguous run of the ratings one at a time, in the order the
CPU kernel visits them (``sgd_torch.kernel_order``): load the two factor rows (one vector of
``k`` lanes each), predict, take the error, write the two rows and the two biases back. The
programs run at once without locks (Hogwild, as in cuMF_SGD): a row that two programs touch at the
same moment keeps one of their updates. How many programs run is bounded like the batched path's
batch (:func:`programs`: half the smaller table), so a row is rarely in two programs' hands at once.
Each rating moves its two rows once each way: the epoch is bound by memory traffic, not by
kernel launches or by an ``index_add_`` of whole batches.

The same kernel runs on the CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before
Triton is imported), one program after another: then an epoch is exactly the sequential per-rating
SGD of the CPU kernel over the same order (``tests/test_sgd_triton.py``).
"""

from __future__ import annotations

import math
import os

import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.solvers.base import Runner
from latentrec.solvers.diverged import check_loss
from latentrec.solvers.sgd_torch import batch_size, ordered_columns

MIN_RUN = 16  # ratings per program at least
FP_FUSION = True  # multiply-adds fused (said at launch: Triton 3.9 warns when left to its default)


def usable(device: torch.device) -> bool:
    """Triton is installed and can run on ``device`` (CUDA; the CPU only under its interpreter)."""
    if device.type != "cuda" and not _interpreting():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def programs(n: int, n_users: int, n_items: int) -> int:
    """Programs of an epoch: as many as the batched path's batch (half the smaller table), each with
    at least ``MIN_RUN`` ratings."""
    return max(1, min(batch_size(n_users, n_items), n // MIN_RUN))


def launch_shape(k: int) -> tuple[int, int]:
    """Lanes of a factor row (the next power of two of ``k``: Triton's vectors) and warps of a program
    (64 lanes fill one warp, 2 values a thread; at most 4 warps)."""
    lanes = 1 << max(k - 1, 0).bit_length()
    return lanes, max(1, min(4, lanes // 64))


def _interpreting() -> bool:
    """Triton's interpreter is on (``TRITON_INTERPRET=1`` in the environment before Triton is first imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def sgd_epoch(model: torch.nn.Module, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor,
              lr: float, wd: float, n_programs: int) -> torch.Tensor:
    """One epoch over the ratings (int32, int32, float32, in visiting order) in place; returns the sum of
    squared errors as a device tensor."""
    P, Q = model.user_factors.data, model.item_factors.data
    bu, bi = model.user_bias.data, model.item_bias.data
    n, k = len(ratings), P.shape[1]
    lanes, warps = launch_shape(k)
    run = math.ceil(n / n_programs) if n else 1
    lo, hi = model.y_range if model.y_range is not None else (0.0, 1.0)
    from latentrec.solvers.sgd_triton_kernel import sgd_runs

    sq = torch.zeros(n_programs, dtype=torch.float64, device=ratings.device)
    sgd_runs[(n_programs,)](
        users, items, ratings, P, Q, bu, bi, sq, n, run, float(lr), float(1.0 - lr * wd), float(lo), float(hi - lo),
        K=k, KP=lanes, SIGMOID=model.y_range is not None, BIAS=bool(model.use_bias),
        num_warps=warps, enable_fp_fusion=FP_FUSION,
    )
    return sq.sum()


class TritonSGDRunner(Runner):
    """Epoch runner of :func:`sgd_epoch`; the ratings are put in the kernel's order once, on the device.

    Building it compiles the kernel (an epoch over no ratings), so a machine where Triton cannot
    compile (no C compiler, an unsupported GPU) fails here, where ``sgd_runner`` can fall back.
    """

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        nothing = torch.zeros(0, dtype=torch.int32, device=device)
        sgd_epoch(model, nothing, nothing, nothing.float(), 0.0, 0.0, 1)
        self.model, self.wd = model, cfg.wd
        self.users, self.items, self.ratings = ordered_columns(model, data, cfg.seed, device)
        self.bs = programs(len(data), model.n_users, model.n_items)  # how many ratings are in flight at once

    def epoch(self, lr_at) -> float:
        total = sgd_epoch(self.model, self.users, self.items, self.ratings, lr_at(0.0), self.wd, self.bs)
        return check_loss(float(total) / max(len(self.ratings), 1), self.limit)
