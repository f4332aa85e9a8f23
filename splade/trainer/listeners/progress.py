"""The progress bar over the run's micro-batches (phase, learning rate, the last logged loss), and a log
line at each log step."""

from __future__ import annotations

import logging
import math

from splade.trainer.checkpoints import TrainerState
from splade.trainer.curriculum import PhaseSettings
from splade.trainer.events import Listener, StepEnd, TrainBegin
from splade.trainer.metrics import ProgressBar

log = logging.getLogger("splade.trainer.loop")  # the log lines keep the logger they always had


class Progress(Listener):
    """One bar for the run (validation and dev evaluation show their own, short-lived bars)."""

    def __init__(self) -> None:
        self.bar: ProgressBar | None = None

    def on_train_begin(self, state: TrainerState, begin: TrainBegin) -> None:
        self.bar = ProgressBar(begin.total_batches, begin.done_batches)

    def on_batch_end(self, state: TrainerState, phase: PhaseSettings) -> None:
        if self.bar is not None:
            self.bar.update(phase.index)

    def on_step_end(self, state: TrainerState, step: StepEnd) -> None:
        if self.bar is not None:
            self.bar.show(lr=step.learning_rate, loss=step.loss)
        if step.scalars is not None:
            loss = step.loss if step.loss is not None else math.nan
            lr = step.learning_rate
            log.info("step %d epoch %d loss %.4f lr %.3g", state.global_step, step.epoch, loss, lr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
