"""The training loop's events and the `Listener` base class.

The loop in `trainer/loop.py` trains and checkpoints; everything else a run does (TensorBoard scalars,
`training_history.json`, checkpoint rotation, best-model selection and early stopping, the progress bar)
is a listener in `trainer/listeners/`. The loop calls, in order of the run:

- `on_train_begin(state, begin)`: once, after the step-0 evaluation and a budget's plan, before the first
  batch;
- `on_batch_end(state, phase)`: after each micro-batch's forward and backward;
- `on_step_end(state, step)`: after each optimizer step, once that step's checkpoint and dev evaluation
  are done;
- `on_evaluate(state, evaluation)`: after each evaluation (step 0, `dev.every_steps`, an epoch's end, a
  partial epoch at `max_steps`); listeners may add keys to `evaluation.record`, the history entry;
- `on_save(state, path)`: after a checkpoint was written (before the other processes go on);
- `on_train_end(state)`: when the loop finished without an error;
- `close()`: always, last (errors included): release files and bars.

On several processes rank 0 alone gets the listeners (the others train, wait at barriers and run only the
step callback), so a listener never asks which rank it is on. Listeners are called in the order given.

To add one: subclass `Listener`, override the events it needs, put it in its own module under
`trainer/listeners/` and add it to `listeners.build_listeners`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splade.trainer.checkpoints import TrainerState
from splade.trainer.curriculum import PhaseSettings


@dataclass(frozen=True)
class TrainBegin:
    """Micro-batches the run will do in all (budgets included) and those done before (a resume)."""

    total_batches: int
    done_batches: int


@dataclass(frozen=True)
class StepEnd:
    """One optimizer step: its learning rate, and on a log step (`training.logging_steps`) the scalars
    read on the host (`train/...`: the window's losses, gradient norm and shares, sparsity)."""

    epoch: int
    phase: PhaseSettings
    learning_rate: float
    scalars: dict[str, float] | None = None

    @property
    def loss(self) -> float | None:
        return None if self.scalars is None else self.scalars.get("train/loss")


@dataclass
class Evaluation:
    """One evaluation. `kind`: "start" (step 0), "step" (`dev.every_steps`), "epoch" or "partial" (an
    epoch cut short by `max_steps`). `record` is the history entry (the listeners complete it: the
    selection adds `monitored`, `metric` and `best`); `train` holds the epoch's training means so far;
    `selects` says whether this evaluation may choose the best model and count towards early stopping."""

    kind: str
    phase: PhaseSettings
    record: dict[str, Any]
    train: dict[str, float] = field(default_factory=dict)
    selects: bool = True

    @property
    def val(self) -> dict[str, float]:
        return self.record["val"]


class Listener:
    """A part of a run that reacts to the loop's events; override the ones needed (all do nothing here)."""

    def on_train_begin(self, state: TrainerState, begin: TrainBegin) -> None:
        """Before the first batch."""

    def on_batch_end(self, state: TrainerState, phase: PhaseSettings) -> None:
        """After a micro-batch."""

    def on_step_end(self, state: TrainerState, step: StepEnd) -> None:
        """After an optimizer step (and its checkpoint and evaluation)."""

    def on_evaluate(self, state: TrainerState, evaluation: Evaluation) -> None:
        """After an evaluation."""

    def on_save(self, state: TrainerState, path: Path) -> None:
        """After a checkpoint was written to `path`."""

    def on_train_end(self, state: TrainerState) -> None:
        """When training finished without an error."""

    def close(self) -> None:
        """Last, errors included."""


class Listeners(Listener):
    """Several listeners as one: each event goes to each of them, in order."""

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self.listeners = list(listeners)

    def on_train_begin(self, state: TrainerState, begin: TrainBegin) -> None:
        for listener in self.listeners:
            listener.on_train_begin(state, begin)

    def on_batch_end(self, state: TrainerState, phase: PhaseSettings) -> None:
        for listener in self.listeners:
            listener.on_batch_end(state, phase)

    def on_step_end(self, state: TrainerState, step: StepEnd) -> None:
        for listener in self.listeners:
            listener.on_step_end(state, step)

    def on_evaluate(self, state: TrainerState, evaluation: Evaluation) -> None:
        for listener in self.listeners:
            listener.on_evaluate(state, evaluation)

    def on_save(self, state: TrainerState, path: Path) -> None:
        for listener in self.listeners:
            listener.on_save(state, path)

    def on_train_end(self, state: TrainerState) -> None:
        for listener in self.listeners:
            listener.on_train_end(state)

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


class StepCallback(Listener):
    """`callback(global_step)` after every optimizer step (what `train(step_callback=...)` passes)."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self.callback = callback

    def on_step_end(self, state: TrainerState, step: StepEnd) -> None:
        self.callback(state.global_step)
