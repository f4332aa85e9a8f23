"""`training_history.json`: the best evaluation, one entry per epoch (a partial last epoch included) and
the `dev.every_steps` evaluations, rewritten after each evaluation and at the end of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from splade.atomic import write_json
from splade.trainer.checkpoints import TrainerState
from splade.trainer.events import Evaluation, Listener, TrainBegin
from splade.trainer.listeners.selection import best_fields

HISTORY_NAME = "training_history.json"


class HistoryFile(Listener):
    """Writes the file from the state (the loop keeps the entries there, for a resume). Listen after the
    selection, which completes each entry and the best fields."""

    def __init__(self, out: Path) -> None:
        self.path = out / HISTORY_NAME
        self.partial: dict[str, Any] | None = None  # an epoch cut short by max_steps (not in the state)
        self.written: dict[str, Any] | None = None  # the best fields the file holds

    def on_train_begin(self, state: TrainerState, begin: TrainBegin) -> None:
        if self.written is None:  # no step-0 evaluation: the file (if any) is an earlier run's
            self.written = best_fields(state)

    def on_evaluate(self, state: TrainerState, evaluation: Evaluation) -> None:
        if evaluation.kind == "partial":
            self.partial = evaluation.record
        self._write(state)

    def on_train_end(self, state: TrainerState) -> None:
        if self.written != best_fields(state):  # the last weights became the best
            self._write(state)

    def _write(self, state: TrainerState) -> None:
        self.written = best_fields(state)
        epochs = state.history + ([self.partial] if self.partial else [])
        write_json(self.path, {**self.written, "epochs": epochs, "evaluations": state.evaluations})
