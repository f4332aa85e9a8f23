"""Checkpoint rotation: after each save only the `training.save_total_limit` newest checkpoints stay."""

from __future__ import annotations

from pathlib import Path

from splade.trainer.checkpoints import TrainerState, rotate_checkpoints
from splade.trainer.events import Listener


class CheckpointRotation(Listener):
    """Deletes all but the `keep` newest complete checkpoints in `out` after each save."""

    def __init__(self, out: Path, keep: int) -> None:
        self.out = out
        self.keep = keep

    def on_save(self, state: TrainerState, path: Path) -> None:
        rotate_checkpoints(self.out, self.keep)
