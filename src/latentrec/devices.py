"""Which torch device a run or a loaded model uses: ``auto`` or a name, checked against this machine."""

from __future__ import annotations

import os

import torch

from latentrec.errors import ConfigError


def available() -> list[str]:
    """The device types this PyTorch can use here, the fastest last: ``cpu``, then ``cuda`` and/or ``mps``."""
    return ["cpu", *["cuda"] * torch.cuda.is_available(),
            *["mps"] * bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())]


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU. For CUDA, ``CUBLAS_WORKSPACE_CONFIG`` is set unless it is set
    already: cuBLAS repeats its matrix products only with a fixed workspace (it reads the variable as it starts)."""
    device = _picked(name)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device


def _picked(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if "cuda" in available() else available()[-1])
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device (--device) must be auto, cpu, cuda, cuda:N or mps, not {name!r}.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); "
                          f"use device 'auto' or 'cpu'.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: there are only {torch.cuda.device_count()} CUDA devices (cuda:0 ...).")
    if device.type == "mps" and "mps" not in available():
        raise ConfigError(f"device {name!r}: this PyTorch has no usable MPS (Apple GPU) device; use device 'auto' "
                          f"or 'cpu'.")
    return device
