"""The one way latentrec writes a file: a temp file in the same folder, fsync, ``os.replace``; and a folder
of files (a model dir, a tune report): staged in a temp folder, then renamed into place.

A reader sees the old file or the new one, never half of one, and a crash or full disk leaves no
partial file behind (the temp file is removed). A folder's files are renamed in one by one (see
:func:`atomic_folder`).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from latentrec.errors import DataError, ModelFileError


def make_folder(path: str | os.PathLike) -> Path:
    """The folder at ``path``, created with its parents if needed; one sentence if it cannot be."""
    if not os.fspath(path):
        raise DataError("Cannot write to an empty path; give a folder name.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path} is a file; give a folder (it is created if missing).")
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


STALE_S = 3600  # a staging folder this old belongs to no save still running


@contextmanager
def atomic_folder(path: str | os.PathLike, own: Sequence[str]) -> Iterator[Path]:
    """Yield an empty staging folder to fill with the entries named in ``own``; on success they take their places
    at ``path``. A new folder is renamed into place whole. In an existing one, each staged entry replaces its
    namesake in one rename, in ``own``'s order, and the ``own`` entries this write lacks are removed; everything
    else in the folder stays, and so do the folder itself, its owner and its mount (a volume, a folder shared
    with a service account). The renames run with Ctrl-C and SIGTERM held back (:func:`held_signals`), so an
    interrupt never leaves half of them; a reader that meets the moment between two of them tells by the files'
    shared write id (a model dir) and reads again."""
    with atomic_folders((path, own)) as (stage,):
        yield stage


@contextmanager
def atomic_folders(*targets: tuple[str | os.PathLike, Sequence[str]]) -> Iterator[list[Path]]:
    """:func:`atomic_folder` for several folders written as one: a staging folder for each ``(path, own)``, yielded
    in their order, and on success every folder's renames, target after target, all under one
    :func:`held_signals` (an interrupt leaves every old file or every new one). A folder inside another one (a
    tune report's model dir) is given first, as an existing folder, and left out of the outer one's ``own``: its
    files are then replaced in place, the folder never missing."""
    plans: list[tuple[Path, Sequence[str], bool, Path]] = []
    staged: list[Path | None] = []
    try:
        for path, own in targets:
            target = Path(path)
            existing = target.is_dir()
            if not existing:
                target.parent.mkdir(parents=True, exist_ok=True)
            place = target if existing else target.parent
            staged.append(Path(tempfile.mkdtemp(prefix=_stage_prefix(target), dir=place)))  # on the target's disk
            os.chmod(staged[-1], plain_mode(folder=True))  # mkdtemp made it private (0700)
            plans.append((target, own, existing, place))
        yield list(staged)
        for stage in staged:
            fsync_folder(stage)
        with held_signals():
            for i, (target, own, existing, _) in enumerate(plans):
                if existing:
                    _move_entries(staged[i], target, own)
                else:
                    os.replace(staged[i], target)
                    staged[i] = None
        for target, _, existing, place in plans:
            fsync_folder(target if existing else target.parent)
            for stale in stages(place, target):  # left by a kill -9 mid-save (a live one is younger); only now: a
                if time.time() - stale.stat().st_mtime > STALE_S:  # reader may have needed its description until
                    shutil.rmtree(stale, ignore_errors=True)  # this save replaced both
    finally:
        left = [stage for stage in staged if stage is not None]
        if left:
            with held_signals():
                for stage in left:
                    shutil.rmtree(stage, ignore_errors=True)


def _stage_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def stages(place: Path, target: Path | None = None) -> list[Path]:
    """The staging folders :func:`atomic_folder` left in ``place`` (for ``target`` only, if given): a save's
    running now, or one a ``kill -9`` cut short."""
    pattern = f"{glob.escape(_stage_prefix(target))}*" if target is not None else ".*.tmp-*"
    return [p for p in place.glob(pattern) if p.is_dir()]


def _move_entries(stage: Path, target: Path, own: Sequence[str]) -> None:
    """Each of ``own`` from ``stage`` into ``target`` in one rename (a folder: the old one set aside into ``stage``
    first, removed with it); an ``own`` entry the stage lacks is removed from ``target``."""
    for name in own:
        new, old = stage / name, target / name
        if old.is_dir() and not old.is_symlink():
            os.rename(old, stage / f".{name}.old")
        if new.exists():
            os.replace(new, old)
        elif old.is_file() or old.is_symlink():
            old.unlink()


@contextmanager
def held_signals() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM for the block (a checkpoint write, the renames of a save), then deliver the first
    one to the handler that was in place: the KeyboardInterrupt (or the CLI's ``Terminated``) arrives after the
    block, never inside it. Only the main thread receives signals; elsewhere the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def plain_mode(folder: bool = False) -> int:
    """The permissions ``open`` (``mkdir`` for a folder) gives under this process's umask; temp files and folders
    are private (0600, 0700), and a model or picture one account writes may be read by another."""
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically; a disk that is full or will not take it is one sentence."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ModelFileError(f"Cannot write {path}: {e.strerror or e}.") from None


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
    the path is empty, it exists as the other kind, or the folder its files go into cannot be written (an existing
    ``folder`` itself, else the first existing folder on the way; ``parents``: missing folders above it would be
    created, else its folder must exist)."""
    if not os.fspath(target):
        raise ModelFileError(f"Cannot write to an empty path; give a {'folder' if folder else 'file'} name.")
    target = Path(target)
    if target.is_symlink() and not target.exists():
        raise ModelFileError(f"Cannot write {target}: it is a link to {os.readlink(target)}, which does not exist.")
    if target.exists() and target.is_dir() != folder:
        raise ModelFileError(f"Cannot write {target}: it exists and is {'not ' if folder else ''}a directory.")
    place = target.resolve() if folder and target.is_dir() else target.parent.resolve()
    if not parents and not place.is_dir():
        why = "is not a folder" if place.exists() else "does not exist"
        raise ModelFileError(f"Cannot write {target}: {place} {why}.")
    while not place.exists():
        place = place.parent
    try:
        tempfile.TemporaryFile(dir=place).close()
    except OSError as e:
        raise ModelFileError(f"Cannot write {target}: cannot create a file in {place} ({e.strerror or e}).") from None
