"""The run's listeners (see `trainer/events.py`), one small class a module, and the run's set of them."""

from __future__ import annotations

from collections.abc import Callable

from splade.config import TrainConfig
from splade.model import SpladeModel
from splade.trainer.events import Listener, Listeners, StepCallback
from splade.trainer.listeners.history import HistoryFile
from splade.trainer.listeners.progress import Progress
from splade.trainer.listeners.rotation import CheckpointRotation
from splade.trainer.listeners.selection import Selection
from splade.trainer.listeners.tensorboard import TensorBoard

__all__ = ["CheckpointRotation", "HistoryFile", "Progress", "Selection", "TensorBoard", "build_listeners"]


def build_listeners(
    config: TrainConfig,
    model: SpladeModel,
    is_main: bool,
    resumed_at: int | None = None,
    step_callback: Callable[[int], None] | None = None,
) -> Listeners:
    """Rank 0's listeners, in the order they hear each event (the selection completes an evaluation's
    entry before the history file writes it); other ranks only run `step_callback`. `resumed_at`: the
    step of the checkpoint a resumed run starts from."""
    out = config.output.dir
    listeners: list[Listener] = []
    if is_main:
        listeners.append(Selection(config, model))
        if config.output.tensorboard:
            listeners.append(TensorBoard(out / "tensorboard", resumed_at))
        listeners += [HistoryFile(out), CheckpointRotation(out, config.training.save_total_limit), Progress()]
    if step_callback is not None:
        listeners.append(StepCallback(step_callback))
    return Listeners(listeners)
