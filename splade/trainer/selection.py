"""Best-model selection and early stopping over the run's evaluations (lower monitored value is better).

The monitored value is the dev-set retrieval metric when dev sets are configured, else the validation
triplets' in-batch MRR, else the training loss. The training loss changes scale with each curriculum phase
(other temperature and lambda), so when it is the monitor a new phase restarts the best value and the
early-stopping count.
"""

from __future__ import annotations

import logging

from splade.trainer.checkpoints import TrainerState
from splade.trainer.curriculum import PhaseSettings

log = logging.getLogger(__name__)


class Selection:
    """Reads and updates the selection fields of `TrainerState` (so a resume continues them)."""

    def __init__(self, state: TrainerState, patience: int, min_delta: float) -> None:
        self.state = state
        self.patience = patience
        self.min_delta = min_delta

    def restart_on_new_phase(self, phase: PhaseSettings) -> None:
        state = self.state
        if state.best_metric is None or state.best_phase is None or state.best_phase == phase.index:
            return
        log.info(
            "phase %d (%s) starts: the monitored training loss changes scale, so its best value and the "
            "early-stopping count restart",
            phase.index,
            phase.name,
        )
        state.best_metric, state.bad_epochs, state.best_phase = None, 0, phase.index

    def observe(self, metric: float, monitored: str, epoch: int, step: int, phase: int) -> bool:
        """Record one evaluation; True when it is the new best. Patience run out sets `stopped_early`."""
        state = self.state
        improved = state.best_metric is None or metric < state.best_metric - self.min_delta
        if improved:
            state.best_metric, state.best_epoch, state.best_step, state.bad_epochs = metric, epoch, step, 0
            state.best_phase, state.monitored = phase, monitored
        else:
            state.bad_epochs += 1
            if self.patience and state.bad_epochs >= self.patience:
                state.stopped_early = True
        return improved
