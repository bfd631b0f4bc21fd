"""Progress bars on stderr (rich), shown only to a person at a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console

err_console = Console(stderr=True)
_enabled = True


def set_enabled(flag: bool) -> None:
    """Turn progress output on or off (the CLI turns it off for --json)."""
    global _enabled
    _enabled = flag


def active() -> bool:
    return _enabled and sys.stderr.isatty()


@contextmanager
def byte_progress(desc: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A download bar; yields ``advance(n_bytes)``."""
    if not active():
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(desc), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err_console) as p:
        task = p.add_task(desc, total=total)
        yield lambda n: p.advance(task, n)


@contextmanager
def step_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` steps (batches, trials, folds); yields ``advance(n)``."""
    if not active():
        yield lambda n: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(desc), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as p:
        task = p.add_task(desc, total=total)
        yield lambda n: p.advance(task, n)
