"""A wall-clock training budget (`training.max_minutes`): how many optimizer steps fit, and when it is spent.

The plan is made once, after step 0 was evaluated and a step was timed: the steps and the dev evaluations
they bring must fit in what is left. The clock also stops the run if the estimate was too hopeful, early
enough that the model where it stopped is still evaluated within the budget.
"""

from __future__ import annotations

import math
import time

from splade.trainer.batches import TripletBatch
from splade.trainer.losses import LossWeights
from splade.trainer.step import RunningMeans, TrainStep

SAFETY = 1.1  # timed steps leave out the optimizer update and the teacher's first embeddings


class Budget:
    """Minutes of training from the start of the loop (setup not counted)."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self.started = time.monotonic()
        # seconds kept back for the dev evaluation of where the run stops (set once step 0 was timed)
        self.reserve = 0.0

    def left(self) -> float:
        """Seconds left (infinite without a budget)."""
        if self.minutes is None:
            return math.inf
        return self.minutes * 60 - (time.monotonic() - self.started)

    def spent(self) -> bool:
        """No time left for another step: only the reserve for the last evaluation remains."""
        return self.left() <= self.reserve

    def plan(
        self, step_seconds: float, evaluation_seconds: float, every_steps: int | None, evaluations: int
    ) -> int:
        """Optimizer steps that fit in what is left, with a dev evaluation every `every_steps`, or else
        `evaluations` of them over the run."""
        left = self.left()
        step = step_seconds * SAFETY
        if every_steps:
            steps = left / (step + evaluation_seconds / every_steps)
        else:
            steps = (left - evaluations * evaluation_seconds) / step
        return max(1, int(steps))


def time_step(step: TrainStep, batch: TripletBatch, weights: LossWeights, accumulation: int) -> float:
    """Seconds of one optimizer step of `accumulation` micro-batches, timed on `batch` (run twice; the
    gradients and the running means are dropped after)."""
    started = time.perf_counter()
    for _ in range(2):
        step.micro_batch(batch, weights, 1)
    seconds = (time.perf_counter() - started) / 2 * accumulation
    step.optimizer.zero_grad(set_to_none=True)
    step.window = RunningMeans(device=step.device)
    step.epoch = RunningMeans(device=step.device)
    return seconds
