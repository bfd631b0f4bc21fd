"""The one way latentrec writes a file: a temp file in the same folder, fsync, ``os.replace``.

A reader sees the old file or the new one, never half of one, and a crash or full disk leaves
no partial file behind (the temp file is removed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latentrec.errors import DataError, ModelFileError


def make_folder(path: str | os.PathLike) -> Path:
    """The folder at ``path``, created with its parents if needed; one sentence if it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"Cannot create {path}: {e.strerror or e}.") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix) for any writer; on success it replaces ``path``."""
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}",
                                dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, plain_mode())  # mkstemp made it private (0600)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent if str(target.parent) else Path("."))


def plain_mode(folder: bool = False) -> int:
    """The permissions ``open`` (``mkdir`` for a folder) gives under this process's umask; temp files and folders
    are private (0600, 0700), and a model or picture one account writes may be read by another."""
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writable_or_fail(target: str | os.PathLike, folder: bool = False, parents: bool = True) -> None:
    """Fail now, not after the work, if ``target`` (a file, or a ``folder``) could not be created or replaced:
    it exists as the other kind, or no folder on its way can be written (``parents``: missing folders above it
    would be created; else its folder must exist)."""
    target = Path(target)
    if target.exists() and target.is_dir() != folder:
        raise ModelFileError(f"Cannot write {target}: it exists and is {'not ' if folder else ''}a directory.")
    folder_above = target.parent.resolve()
    if folder and target.is_dir():  # its files are replaced inside it
        folder_above = target.resolve()
    elif not parents and not folder_above.is_dir():
        why = "is not a folder" if folder_above.exists() else "does not exist"
        raise ModelFileError(f"Cannot write {target}: {folder_above} {why}.")
    while not folder_above.exists():
        folder_above = folder_above.parent
    try:
        tempfile.TemporaryFile(dir=folder_above).close()
    except OSError as e:
        raise ModelFileError(f"Cannot write {target}: cannot create a file in {folder_above} ({e.strerror or e}).") from None
