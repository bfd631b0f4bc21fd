"""The hooks the epoch loop calls (no heavy imports, so the CLI's epoch table can be one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latentrec.training.loop import Trainer


class Callback:
    """Override either hook: a Checkpointer restores a saved run at the start, the CLI's table prints each epoch."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        """After each epoch, with its history record."""
