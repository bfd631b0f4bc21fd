"""The saved model directory: ``model.safetensors`` (tensors) + ``model.json`` (everything else).

Never pickle: loading a model can only read numbers and JSON, not run code. A model is never
missing at its path, not even while it is replaced (``latentrec.atomic.atomic_folder``): both files
are staged whole, then renamed in, the weights first. Both carry the same ``write_id``, so a reader
that opens one before a rename and the other after it reads again, and one that finds a save killed
between the two renames reads the description that save left staged.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from latentrec.atomic import atomic_folder, atomic_path, stages, writable_or_fail, write_text
from latentrec.errors import ModelFileError

FORMAT = "latentrec-model"
FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"
MODEL_FILES = (WEIGHTS, META)  # renamed into place in this order
WRITE_ID = "write_id"  # in model.json and in the weights' header: which write the file belongs to
READ_TRIES = 50  # a swap takes microseconds; a reader that keeps seeing a mix gives up after ~1 s
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}  # safetensors' names of the dtypes a model may hold


def write_model_dir(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict,
                    write_id: str | None = None) -> Path:
    """Write (or replace) the model dir at ``path`` holding ``tensors`` and ``meta`` (``atomic.atomic_folder``: a new
    folder renamed into place, or in an existing one the weights, then the description, each in one rename; other
    files in it are kept). ``write_id``: the write's id, when the model is part of a larger write (a tune report);
    else a new one."""
    writable_or_fail(path, folder=True)  # not over a file
    path = Path(path)
    write_id = write_id or uuid.uuid4().hex
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **meta, WRITE_ID: write_id}, indent=1)
    try:
        with atomic_folder(path, own=MODEL_FILES) as tmp:
            with atomic_path(tmp / WEIGHTS) as weights:
                write_tensors(weights, tensors, {WRITE_ID: write_id})
            write_text(tmp / META, text)
    except OSError as e:
        raise ModelFileError(f"Cannot write the model to {path}: {e.strerror or e}.") from None
    return path


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, a failed write (disk full, file too large) raised as the ``OSError`` it is."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:  # safetensors' Rust writer reports I/O errors as "... (os error 28)"
        code = re.search(r"\(os error (\d+)\)", str(e))
        raise (OSError(int(code[1]), os.strerror(int(code[1]))) if code else OSError(str(e))) from None


def read_model_dir(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a model dir, with every failure turned into one clear sentence."""
    path = Path(path)
    for _ in range(READ_TRIES):
        try:
            tensors, meta, write_id = _read_once(path)
        except OSError as e:  # unreadable: permissions, an I/O error
            raise ModelFileError(f"Cannot read the model in {path}: {e.strerror or e}"
                                 f"{f' ({e.filename})' if e.filename else ''}.") from None
        if meta.get(WRITE_ID) == write_id:
            return tensors, meta
        if not isinstance(meta.get(WRITE_ID, ""), str):
            raise ModelFileError(f"{path / META}: field '{WRITE_ID}' must be a string, not "
                                 f"{json.dumps(meta[WRITE_ID])[:40]}; the file was edited or damaged.")
        time.sleep(0.02)  # caught between the two files of a replacement: read the new pair
    staged = _staged_meta(path, write_id)
    if staged is not None:
        return tensors, staged
    raise ModelFileError(f"{path}: {WEIGHTS} and {META} come from different writes ({WRITE_ID} {write_id} and "
                         f"{meta.get(WRITE_ID)}); copy both files from one model dir, or save the model again.")


def weights_write_id(path: str | os.PathLike) -> str | None:
    """The write id in the header of the model dir's weights, which say which write the model loads as (a killed
    save's staged description is read beside them); None if they are missing, unreadable or carry none."""
    try:
        with open(Path(path) / WEIGHTS, "rb") as f:
            write_id = read_header(f)[1].get(WRITE_ID)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):  # a header that is not an object
        return None
    return write_id if isinstance(write_id, str) else None


def _staged_meta(path: Path, write_id: str | None) -> dict | None:
    """The description a save killed between its two renames left in its staging folder, if it belongs to the
    weights in place (same write id): the model that save was putting in, read as it would have been."""
    for staged in (stage / META for stage in stages(path)):
        try:
            meta = json.loads(staged.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(meta, dict) and write_id is not None and meta.get(WRITE_ID) == write_id \
                and meta.get("format") == FORMAT and meta.get("format_version") == FORMAT_VERSION:
            return meta
    return None


def _read_once(path: Path) -> tuple[dict[str, torch.Tensor], dict, str | None]:
    if not path.exists():
        raise ModelFileError(f"Model directory {path} does not exist; train one with `latentrec train --out {path}`.")
    if not path.is_dir():
        raise ModelFileError(
            f"{path} is not a latentrec model directory (expected a folder with {WEIGHTS} and {META}); "
            f"other files, pickles included, are refused without being opened as models."
        )
    for name in MODEL_FILES:
        if not (path / name).is_file():
            raise ModelFileError(f"{path} has no {name}; it is not a complete latentrec model directory.")
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path / META} is not valid JSON ({e}).") from None
    except RecursionError:
        raise ModelFileError(f"{path / META} is not a latentrec model description (nested too deeply).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path / META} is not a latentrec model description.")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path / META}: field 'format_version' must be a whole number of at least 1, "
                             f"not {json.dumps(version)}.")
    if version > FORMAT_VERSION:
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
        tensors, header = read_weights(path / WEIGHTS)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as e:
        raise ModelFileError(f"{path / WEIGHTS} is truncated or corrupt ({e}).") from None
    for name, t in tensors.items():  # aminmax: one pass, no copy; NaN anywhere makes both NaN
        if t.is_floating_point() and t.numel() and not all(map(math.isfinite, torch.aminmax(t))):
            raise ModelFileError(f"{path / WEIGHTS} is damaged: {name} holds NaN or infinite numbers; "
                                 f"train or copy the model again.")
    return tensors, meta, header.get(WRITE_ID)


def read_header(f) -> tuple[dict, dict]:
    """A safetensors file's header, read from the start of the open file ``f``: its tensor entries and its
    ``__metadata__``; ValueError where the length or the metadata is not what the format says."""
    n = int.from_bytes(f.read(8), "little")
    if n > os.fstat(f.fileno()).st_size - 8:
        raise ValueError(f"its header claims {n} bytes, more than the file holds")
    header = json.loads(f.read(n))
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise ValueError("its __metadata__ is not an object")
    return header, meta


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a safetensors file, each read into memory of its own, and the file's metadata.

    Not memory-mapped as ``safetensors.safe_open`` does: a process keeps using its model (or a resumed run its
    checkpoint) even after the file is truncated or rewritten in place (a mapped page would then kill it with
    SIGBUS). Peak memory is the tensors themselves; ``safetensors.torch.load`` would hold the whole file twice.
    """
    with open(path, "rb") as f:
        header, meta = read_header(f)
        size, n = os.fstat(f.fileno()).st_size, f.tell() - 8
        tensors = {}
        for name, entry in header.items():
            (begin, end), dtype = entry["data_offsets"], DTYPES[entry["dtype"]]
            if end > size - 8 - n:
                raise ValueError(f"{name} ends past the end of the file")
            if not 0 <= begin <= end or end - begin != math.prod(entry["shape"]) * dtype.itemsize:
                raise ValueError(f"{name}'s byte range does not match its shape")
            t = torch.empty(entry["shape"], dtype=dtype)
            f.seek(8 + n + begin)
            if f.readinto(t.reshape(-1).view(torch.uint8).numpy()) != end - begin:
                raise ValueError(f"{name} ends past the end of the file")
            tensors[name] = t
    return tensors, meta
