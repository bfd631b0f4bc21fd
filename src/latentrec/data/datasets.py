"""Named MovieLens datasets: located in a data folder, or downloaded from GroupLens once.

The data folder is ``--data-dir``, else ``$LATENTREC_DATA``, else ``~/.cache/latentrec``.
It holds the extracted folders (``ml-100k/u.data`` ...) and may be read-only once they are
there. Downloads are verified (the ratings file's sha256 where GroupLens' bytes are fixed,
the archive's published MD5 otherwise) and extracted without letting any member escape.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from latentrec.atomic import plain_mode
from latentrec.errors import DownloadError

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    ratings: str  # ratings file inside the extracted folder
    items: str  # item metadata file (titles)
    ratings_sha256: str | None = None
    zip_md5: str | None = None

    @property
    def url(self) -> str:
        """GroupLens' archive, or the same name under ``$LATENTREC_MIRROR`` (a mirror or a test server)."""
        base = os.environ.get("LATENTREC_MIRROR") or BASE_URL
        return f"{base.rstrip('/')}/{self.name}.zip"


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k",
        "u.data",
        "u.item",
        ratings_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        zip_md5="0e33842e24a9c977be4e0107933c0723",
    ),
    "ml-1m": DatasetSpec("ml-1m", "ratings.dat", "movies.dat", zip_md5="c4d9eecfca2ab87c1945afe126590906"),
    # GroupLens refreshes ml-latest-small from time to time, so its bytes are not pinned.
    "ml-latest-small": DatasetSpec("ml-latest-small", "ratings.csv", "movies.csv"),
}


def own_folder(source: object) -> tuple[str, Path] | None:
    """``(name, data folder)`` when ``source`` is a path to a named dataset's own extracted folder
    (``/data/ml-100k``); a bare name (``ml-100k``) is the dataset in the data folder, whatever ``./ml-100k`` holds."""
    if not isinstance(source, (str, os.PathLike)) or str(source) in DATASETS:
        return None
    path = Path(source).expanduser()
    spec = DATASETS.get(path.name)
    return (path.name, path.parent) if spec is not None and (path / spec.ratings).is_file() else None


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder that holds (or will hold) the extracted datasets."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("LATENTREC_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "latentrec"


def file_digest(path: Path, algo: str) -> str:
    """The hex digest of a file's bytes by ``algo`` (``sha256``, or ``md5`` for GroupLens' archive checksums)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


def dataset_path(name: str, override: str | os.PathLike | None = None, url: str | None = None) -> Path:
    """Folder of an extracted named dataset, downloading and verifying it on first use."""
    spec = DATASETS[name]
    root = data_dir(override)
    folder = root / name
    if (folder / spec.ratings).is_file():
        return folder
    download(spec, root, url or spec.url)
    return folder


def _manual_hint(spec: DatasetSpec, root: Path, url: str) -> str:
    return (
        f"download {url} by hand and unzip it so that {root / spec.name / spec.ratings} exists "
        f"(or point LATENTREC_DATA / --data-dir at a folder that holds {spec.name}/)"
    )


def download(spec: DatasetSpec, root: Path, url: str) -> None:
    """Fetch, verify and extract one dataset into ``root``; nothing partial is left behind."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
        os.chmod(tmp, plain_mode(folder=True))  # mkdtemp made it private (0700)
    except OSError as e:
        raise DownloadError(
            f"Dataset {spec.name} is not in {root} and that folder is not writable ({e.strerror}); "
            + _manual_hint(spec, root, url)
            + "."
        ) from None
    try:
        archive = tmp / f"{spec.name}.zip"
        _fetch(url, archive, spec, root)
        if spec.zip_md5 and file_digest(archive, "md5") != spec.zip_md5:
            raise DownloadError(
                f"The archive from {url} does not match GroupLens' published checksum; it was deleted. "
                f"Try again later, or {_manual_hint(spec, root, url)}."
            )
        extract_zip(archive, tmp / "x")
        extracted = tmp / "x" / spec.name
        if not (extracted / spec.ratings).is_file():
            raise DownloadError(f"The archive from {url} has no {spec.name}/{spec.ratings}; it was deleted.")
        if spec.ratings_sha256 and file_digest(extracted / spec.ratings, "sha256") != spec.ratings_sha256:
            raise DownloadError(
                f"{spec.name}/{spec.ratings} from {url} failed its sha256 check; it was deleted. "
                f"Try again later, or {_manual_hint(spec, root, url)}."
            )
        target = root / spec.name
        try:
            os.replace(extracted, target)  # where there is no folder yet, or an empty one
        except OSError:
            if not (target / spec.ratings).is_file():  # a folder of the user's without the ratings: theirs are kept
                for entry in extracted.iterdir():
                    os.replace(entry, target / entry.name)
            # else another download of the same dataset finished first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(url: str, dest: Path, spec: DatasetSpec, root: Path) -> None:
    from latentrec.progress import byte_progress

    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            got = 0
            with byte_progress(f"Downloading {spec.name}", total) as advance:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    got += len(block)
                    advance(len(block))
            if total is not None and got != total:
                raise DownloadError(
                    f"The download of {url} stopped after {got} of {total} bytes; the partial file was "
                    f"deleted. Try again, or {_manual_hint(spec, root, url)}."
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"Could not download {url} ({reason}); {_manual_hint(spec, root, url)}.") from None
    except ValueError:  # urllib's word for an address it cannot parse
        raise DownloadError(f"{url} is not a web address; check $LATENTREC_MIRROR, or "
                            f"{_manual_hint(spec, root, url)}.") from None


def extract_zip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing any member that would land outside it."""
    dest = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (dest / member.filename).resolve()
                if target != dest and dest not in target.parents:
                    raise DownloadError(
                        f"Refused {archive.name}: member {member.filename!r} would be written outside "
                        f"the data folder."
                    )
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise DownloadError(f"{archive.name} is not a valid zip archive; it was deleted.") from None
