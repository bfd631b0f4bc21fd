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
def _display(desc: str, total: int | None, columns: Callable, transient: bool = True) -> Iterator[Callable[[int], None]]:
    """One rich display of ``desc`` (shown as text) with the ``columns(rich.progress)`` around it, to a person at a
    terminal and when no other is showing; yields ``advance(n)`` (a no-op when nothing shows)."""
    with _live() as show:
        if not show:
            yield lambda n: None
            return
        import rich.progress

        with rich.progress.Progress(*columns(rich.progress), console=err_console, transient=transient) as p:
            task = p.add_task(escape(desc), total=total)
            yield lambda n: p.advance(task, n)


@contextmanager
def status(desc: str) -> Iterator[None]:
    """A spinner with the time spent, for work of unknown length (reading a file); gone when it ends."""
    with _display(desc, None, lambda rp: [rp.SpinnerColumn(), rp.TextColumn(DESC), rp.TimeElapsedColumn()]):
        yield


@contextmanager
def byte_progress(desc: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A download bar; yields ``advance(n_bytes)``."""
    with _display(desc, total, lambda rp: [rp.TextColumn(DESC), rp.BarColumn(), rp.DownloadColumn(),
                                           rp.TimeRemainingColumn()], transient=False) as advance:
        yield advance


@contextmanager
def step_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` steps (batches, trials, folds); yields ``advance(n)``."""
    with _display(desc, total, lambda rp: [rp.TextColumn(DESC), rp.BarColumn(),
                                           rp.TextColumn("{task.completed}/{task.total}"),
                                           rp.TimeRemainingColumn()]) as advance:
        yield advance
