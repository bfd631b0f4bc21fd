"""Shared fixtures: a planted low-rank ratings generator, the real ML-100K copy and the devices present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latentrec.data.ratings import Ratings

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Every device a test should pass on: the CPU always, CUDA where present (skipped elsewhere)."""
    return request.param


def assert_same_scores(a, b, same_device: bool, atol: float = 1e-5) -> None:
    """Scores of one model computed twice: bit-identical on one device; across devices (scored on CUDA,
    reloaded on the CPU) equal up to float32 rounding, since the kernels sum in different orders."""
    if same_device:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def lowrank_ratings(n_users=300, n_items=200, k=4, density=0.3, noise=0.1, seed=0) -> tuple[pd.DataFrame, float]:
    """Ratings r = 3 + u.v + b_u + b_i + N(0, noise): returns the frame and the noise std (the RMSE floor)."""
    rng = np.random.default_rng(seed)
    U = rng.normal(0, 0.6, (n_users, k))
    V = rng.normal(0, 0.6, (n_items, k))
    bu, bi = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = 3 + (U[u] * V[i]).sum(1) + bu[u] + bi[i] + rng.normal(0, noise, len(u))
    df = pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i], "rating": r.astype(np.float32)})
    return df, noise


@pytest.fixture
def lowrank() -> tuple[Ratings, Ratings, float]:
    """Train/test Ratings of planted low-rank data and its noise floor."""
    df, noise = lowrank_ratings()
    perm = np.random.default_rng(1).permutation(len(df))
    cut = int(0.8 * len(df))
    train = Ratings(df.iloc[perm[:cut]].reset_index(drop=True), "synthetic-train")
    test = Ratings(df.iloc[perm[cut:]].reset_index(drop=True), "synthetic-test")
    return train, test, noise


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The ML-100K folder (via LATENTREC_DATA, else ../shared/data); tests using it skip only if it is absent."""
    root = Path(os.environ.get("LATENTREC_DATA", SHARED_DATA))
    folder = root / "ml-100k"
    if not (folder / "u.data").is_file():
        pytest.skip("ML-100K copy not found; set LATENTREC_DATA")
    os.environ.setdefault("LATENTREC_DATA", str(root))
    return folder
