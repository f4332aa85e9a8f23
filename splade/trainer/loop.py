"""The training loop (guide sections 1, 4, 8, 9): epochs of the curriculum, micro-batches, optimizer steps,
checkpoints with exact resume, evaluations; it stops at the epochs' end, `max_steps`, a wall-clock budget,
early stopping or a non-finite loss.

What a run reports is done by listeners (`trainer/events.py`, `trainer/listeners/`): TensorBoard, the
history file, checkpoint rotation, best-model selection with early stopping, the progress bar. The parts
the loop drives come from `setup.build_run`: `TrainingData`, `Schedule` (phase, learning rate and loss
weights per step: a pure function of the step), `TrainStep` (forward, loss, backward, update).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from splade.atomic import write_json
from splade.config import TrainConfig
from splade.errors import SpladeError
from splade.trainer import checkpoints as ckpt
from splade.trainer.batches import TripletBatch, make_batch
from splade.trainer.budget import Budget, time_step
from splade.trainer.curriculum import PhaseSettings
from splade.trainer.distributed import Distributed
from splade.trainer.events import Evaluation, Listeners, StepEnd, TrainBegin
from splade.trainer.listeners import build_listeners
from splade.trainer.listeners.selection import best_fields
from splade.trainer.metrics import sparsity_stats
from splade.trainer.sampler import epoch_indices
from splade.trainer.setup import build_run, fit_budget, resolve_device, seed_everything
from splade.trainer.step import RunningMeans
from splade.trainer.validation import Validator

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced. `summary`: `best_value` (the monitored metric at the best evaluation,
    as reported; higher is better unless `monitored` is `train/loss`, None when `monitored` is "last": the
    last weights were kept), `monitored`, `higher_is_better`, `best_step`, `best_epoch`, `best_metric` (the
    selection's ranking key, lower is better), the example counts and the setup's seconds."""

    output_dir: Path
    best_model_dir: Path
    history: list[dict[str, Any]]
    global_step: int
    stopped_early: bool = False
    skipped_lines: int = 0
    last_checkpoint: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    is_main: bool = True  # rank 0 of a run on several processes (the one that wrote the outputs)


class Trainer:
    """One training run; `train()` below is the entry point."""

    def __init__(
        self, config: TrainConfig, checkpoint: Path | None, step_callback: Callable[[int], None] | None = None
    ) -> None:
        self.config = config
        self.cfg_t = t = config.training
        self.out = config.output.dir
        self.checkpoint = checkpoint
        self.step_callback = step_callback
        started = time.perf_counter()
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every checkpoint
        seed_everything(t.seed)
        self._threads = torch.get_num_threads()
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.dist = Distributed.from_environment()
        self.is_main = self.dist.is_main
        self.device = self.dist.device(resolve_device(t.device))
        self.parts = parts = build_run(config, checkpoint, self.dist, self.device)
        self.step, self.schedule, self.data = parts.step, parts.schedule, parts.data
        self.validate = Validator(
            parts.step, parts.schedule, parts.val_batches, parts.dev, config.loss.similarity, self.device
        )
        self.state = ckpt.TrainerState(skipped_lines=parts.data.dataset.skipped)
        self.resume_settings = ckpt.resume_settings(config)
        if checkpoint is not None:
            ckpt.warn_if_settings_changed(checkpoint, self.resume_settings)
            ckpt.load_optim_states(checkpoint, parts.optimizer, parts.scheduler, parts.scaler, self.device)
            self.state = ckpt.load_trainer_state(checkpoint)  # restores RNG states last
            log.info("resuming from %s (step %d)", checkpoint, self.state.global_step)
        self.events = Listeners()
        self.max_steps = t.max_steps
        if self.max_steps is None and self.state.planned_steps is not None:  # a wall-clock budget's plan
            self._plan(self.state.planned_steps)
        parts.setup_seconds["total"] = time.perf_counter() - started

    def _plan(self, steps: int) -> None:
        """Train `steps` optimizer steps: the schedule shrinks to fit them (a `max_minutes` budget)."""
        self.state.planned_steps = self.max_steps = steps
        fit_budget(self.parts, self.config, steps)

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        state = self.state
        finished = self._finished_before()
        if finished:
            log.warning("%s: this run already %s; nothing left to train", self.checkpoint, finished)
            torch.set_num_threads(self._threads)
            return self._result(self.checkpoint)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "train_config.json", self.config.model_dump(mode="json"))
            write_json(self.out / "data_mix.json", self.data.mix())
        resumed_at = state.global_step if self.checkpoint else None
        self.events = build_listeners(
            self.config, self.parts.model, self.is_main, resumed_at, self.step_callback
        )
        try:
            last_ckpt, partial = self._train()
            self.events.on_train_end(state)
        finally:
            self.events.close()
            torch.set_num_threads(self._threads)
        return self._result(last_ckpt, partial)

    def _finished_before(self) -> str | None:
        """Why the resumed run has nothing left to train (None: it has): it stopped early, or the
        `max_minutes` clock ended it and no `max_steps` asks for more."""
        state = self.state
        if state.stopped_early:
            return (f"stopped early after epoch {state.epoch - 1} "
                    f"(no improvement for {state.bad_epochs} evaluations)")
        if state.out_of_time and self.cfg_t.max_steps is None:
            return (f"spent its training.max_minutes budget at step {state.global_step} "
                    "(set training.max_steps to train on)")
        return None

    def _train(self) -> tuple[Path | None, dict[str, Any] | None]:
        """Epochs of micro-batches until the last epoch, `max_steps`, the budget or early stopping; the
        last checkpoint and the record of an epoch cut short."""
        t, state = self.cfg_t, self.state
        budget = Budget(t.max_minutes)
        if state.global_step == 0 and self.checkpoint is None:
            self._evaluate_start(budget)
        total = self.parts.micro_batches * t.num_epochs
        if self.max_steps is not None:
            total = min(total, self.max_steps * t.gradient_accumulation_steps)
        done = (state.epoch - 1) * self.parts.micro_batches + state.batch_in_epoch
        self.events.on_train_begin(state, TrainBegin(total, done))
        finished = self._reached_max_steps()
        if finished and state.epoch <= t.num_epochs:
            log.warning(
                "already at the run's %d steps (step %d); nothing to train", self.max_steps, state.global_step
            )
        last_ckpt: Path | None = self.checkpoint
        self.step.epoch = RunningMeans(state.epoch_sums, self.device)
        while state.epoch <= t.num_epochs and not finished and not state.stopped_early:
            epoch = state.epoch
            phase = self.schedule.phase(epoch)
            batches = self._epoch_batches(epoch, phase)
            started = time.time()
            for b in range(state.batch_in_epoch, self.parts.micro_batches):
                if not self._micro_batch(batches[b], b, phase):
                    continue  # inside an accumulation group
                last_ckpt = self._optimizer_step(epoch, phase, last_ckpt)
                if state.stopped_early:
                    break
                if self._reached_max_steps():
                    finished = True
                    break
                if self._out_of_time(budget):
                    finished = state.out_of_time = True
                    break
            if state.stopped_early:
                break
            if finished:
                self._evaluate_where_stopped(epoch, phase)
            if finished and state.batch_in_epoch < self.parts.micro_batches:
                return self._stop_mid_epoch(epoch, phase, started, last_ckpt)
            self._end_epoch(epoch, phase, started)
            last_ckpt = self._save(phase)
        return last_ckpt, None

    def _epoch_batches(self, epoch: int, phase: PhaseSettings) -> np.ndarray:
        """The epoch's triplet indices (the phase's data focus, seeded by the epoch), one row a batch."""
        columns = {k: self.data.values(k) for k in ("pair_type", "difficulty")}
        size = self.parts.micro_batches * self.config.data.batch_size
        order = epoch_indices(
            columns, phase.focus, size, self.cfg_t.seed, epoch,
            self.data.nearest, self.config.data.neighbour_groups.size,
        )
        return self.data.pool[order].reshape(self.parts.micro_batches, -1)

    def _micro_batch(self, rows: np.ndarray, b: int, phase: PhaseSettings) -> bool:
        """Forward and backward micro-batch `b`; True when it ends an accumulation group."""
        state, accumulate = self.state, self.cfg_t.gradient_accumulation_steps
        batch = self._batch(rows)
        weights = self.schedule.loss_weights(state.global_step, phase)
        self.step.measure_shares = self._logs_at(state.global_step + 1)
        boundary = (b + 1) % accumulate == 0 or b + 1 == self.parts.micro_batches
        group = min(
            accumulate, self.parts.micro_batches - b // accumulate * accumulate
        )  # the last may be short
        self.step.micro_batch(batch.to(self.device), weights, group, boundary)
        state.batch_in_epoch = b + 1
        self.events.on_batch_end(state, phase)
        return boundary

    def _optimizer_step(self, epoch: int, phase: PhaseSettings, last_ckpt: Path | None) -> Path | None:
        """The update, then what falls on this step: the log scalars, a checkpoint, a dev evaluation."""
        state, save_steps = self.state, self.cfg_t.save_steps
        lr = self.parts.scheduler.get_last_lr()[0]
        self.step.optimizer_step()
        state.global_step += 1
        if self.device.type != "cuda":  # a sync per step costs nothing on a CPU
            self._check_finite(epoch)
        scalars = self._scalars(epoch, phase, lr) if self._logs_at(state.global_step) else None
        if save_steps and state.global_step % save_steps == 0:
            last_ckpt = self._save(phase)
        every = self._dev_every()
        if every and state.global_step % every == 0:
            if self.is_main:  # rank 0 evaluates and decides; the others follow its decision
                self._evaluated(self._evaluate("step", epoch, phase), state.evaluations)
            state.stopped_early = self.dist.broadcast_flag(state.stopped_early)
        self.events.on_step_end(state, StepEnd(epoch, phase, lr, scalars))
        return last_ckpt

    def _scalars(self, epoch: int, phase: PhaseSettings, lr: float) -> dict[str, float]:
        """A log step's `train/...` scalars (reads the device once)."""
        self._check_finite(epoch)
        window = self.step.read_window()
        q, docs = self.step.last
        weights = self.schedule.loss_weights(self.state.global_step - 1, phase)
        return {
            "train/learning_rate": lr,
            "train/gradient_norm": float(self.step.grad_norm),
            "train/temperature": phase.temperature,
            "train/phase": phase.index,
            **{f"train/lambda_{name}": weights.of(name) for name in weights.active()},
            **{f"train/grad_share_{name}": share for name, share in self.step.shares.items()},
            "train/epoch": epoch,
            **{f"train/{k}": v for k, v in window.items()},
            **{f"train/{k}": v for k, v in sparsity_stats(q, docs).items()},
        }

    # ---- evaluations -------------------------------------------------------------------------------
    def _evaluate_start(self, budget: Budget) -> None:
        """Step 0: the start is evaluated (and kept as the best model until training beats it), so no
        selected model is below it. A wall-clock budget then times steps and plans how many fit."""
        phase = self.schedule.phase(1)
        started = time.perf_counter()
        if self.parts.dev and self.is_main:
            self._evaluated(self._evaluate("start", 1, phase), self.state.evaluations)
        evaluation = time.perf_counter() - started
        if budget.minutes is None or self.max_steps is not None:
            return
        budget.reserve = self.dist.broadcast_int(round(evaluation * 1000)) / 1000 if self.parts.dev else 0.0
        dev = self.config.dev
        evaluations = (dev.evaluations or self.cfg_t.num_epochs) if self.parts.dev else 0
        rows = self.data.pool[: self.config.data.batch_size]
        weights = self.schedule.loss_weights(0, phase)
        seconds = time_step(
            self.step, self._batch(rows).to(self.device), weights, self.cfg_t.gradient_accumulation_steps
        )
        self.step.epoch = RunningMeans(self.state.epoch_sums, self.device)
        steps = budget.plan(seconds, evaluation, dev.every_steps, evaluations)
        log.info("training.max_minutes=%g: planned %d optimizer steps", budget.minutes, steps)
        self._plan(self.dist.broadcast_int(steps))

    def _evaluate(
        self, kind: str, epoch: int, phase: PhaseSettings, started: float | None = None
    ) -> Evaluation:
        """Measure the model now. An epoch's evaluation ("epoch", "partial") also summarises its training
        and measures the dev sets only when no `dev.every_steps` evaluations select instead."""
        by_epoch = kind in ("epoch", "partial")
        val = self.validate(self.state.global_step, phase, with_dev=not (by_epoch and self._dev_every_steps))
        record: dict[str, Any] = {"epoch": epoch, "global_step": self.state.global_step, "phase": phase.index}
        record["val"] = val
        train = self.step.epoch.read()
        if by_epoch:
            record.update(
                phase_name=phase.name,
                temperature=phase.temperature,
                lambda_infonce=phase.lambda_infonce,
                lr_multiplier=phase.lr_multiplier,
                learning_rate=self.parts.scheduler.get_last_lr()[0],
                train=train,
                seconds=round(time.time() - (started or time.time()), 3),
            )
        if kind == "partial":
            record["partial"] = True
        # with dev.every_steps the dev evaluations alone select; an epoch's end only records
        selects = kind in ("start", "step") or (kind == "epoch" and not self._dev_every_steps)
        return Evaluation(kind, phase, record, train, selects)

    def _out_of_time(self, budget: Budget) -> bool:
        """Rank 0's clock decides for every process, so all stop after the same step."""
        return budget.minutes is not None and self.dist.broadcast_flag(budget.spent())

    def _evaluate_where_stopped(self, epoch: int, phase: PhaseSettings) -> None:
        """A run that `max_steps` or the clock ends between two step-wise dev evaluations is evaluated
        where it stopped, so its last steps can still be selected (every rank decides alike)."""
        every = self._dev_every() if self.parts.dev else None
        if not every or self.state.global_step % every == 0:
            return
        if self.is_main:
            self._evaluated(self._evaluate("step", epoch, phase), self.state.evaluations)
        self.state.stopped_early = self.dist.broadcast_flag(self.state.stopped_early)

    def _evaluated(self, evaluation: Evaluation, entries: list[dict[str, Any]] | None) -> None:
        """Keep the entry in the state's `entries` (a resume carries them on) and tell the listeners."""
        if entries is not None:
            entries.append(evaluation.record)
        self.events.on_evaluate(self.state, evaluation)

    def _end_epoch(self, epoch: int, phase: PhaseSettings, started: float) -> None:
        """Evaluate and record the epoch (rank 0), then move to the next one."""
        state = self.state
        if self.is_main:
            self._evaluated(self._evaluate("epoch", epoch, phase, started), state.history)
        state.stopped_early = self.dist.broadcast_flag(state.stopped_early)
        state.epoch, state.batch_in_epoch, state.epoch_sums = epoch + 1, 0, {}
        self.step.epoch = RunningMeans(device=self.device)

    def _stop_mid_epoch(
        self, epoch: int, phase: PhaseSettings, started: float, last_ckpt: Path | None
    ) -> tuple[Path, dict[str, Any]]:
        """max_steps or the clock reached inside an epoch: checkpoint the true position (a resume continues
        this epoch) and report the partial epoch, without the end-of-epoch bookkeeping."""
        state = self.state
        written = last_ckpt is not None and last_ckpt.name == f"checkpoint_{state.global_step}"
        if not written or state.out_of_time:  # this step's checkpoint came before the clock ended the run
            last_ckpt = self._save(phase)
        record: dict[str, Any] = {"epoch": epoch, "global_step": state.global_step, "partial": True}
        if self.is_main:
            evaluation = self._evaluate("partial", epoch, phase, started)
            self._evaluated(evaluation, None)
            record = evaluation.record
        reason = (f"training.max_steps={self.cfg_t.max_steps}" if self.cfg_t.max_steps is not None
                  else f"training.max_minutes={self.cfg_t.max_minutes:g}")
        log.info(
            "stopped at step %d (%s) in epoch %d after %d of %d batches; --resume continues it",
            state.global_step,
            reason,
            epoch,
            state.batch_in_epoch,
            self.parts.micro_batches,
        )
        return last_ckpt, record

    # ---- checkpoints, the result ---------------------------------------------------------------------
    def _save(self, phase: PhaseSettings) -> Path:
        """A checkpoint of the run's position (written by rank 0; the others wait for it)."""
        state, parts = self.state, self.parts
        self._check_finite(state.epoch)
        state.epoch_sums = self.step.epoch.state()
        path = self.out / f"checkpoint_{state.global_step}"
        if self.is_main:
            if parts.teacher is not None:
                parts.teacher.flush()
            info = {
                "phase": phase.index,
                "temperature": phase.temperature,
                "best_metric": state.best_metric,
                "model": self.config.model.name,
                "stopped_early": state.stopped_early,
                "resume_settings": self.resume_settings,
                "resume_settings_hash": ckpt.settings_hash(self.resume_settings),
                "time": time.time(),
            }
            path = ckpt.save_checkpoint(
                self.out, parts.model, parts.optimizer, parts.scheduler, parts.scaler, state, info
            )
            self.events.on_save(state, path)
        self.dist.barrier()
        return path

    def _check_finite(self, epoch: int) -> None:
        if self.step.is_finite():
            return
        latest = ckpt.latest_checkpoint(self.out)
        keep = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise SpladeError(
            f"the loss or gradient norm became non-finite by step {self.state.global_step} (epoch {epoch}); "
            f"training stopped and {keep}. Lower training.learning_rate or check the data"
        )

    def _result(self, last_ckpt: Path | None, partial: dict[str, Any] | None = None) -> TrainResult:
        state, parts = self.state, self.parts
        return TrainResult(
            self.out,
            self.out / "best_model",
            state.history + ([partial] if partial else []),
            state.global_step,
            state.stopped_early,
            state.skipped_lines,
            last_ckpt,
            summary={
                **best_fields(state),
                "train_examples": len(parts.data.dataset),
                "pool_examples": len(parts.data.pool),
                "val_examples": sum(len(b) for b in parts.val_batches),
                "setup_seconds": {k: round(v, 2) for k, v in parts.setup_seconds.items()},
            },
            is_main=self.is_main,
        )

    # ---- where the run is --------------------------------------------------------------------------
    def _batch(self, rows: np.ndarray) -> TripletBatch:
        """The triplets `rows` of a global batch, this process's share tokenized and padded."""
        data = self.data
        pad, local = self.parts.tokenizer.pad_id, self.dist.shard(rows)
        cut = self.config.data
        return make_batch(data.table, data.rows, rows, pad, local, cut.query_max_length, cut.max_length,
                          cut.document_window)

    def _logs_at(self, step: int) -> bool:
        """A log line (with each term's gradient share) falls on optimizer step `step` (1-based)."""
        return step % self.cfg_t.logging_steps == 0 or step == 1

    def _reached_max_steps(self) -> bool:
        return self.max_steps is not None and self.state.global_step >= self.max_steps

    @property
    def _dev_every_steps(self) -> bool:
        return bool(self.parts.dev and self._dev_every())

    def _dev_every(self) -> int | None:
        """Optimizer steps between dev evaluations (None: at epoch ends)."""
        dev = self.config.dev
        if dev.every_steps:
            return dev.every_steps
        if dev.evaluations and self.max_steps:  # rounded up: the last one falls on the last step
            return max(1, math.ceil(self.max_steps / dev.evaluations))
        return None


def find_checkpoint(config: TrainConfig, resume: bool, resume_from: Path | None) -> Path | None:
    """The checkpoint to resume from: `resume_from`, else the latest in the output dir when `resume`."""
    if resume_from is not None:
        return ckpt.check_checkpoint(Path(resume_from))
    if resume:
        latest = ckpt.latest_checkpoint(config.output.dir)
        if latest is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", config.output.dir)
        return latest
    return None


def train(
    config: TrainConfig,
    resume: bool = False,
    resume_from: Path | None = None,
    step_callback: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a SPLADE model as `config` says; writes checkpoints, `best_model/`, history and TensorBoard.

    `step_callback(global_step)` runs after every optimizer step (and after that step's checkpoint). An
    output dir holding another run is refused unless `resume` continues it or `overwrite` replaces it.
    """
    from splade.trainer import run_folder

    run_folder.prepare_output_dir(config.output.dir, resume, resume_from, overwrite)
    checkpoint = find_checkpoint(config, resume, resume_from)
    if checkpoint is not None:
        run_folder.check_resume(checkpoint, config)
    return Trainer(config, checkpoint, step_callback).run()
