"""Best-model selection and early stopping over the run's evaluations, and `best_model/`.

The monitored value is the dev-set retrieval metric when dev sets are configured, else the validation
triplets' in-batch MRR, else the training loss. The training loss changes scale with each curriculum phase
(other temperature and lambda), so when it is the monitor a new phase restarts the best value and the
early-stopping count. When no evaluation selected a model, the run's last weights become `best_model/`
and the state records them with `monitored: "last"`.

The selection fields live in `TrainerState` (so a resume continues them); `best_metric` there is this
module's ranking key, lower is better (a metric's negative, or the loss). Outside this module read
`best_fields(state)`: `best_value` is the monitored metric as reported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from splade.atomic import atomic_dir
from splade.config import TrainConfig
from splade.model import SpladeModel
from splade.model.card import training_facts, write_model_card
from splade.trainer.checkpoints import TrainerState
from splade.trainer.curriculum import PhaseSettings
from splade.trainer.events import Evaluation, Listener, TrainBegin

log = logging.getLogger(__name__)
LAST = "last"  # `monitored` when best_model/ holds the last weights (no evaluation selected)
LOSS = "train/loss"  # the one monitored value where lower is better


def monitored_value(config: TrainConfig, val: dict[str, float], train: dict[str, float]) -> tuple[str, float]:
    """The monitored name and its ranking key (lower is better): the dev metric, else validation MRR,
    else the training loss."""
    metric = f"dev/{config.dev.metric}"
    if metric in val:
        return metric, -val[metric]
    if "mrr" in val:
        return "val/mrr", -val["mrr"]
    return LOSS, train.get("loss", float("inf"))


def best_fields(state: TrainerState) -> dict[str, Any]:
    """The best evaluation as the history file and the result report it. `best_value`: the monitored
    metric's own value (higher is better except for `train/loss`; None for "last"); `best_metric`: the
    ranking key (lower is better), kept for older readers."""
    value = None
    if state.best_metric is not None and state.monitored not in (None, LAST):
        value = state.best_metric if state.monitored == LOSS else -state.best_metric
    return {
        "best_epoch": state.best_epoch,
        "best_step": state.best_step,
        "best_metric": state.best_metric,
        "best_value": value,
        "monitored": state.monitored,
        "higher_is_better": state.monitored not in (None, LAST, LOSS),
    }


def save_best_model(out: Path, model: SpladeModel, config: TrainConfig, state: TrainerState) -> None:
    """`out/best_model/`: the model and its card (written atomically)."""
    with atomic_dir(out / "best_model") as tmp:
        model.save_pretrained(tmp)
        write_model_card(tmp, training_facts(config, state), name=f"{out.name} best_model")


class Selection(Listener):
    """Chooses the best model at each selecting evaluation, saves it, and stops the run early when
    `patience` evaluations in a row did not improve by more than `min_delta`."""

    def __init__(self, config: TrainConfig, model: SpladeModel) -> None:
        self.config = config
        self.model = model
        self.out = config.output.dir
        self.patience = config.training.early_stopping_patience or 0
        self.min_delta = config.training.early_stopping_min_delta
        self.start_step: int | None = None

    def on_train_begin(self, state: TrainerState, begin: TrainBegin) -> None:
        self.start_step = state.global_step

    def on_evaluate(self, state: TrainerState, evaluation: Evaluation) -> None:
        record = evaluation.record
        record["monitored"], record["metric"] = monitored_value(self.config, evaluation.val, evaluation.train)
        record["best"] = evaluation.selects and self._select(state, record, evaluation.phase)

    def on_train_end(self, state: TrainerState) -> None:
        """No evaluation selected a model (or best_model/ is missing): keep the last weights as the best."""
        trained = self.start_step is not None and state.global_step > self.start_step
        if (self.out / "best_model").is_dir() and not (state.monitored in (None, LAST) and trained):
            return
        last_epoch = state.epoch if state.batch_in_epoch else max(1, state.epoch - 1)
        state.best_metric, state.best_step, state.best_epoch = None, state.global_step, last_epoch
        state.monitored = LAST
        save_best_model(self.out, self.model, self.config, state)

    def _select(self, state: TrainerState, record: dict[str, Any], phase: PhaseSettings) -> bool:
        """Keep the best model and count towards early stopping; True when this evaluation is the best."""
        if record["monitored"] == LOSS:
            self._restart_on_new_phase(state, phase)
        improved = self._observe(state, record)
        if improved:
            save_best_model(self.out, self.model, self.config, state)
        if state.stopped_early:
            log.warning(
                "early stopping at step %d (epoch %d): %s did not improve for %d evaluations",
                state.global_step,
                record["epoch"],
                record["monitored"],
                self.patience,
            )
        return improved

    def _restart_on_new_phase(self, state: TrainerState, phase: PhaseSettings) -> None:
        if state.best_metric is None or state.best_phase is None or state.best_phase == phase.index:
            return
        log.info(
            "phase %d (%s) starts: the monitored training loss changes scale, so its best value and the "
            "early-stopping count restart",
            phase.index,
            phase.name,
        )
        state.best_metric, state.bad_epochs, state.best_phase = None, 0, phase.index

    def _observe(self, state: TrainerState, record: dict[str, Any]) -> bool:
        """Record one evaluation; True when it is the new best. Patience run out sets `stopped_early`."""
        metric = record["metric"]
        improved = state.best_metric is None or metric < state.best_metric - self.min_delta
        if improved:
            state.best_metric, state.best_epoch, state.best_step = (
                metric,
                record["epoch"],
                record["global_step"],
            )
            state.bad_epochs, state.best_phase, state.monitored = 0, record["phase"], record["monitored"]
        else:
            state.bad_epochs += 1
            if self.patience and state.bad_epochs >= self.patience:
                state.stopped_early = True
        return improved
