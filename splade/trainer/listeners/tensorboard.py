"""TensorBoard scalars under `<output>/tensorboard/`: the log steps' `train/...`, each evaluation's
`val/...` and `dev/...` at its step, and each epoch's training means as `epoch/train_...`."""

from __future__ import annotations

from pathlib import Path

from splade.trainer.checkpoints import TrainerState
from splade.trainer.events import Evaluation, Listener, StepEnd
from splade.trainer.metrics import ScalarLogger


class TensorBoard(Listener):
    """Writes the scalars; a resumed run purges what an earlier run wrote after its checkpoint's step."""

    def __init__(self, directory: Path, resumed_at: int | None = None) -> None:
        self.logger = ScalarLogger(directory, purge_step=None if resumed_at is None else resumed_at + 1)

    def on_step_end(self, state: TrainerState, step: StepEnd) -> None:
        if step.scalars is not None:
            self.logger.log(step.scalars, state.global_step)

    def on_evaluate(self, state: TrainerState, evaluation: Evaluation) -> None:
        if evaluation.kind in ("epoch", "partial"):
            epoch = evaluation.record["epoch"]
            self.logger.log({f"epoch/train_{k}": v for k, v in evaluation.train.items()}, epoch)
        scalars = {(k if "/" in k else f"val/{k}"): v for k, v in evaluation.val.items()}
        self.logger.log(scalars, state.global_step)

    def close(self) -> None:
        self.logger.close()
