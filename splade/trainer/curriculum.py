"""The guide's curriculum (section 4): per-phase temperature, lambda_infonce, LR multiplier, data focus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splade.config import FocusConfig, LossConfig, PhaseConfig


@dataclass(frozen=True)
class PhaseSettings:
    """What one epoch trains with."""

    index: int  # 1-based phase number; 0 before the first phase (or without phases)
    name: str
    temperature: float
    lambda_infonce: float
    lr_multiplier: float
    focus: FocusConfig | None


class Curriculum:
    """Maps a 1-based epoch to its phase settings.

    An epoch inside a phase uses that phase; an epoch in a gap between phases or after the last phase
    keeps the settings of the phase before it (so `training.num_epochs` past the table continues the
    last phase); only epochs before the first phase (or a run without phases) use the loss config's values.
    """

    def __init__(self, phases: Sequence[PhaseConfig], loss: LossConfig) -> None:
        self.phases = sorted(phases, key=lambda p: p.start_epoch)
        self.loss = loss

    def settings(self, epoch: int) -> PhaseSettings:
        started = [(n, p) for n, p in enumerate(self.phases, start=1) if p.start_epoch <= epoch]
        if not started:
            return PhaseSettings(0, "no_phase", self.loss.temperature, self.loss.lambda_infonce, 1.0, None)
        number, phase = started[-1]
        return PhaseSettings(
            index=number,
            name=phase.name or f"phase_{number}",
            temperature=phase.temperature if phase.temperature is not None else self.loss.temperature,
            lambda_infonce=(
                phase.lambda_infonce if phase.lambda_infonce is not None else self.loss.lambda_infonce
            ),
            lr_multiplier=phase.lr_multiplier,
            focus=phase.data_focus,
        )
