"""One exception hierarchy; the CLI maps every LatentrecError to exit status 2."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LatentrecError(Exception):
    """Base class: its message is one clear sentence meant for a person."""


class DataError(LatentrecError):
    """A ratings or item file is missing, malformed or unusable."""


class ColumnNotFound(DataError):
    """No column of a file's header, or more than one, can be ``role`` (user, item or rating) by its name, or the
    column named for it is not there."""

    def __init__(self, message: str, role: str):
        super().__init__(message)
        self.role = role


class DownloadError(LatentrecError):
    """A named dataset could not be fetched or failed verification."""


class ModelFileError(LatentrecError):
    """A model directory is missing, corrupt, inconsistent or of an unknown version."""


class ConfigError(LatentrecError):
    """An option or config value is out of range or inconsistent."""


class ModelCapabilityError(LatentrecError):
    """The model cannot answer this request (e.g. predicted ratings from a ranking-only model)."""


def clip(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters, the cut marked by an ellipsis: a value from a file quoted in a message
    (a 1 MB cell would make a 1 MB sentence)."""
    return text if len(text) <= width else f"{text[:width - 1]}…"


def one_line(e: BaseException) -> str:
    """An exception's message on one line (a library's multi-line text joined), for a sentence or a log line."""
    return " ".join(str(e).split())


class TrainingDiverged(UserWarning):
    """``fit`` stopped a diverging run and kept the last good epoch's weights (``rec.info["diverged"]`` says why).
    A warning, not an error: the model is usable, and the CLI reports it in its own words."""


class UnknownItemsLeftOut(UserWarning):
    """A new user's ratings named items the model does not know; ``recommend`` folded in the others."""


class SeenPairsScored(UserWarning):
    """``evaluate`` scored pairs the model was built from (``n_seen`` of them), or the rows ``fit`` was given to
    validate on (``valid_rows``): its figures are optimistic."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the CLI where Ctrl-C raises KeyboardInterrupt, so that the same cleanup runs: temp files
    removed, the checkpoint kept, the same message."""


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """For the block, SIGTERM (``kill``, a service manager, torchrun stopping its workers) raises :class:`Terminated`,
    a KeyboardInterrupt: the same cleanup and message as Ctrl-C. Only the main thread receives signals; elsewhere
    the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def interrupt_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by ``stop``: 128 + the signal's number (Ctrl-C 130, SIGTERM 143)."""
    return 143 if isinstance(stop, Terminated) else 130
