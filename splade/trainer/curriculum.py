"""The guide's curriculum (section 4): per-phase temperature, lambda_infonce, LR multiplier, data focus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splade.config import FocusConfig, LossConfig, PhaseConfig


@dataclass(frozen=True)
class PhaseSettings:
    """What one epoch trains with."""

    index: int  # 1-based phase number; 0 when no phase covers the epoch
    name: str
    temperature: float
    lambda_infonce: float
    lr_multiplier: float
    focus: FocusConfig | None


class Curriculum:
    """Maps a 1-based epoch to its phase settings; epochs outside every phase use the loss config's values."""

    def __init__(self, phases: Sequence[PhaseConfig], loss: LossConfig) -> None:
        self.phases = sorted(phases, key=lambda p: p.start_epoch)
        self.loss = loss

    def settings(self, epoch: int) -> PhaseSettings:
        for number, phase in enumerate(self.phases, start=1):
            if phase.start_epoch <= epoch <= phase.end_epoch:
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
        return PhaseSettings(0, "no_phase", self.loss.temperature, self.loss.lambda_infonce, 1.0, None)

    def lr_multiplier(self, epoch: int) -> float:
        return self.settings(epoch).lr_multiplier
