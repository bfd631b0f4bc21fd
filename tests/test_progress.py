"""Progress displays: a spinner while a file is read, bars over steps, never two at once."""

import rich.progress

from latentrec import progress


def test_a_display_inside_another_stays_quiet(monkeypatch):
    """rich before 14 refuses a second live display (LiveError): a download bar or a step bar inside the reading
    spinner would have failed the command."""
    shown = []

    class Counted(rich.progress.Progress):
        def add_task(self, description, *args, **kwargs):
            shown.append(description)
            return super().add_task(description, *args, **kwargs)

    monkeypatch.setattr(rich.progress, "Progress", Counted)
    monkeypatch.setattr(progress, "active", lambda: True)
    with progress.status("Reading r.csv"):
        with progress.step_progress("Training", 3) as advance, progress.byte_progress("Downloading", 10) as got:
            advance(1)
            got(5)
        with progress.status("Reading r.csv again"):
            pass
    with progress.step_progress("Training", 2) as advance:  # the first one let go: the next shows
        advance(2)
    assert shown == ["Reading r.csv", "Training"]
    assert not progress._showing


def test_a_path_with_braces_or_brackets_is_shown_as_text(monkeypatch):
    """The path was the display's format string and markup: r{1}.tsv raised IndexError, [/x] a MarkupError."""
    monkeypatch.setattr(progress, "active", lambda: True)
    for desc in ("Reading r{1}.tsv", "Reading [/x] a[b].csv"):
        with progress.status(desc):
            pass
        with progress.step_progress(desc, 2) as advance:
            advance(1)
