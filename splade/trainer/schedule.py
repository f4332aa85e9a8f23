"""Everything that changes with the step, in one object: the curriculum phase, the learning-rate factor
and the loss weights (the phase's temperature and lambda_infonce, the FLOPS warm-up)."""

from __future__ import annotations

import math
from collections.abc import Callable

from splade.config import TrainConfig
from splade.trainer.curriculum import Curriculum, PhaseSettings
from splade.trainer.losses import LossWeights


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear learning-rate warm-up to 1 over `warmup_steps` optimizer steps; the first step (0) already
    learns (`1 / warmup_steps`), none runs at learning rate 0."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor: linear warm-up to 1, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def flops_scale(step: int, warmup_steps: int) -> float:
    """Quadratic FLOPS lambda warm-up over the first `warmup_steps` optimizer steps (SPLADE paper)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step / warmup_steps) ** 2)


class Schedule:
    """The run's per-step settings, a pure function of (step, epoch) so a resumed run follows them exactly.

    Learning rate (`training.lr_schedule`):
    - `phase`: linear warm-up over `warmup_ratio` of the run, then each curriculum phase trains at
      `learning_rate x lr_multiplier` (the guide's phase table, read literally);
    - `cosine`: one cosine decay over the whole run, times the phase's multiplier.
    """

    def __init__(
        self, config: TrainConfig, steps_per_epoch: int, full_steps_per_epoch: int | None = None
    ) -> None:
        """`steps_per_epoch`: the run's epochs; `full_steps_per_epoch`: a whole pass over the data, when a
        budget (`training.max_steps`) shrank the epochs to fit the curriculum in it. Step-counted settings
        (the FLOPS warm-up, term warm-ups) shrink by the same factor."""
        self.config = config
        self.curriculum = Curriculum(config.curriculum_phases, config.loss)
        self.resize(steps_per_epoch, full_steps_per_epoch)

    def resize(self, steps_per_epoch: int, full_steps_per_epoch: int | None = None) -> None:
        """Set the epoch length (see `__init__`) and everything derived from it."""
        self.steps_per_epoch = steps_per_epoch
        self.shrink = steps_per_epoch / max(1, full_steps_per_epoch or steps_per_epoch)
        training = self.config.training
        self.total_steps = steps_per_epoch * training.num_epochs
        self.warmup_steps = int(training.warmup_ratio * self.total_steps)
        self._cosine = cosine_with_warmup(self.total_steps, self.warmup_steps)

    def phase(self, epoch: int) -> PhaseSettings:
        return self.curriculum.settings(epoch)

    def epoch_of_step(self, step: int) -> int:
        """The 1-based epoch optimizer step `step` (0-based) belongs to."""
        return min(self.config.training.num_epochs, step // max(1, self.steps_per_epoch) + 1)

    def lr_factor(self, step: int) -> float:
        """Multiplier of `training.learning_rate` for optimizer step `step` (0-based)."""
        multiplier = self.phase(self.epoch_of_step(step)).lr_multiplier
        if self.config.training.lr_schedule == "cosine":
            return self._cosine(step) * multiplier
        return warmup_factor(step, self.warmup_steps) * multiplier

    def warmup(self, steps: int) -> int:
        """A step-counted warm-up of the full-data schedule, shrunk as the run's epochs are."""
        return round(steps * self.shrink)

    def loss_weights(self, step: int, phase: PhaseSettings) -> LossWeights:
        """The weight of every registered term at optimizer step `step` (0-based) inside `phase`."""
        loss = self.config.loss
        flops = flops_scale(step, self.warmup(loss.flops_warmup_steps))
        weights = {
            "infonce": phase.lambda_infonce,
            "self": loss.lambda_self,
            "positive": loss.lambda_positive,
            "margin": loss.lambda_margin,
            "flops": loss.lambda_flops * flops,
            "flops_doc": loss.lambda_flops_doc * flops,
            "min_act": loss.lambda_min_act,
            "kd": loss.lambda_kd if loss.teacher is not None else 0.0,
        }
        for name, term in loss.terms.items():
            weights[name] = term.weight * flops_scale(step, self.warmup(term.warmup_steps))
        return LossWeights(temperature=phase.temperature, terms=weights)
