"""The saved model directory: ``model.safetensors`` (tensors) + ``model.json`` (everything else).

Never pickle: loading a model can only read numbers and JSON, not run code. Writes go to a
temporary sibling folder first and are swapped in with renames, so a crash never leaves a
half-written model where a good one was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latentrec.errors import ModelFileError

FORMAT = "latentrec-model"
FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"


def write_model_dir(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Atomically (re)place ``path`` with a model dir holding ``tensors`` and ``meta``."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as e:
        raise ModelFileError(f"Cannot write the model to {path}: {e.strerror or e}.") from None
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        with open(tmp / META, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "format_version": FORMAT_VERSION, **meta}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if path.exists():
            if not path.is_dir():
                raise ModelFileError(f"Cannot write the model to {path}: it exists and is not a directory.")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.replace(path, old / "m")
        try:
            os.replace(tmp, path)
        except OSError:
            if old is not None and not path.exists():
                os.replace(old / "m", path)  # the previous good model goes back where it was
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise ModelFileError(f"Cannot write the model to {path}: {e.strerror or e}.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_model_dir(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a model dir, with every failure turned into one clear sentence."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"Model directory {path} does not exist; train one with `latentrec train --out {path}`.")
    if not path.is_dir():
        raise ModelFileError(
            f"{path} is not a latentrec model directory (expected a folder with {WEIGHTS} and {META}); "
            f"other files, pickles included, are refused without being opened as models."
        )
    for name in (WEIGHTS, META):
        if not (path / name).is_file():
            raise ModelFileError(f"{path} has no {name}; it is not a complete latentrec model directory.")
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path / META} is not valid JSON ({e}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path / META} is not a latentrec model description.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model format {version}, newer than this latentrec reads ({FORMAT_VERSION}); "
            f"upgrade latentrec."
        )
    with open(path / WEIGHTS, "rb") as f:
        head = f.read(9)
    if head[8:9] != b"{":  # safetensors: an 8-byte header length, then the JSON header
        kind = "a pickle or zip file" if head[:1] == b"\x80" or head[:2] == b"PK" else "not a safetensors file"
        raise ModelFileError(f"{path / WEIGHTS} is {kind}; refused without being unpickled or run.")
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path / WEIGHTS} is truncated or corrupt ({e}).") from None
    return tensors, meta
