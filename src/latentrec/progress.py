"""Progress bars on stderr (rich), shown only to a person at a terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True)
_enabled = True
_showing = False  # one live display at a time (rich refuses a second)
DESC = "{task.description}"  # a display's text, given as its task's description: a path's "{1}" or "[/x]" is text


def set_enabled(flag: bool) -> None:
    """Turn progress output on or off (the CLI turns it off for --json)."""
    global _enabled
    _enabled = flag


def active() -> bool:
    return _enabled and sys.stderr.isatty()


@contextmanager
def _live() -> Iterator[bool]:
    """Whether this display may show (none other is showing), marked as showing while it does."""
    global _showing
    if not active() or _showing:
        yield False
        return
    _showing = True
    try:
        yield True
    finally:
        _showing = False


@contextmanager
def status(desc: str) -> Iterator[None]:
    """A spinner with the time spent, for work of unknown length (reading a file); gone when it ends."""
    with _live() as show:
        if not show:
            yield
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn(DESC), TimeElapsedColumn(), console=err_console, transient=True) as p:
            p.add_task(escape(desc), total=None)
            yield


@contextmanager
def byte_progress(desc: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A download bar; yields ``advance(n_bytes)``."""
    with _live() as show:
        if not show:
            yield lambda n: None
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(DESC), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      console=err_console) as p:
            task = p.add_task(escape(desc), total=total)
            yield lambda n: p.advance(task, n)


@contextmanager
def step_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` steps (batches, trials, folds); yields ``advance(n)``."""
    with _live() as show:
        if not show:
            yield lambda n: None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn(DESC), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
            console=err_console, transient=True,
        ) as p:
            task = p.add_task(escape(desc), total=total)
            yield lambda n: p.advance(task, n)
