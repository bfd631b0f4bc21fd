"""The one way latentrec writes a file: a temp file in the same folder, fsync, ``os.replace``; and a folder
of files (a model dir, a tune report): a temp folder beside it, swapped with the old one in one step.

A reader sees the old file or folder or the new one, never half of one, and a crash or full disk leaves
no partial file behind (the temp file is removed).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from latentrec.errors import DataError, ModelFileError


def make_folder(path: str | os.PathLike) -> Path:
    """The folder at ``path``, created with its parents if needed; one sentence if it cannot be."""
    if not os.fspath(path):
        raise DataError("Cannot write to an empty path; give a folder name.")
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


@contextmanager
def atomic_folder(path: str | os.PathLike, own: Collection[str]) -> Iterator[Path]:
    """Yield a new empty folder beside ``path`` to fill; on success it takes the place of the folder at ``path``
    in one step (``RENAME_EXCHANGE``), and the old folder is deleted. A reader, or a kill at any moment, finds the
    whole old folder or the whole new one. Entries of the old folder not named in ``own`` (files a user put
    there) are carried into the new one first, as hard links (copies where a link fails): nothing is lost."""
    target = Path(os.path.realpath(path))  # through a link, as a file write goes: the link keeps pointing
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, plain_mode(folder=True))  # mkdtemp made it private (0700)
        yield tmp
        if target.is_dir():
            shutil.copytree(target, tmp, symlinks=True, copy_function=_link, dirs_exist_ok=True,
                            ignore=lambda folder, names: own if folder == str(target) else ())
            fsync_folder(tmp)
            tmp = _exchange(tmp, target)  # now the old folder, deleted below
        else:
            fsync_folder(tmp)
            os.replace(tmp, target)
            tmp = None
        fsync_folder(target.parent)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def _libc_renameat2():
    """glibc's ``renameat2`` (2.28+), or None elsewhere (macOS, musl, Windows)."""
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None


_renameat2 = _libc_renameat2()
AT_FDCWD, RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def _exchange(new: Path, target: Path) -> Path:
    """Put folder ``new`` at ``target``, where a folder is; returns where the old folder now lies. Linux swaps the
    two names in one step; elsewhere (or on a file system that cannot) the old folder is renamed aside first,
    so a kill between the two renames leaves it whole under the aside name."""
    if _renameat2 is not None:
        if _renameat2(AT_FDCWD, os.fsencode(new), AT_FDCWD, os.fsencode(target), RENAME_EXCHANGE) == 0:
            return new
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(target))
    aside = new.with_name(f"{new.name}.old")
    os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return aside


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


def writable_or_fail(target: str | os.PathLike, folder: bool = False, parents: bool = True,
                     marker: str | None = None) -> None:
    """Fail now, not after the work, if ``target`` (a file, or a ``folder``) could not be created or replaced:
    the path is empty, it exists as the other kind, it is a folder with files in it but no ``marker`` (not one
    this command wrote, so not one to replace: ``.``, ``/``, a home folder), or no folder on its way can be
    written (``parents``: missing folders above it would be created; else its folder must exist). An existing
    folder is replaced by one built beside it (``atomic_folder``), and the old one's files are then deleted:
    both it and the folder above must be writable."""
    if not os.fspath(target):
        raise ModelFileError(f"Cannot write to an empty path; give a {'folder' if folder else 'file'} name.")
    target = Path(target)
    if target.exists() and target.is_dir() != folder:
        raise ModelFileError(f"Cannot write {target}: it exists and is {'not ' if folder else ''}a directory.")
    places = [target.parent.resolve()]
    if folder and target.is_dir():
        places = [target.resolve(), target.resolve().parent]
    elif not parents and not places[0].is_dir():
        why = "is not a folder" if places[0].exists() else "does not exist"
        raise ModelFileError(f"Cannot write {target}: {places[0]} {why}.")
    for place in places:
        while not place.exists():
            place = place.parent
        try:
            tempfile.TemporaryFile(dir=place).close()
        except OSError as e:
            raise ModelFileError(f"Cannot write {target}: cannot create a file in {place} ({e.strerror or e}).") from None
    if marker and target.is_dir() and not (target / marker).exists() and any(target.iterdir()):
        raise ModelFileError(f"Cannot write {target}: it is a folder that holds other files and no {marker}, "
                             f"so not one to replace; give a new or empty folder.")
