"""The training loop (guide sections 1, 4, 8, 9): epochs of the curriculum, checkpoints with exact resume,
dev-set retrieval that selects the best model and stops early, TensorBoard and `training_history.json`.

The pieces it drives: `TrainingData` (token ids computed once, the sampling pool), `Schedule` (phase,
learning rate and loss weights per step), `TrainStep` (forward, loss, backward, update on the device),
`TeacherScores` (distillation), `DevEvaluator` and `Selection` (best model, early stopping).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from splade.atomic import atomic_dir, write_json
from splade.config import TrainConfig
from splade.errors import SpladeError
from splade.trainer import checkpoints as ckpt
from splade.trainer.batches import make_batch
from splade.trainer.budget import Budget
from splade.trainer.curriculum import PhaseSettings
from splade.trainer.distributed import Distributed
from splade.trainer.losses import similarity
from splade.trainer.metrics import ProgressBar, ScalarLogger, ranking_stats, sparsity_stats
from splade.trainer.sampler import epoch_indices
from splade.trainer.selection import Selection
from splade.trainer.setup import build_run, fit_budget, resolve_device, seed_everything
from splade.trainer.step import RunningMeans

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced."""

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
        self.cfg_t = config.training
        self.out = config.output.dir
        self.checkpoint = checkpoint
        self.step_callback = step_callback
        started = time.perf_counter()
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every checkpoint
        seed_everything(self.cfg_t.seed)
        self._threads = torch.get_num_threads()
        if self.cfg_t.num_threads:
            torch.set_num_threads(self.cfg_t.num_threads)
        self.dist = Distributed.from_environment()
        self.is_main = self.dist.is_main
        self.device = self.dist.device(resolve_device(self.cfg_t.device))
        self.parts = build_run(config, checkpoint, self.dist, self.device)
        parts = self.parts
        self.state = ckpt.TrainerState(skipped_lines=parts.data.dataset.skipped)
        self.resume_settings = ckpt.resume_settings(config)
        if checkpoint is not None:
            ckpt.warn_if_settings_changed(checkpoint, self.resume_settings)
            ckpt.load_optim_states(checkpoint, parts.optimizer, parts.scheduler, parts.scaler, self.device)
            self.state = ckpt.load_trainer_state(checkpoint)  # restores RNG states last
            log.info("resuming from %s (step %d)", checkpoint, self.state.global_step)
        self.selection = Selection(
            self.state, self.cfg_t.early_stopping_patience or 0, self.cfg_t.early_stopping_min_delta
        )
        self.max_steps = self.cfg_t.max_steps
        if self.max_steps is None and self.state.planned_steps is not None:  # a wall-clock budget's plan
            self._plan(self.state.planned_steps)
        parts.setup_seconds["total"] = time.perf_counter() - started

    def _plan(self, steps: int) -> None:
        """Train `steps` optimizer steps: the schedule shrinks to fit them (a `max_minutes` budget)."""
        self.state.planned_steps = self.max_steps = steps
        fit_budget(self.parts, self.config, steps)

    # ---- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, phase: PhaseSettings, with_dev: bool = True) -> dict[str, float]:
        """Validation triplets (loss, in-batch ranking, sparsity), then the dev sets' retrieval metric."""
        results: dict[str, float] = {}
        if self.parts.val_batches:
            self.parts.model.eval()
            means = RunningMeans(device=self.device)
            weights = self.parts.schedule.loss_weights(self.state.global_step, phase)
            for batch in self.parts.val_batches:
                batch = batch.to(self.device)
                out = self.parts.step.forward(batch, weights, with_teacher=False, gather=False)
                q, docs = self.parts.step.last
                stats = {
                    "loss": out.total.detach(),
                    **{f"loss_{k}": v.detach() for k, v in out.components.items()},
                }
                ranking = ranking_stats(similarity(q, docs, self.config.loss.similarity), len(batch))
                means.add(
                    {
                        **stats,
                        **{k: torch.tensor(v) for k, v in {**ranking, **sparsity_stats(q, docs)}.items()},
                    }
                )
            self.parts.model.train()
            results.update(means.read())
        if self.parts.dev and with_dev:
            results.update(self.parts.dev.evaluate(self.parts.model, self.parts.step.pooling, self.device))
        return results

    def _monitored(self, val: dict[str, float], train_stats: dict[str, float]) -> tuple[str, float]:
        """The value that selects the best model (lower is better): the dev metric, else validation MRR,
        else the training loss."""
        metric = f"dev/{self.config.dev.metric}"
        if metric in val:
            return metric, -val[metric]
        if "mrr" in val:
            return "val/mrr", -val["mrr"]
        return "train/loss", train_stats.get("loss", float("inf"))

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        t, state = self.cfg_t, self.state
        if state.stopped_early:
            log.warning(
                "%s: this run already stopped early after epoch %d (no improvement for %d evaluations); "
                "nothing left to train",
                self.checkpoint,
                state.epoch - 1,
                state.bad_epochs,
            )
            torch.set_num_threads(self._threads)
            return self._result(self.checkpoint)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "train_config.json", self.config.model_dump(mode="json"))
            write_json(self.out / "data_mix.json", self.parts.data.mix())
        tb = ScalarLogger(
            self.out / "tensorboard" if self.config.output.tensorboard and self.is_main else None,
            purge_step=state.global_step + 1 if self.checkpoint else None,
        )
        budget = Budget(self.cfg_t.max_minutes)
        if state.global_step == 0 and self.checkpoint is None:
            self._evaluate_start(tb, budget)
        bar = ProgressBar(self._total_micro_batches(), self._done_micro_batches(), enabled=self.is_main)
        finished = self._reached_max_steps()
        if finished and state.epoch <= t.num_epochs:
            log.warning(
                "already at training.max_steps=%d (step %d); nothing to train", t.max_steps, state.global_step
            )
        last_ckpt: Path | None = self.checkpoint
        partial: dict[str, Any] | None = None
        self.parts.step.epoch = RunningMeans(state.epoch_sums, self.device)
        try:
            while state.epoch <= t.num_epochs and not finished and not state.stopped_early:
                epoch = state.epoch
                phase = self.parts.schedule.phase(epoch)
                order = epoch_indices(
                    {k: self.parts.data.values(k) for k in ("pair_type", "difficulty")},
                    phase.focus,
                    self.parts.micro_batches * self.config.data.batch_size,
                    t.seed,
                    epoch,
                )
                batches = self.parts.data.pool[order].reshape(self.parts.micro_batches, -1)
                started = time.time()
                for b in range(state.batch_in_epoch, self.parts.micro_batches):
                    local = self.dist.shard(batches[b])
                    batch = make_batch(
                        self.parts.data.table,
                        self.parts.data.rows,
                        batches[b],
                        self.parts.tokenizer.pad_id,
                        local,
                        self.config.data.query_max_length,
                    )
                    weights = self.parts.schedule.loss_weights(state.global_step, phase)
                    self.parts.step.measure_shares = self._logs_at(state.global_step + 1)
                    boundary = (
                        b + 1
                    ) % t.gradient_accumulation_steps == 0 or b + 1 == self.parts.micro_batches
                    self.parts.step.micro_batch(batch.to(self.device), weights, self._group_size(b), boundary)
                    state.batch_in_epoch = b + 1
                    bar.update(phase.index)
                    if not boundary:
                        continue
                    last_ckpt = self._after_optimizer_step(epoch, phase, tb, bar, last_ckpt)
                    if state.stopped_early:
                        break
                    if self._reached_max_steps() or budget.spent():
                        finished = True
                        break
                if state.stopped_early:
                    break
                if finished and state.batch_in_epoch < self.parts.micro_batches:
                    last_ckpt, partial = self._stop_mid_epoch(epoch, phase, started, tb, last_ckpt)
                    break
                self._end_epoch(epoch, phase, started, tb)
                last_ckpt = self._save(phase)
        finally:
            bar.close()
            tb.close()
            torch.set_num_threads(self._threads)
        if self.is_main and not (self.out / "best_model").is_dir():  # nothing evaluated yet: the last weights
            self._save_best()
        return self._result(last_ckpt, partial)

    def _after_optimizer_step(
        self, epoch: int, phase: PhaseSettings, tb: ScalarLogger, bar: ProgressBar, last_ckpt: Path | None
    ) -> Path | None:
        """The update, then what falls on this step: a log line, a checkpoint, a dev evaluation."""
        t, state = self.cfg_t, self.state
        lr = self.parts.scheduler.get_last_lr()[0]
        self.parts.step.optimizer_step()
        state.global_step += 1
        every_step_check = self.device.type != "cuda"  # a sync per step costs nothing on a CPU
        if every_step_check and not self.parts.step.is_finite():
            self._fail_non_finite(epoch)
        if self._logs_at(state.global_step):
            self._log_step(epoch, phase, lr, tb, bar)
        else:
            bar.show(lr=lr)
        if t.save_steps and state.global_step % t.save_steps == 0:
            last_ckpt = self._save(phase)
        every = self._dev_every()
        if every and state.global_step % every == 0:
            self._evaluate_mid_epoch(epoch, phase, tb)
        if self.step_callback is not None:
            self.step_callback(state.global_step)
        return last_ckpt

    def _log_step(
        self, epoch: int, phase: PhaseSettings, lr: float, tb: ScalarLogger, bar: ProgressBar
    ) -> None:
        if not self.parts.step.is_finite():
            self._fail_non_finite(epoch)
        state = self.state
        window = self.parts.step.read_window()
        q, docs = self.parts.step.last
        weights = self.parts.schedule.loss_weights(state.global_step - 1, phase)
        scalars = {
            "train/learning_rate": lr,
            "train/gradient_norm": float(self.parts.step.grad_norm),
            "train/temperature": phase.temperature,
            "train/phase": phase.index,
            **{f"train/lambda_{name}": weights.of(name) for name in weights.active()},
            **{f"train/grad_share_{name}": share for name, share in self.parts.step.shares.items()},
            "train/epoch": epoch,
            **{f"train/{k}": v for k, v in window.items()},
            **{f"train/{k}": v for k, v in sparsity_stats(q, docs).items()},
        }
        tb.log(scalars, state.global_step)
        bar.show(lr=lr, loss=window.get("loss", float("nan")))
        log.info(
            "step %d epoch %d loss %.4f lr %.3g", state.global_step, epoch, window.get("loss", math.nan), lr
        )

    def _fail_non_finite(self, epoch: int) -> None:
        latest = ckpt.latest_checkpoint(self.out)
        keep = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise SpladeError(
            f"the loss or gradient norm became non-finite by step {self.state.global_step} (epoch {epoch}); "
            f"training stopped and {keep}. Lower training.learning_rate or check the data"
        )

    def _result(self, last_ckpt: Path | None, partial: dict[str, Any] | None = None) -> TrainResult:
        state = self.state
        return TrainResult(
            self.out,
            self.out / "best_model",
            state.history + ([partial] if partial else []),
            state.global_step,
            state.stopped_early,
            state.skipped_lines,
            last_ckpt,
            summary={
                "best_epoch": state.best_epoch,
                "best_metric": state.best_metric,
                "best_step": state.best_step,
                "monitored": state.monitored,
                "train_examples": len(self.parts.data.dataset),
                "pool_examples": len(self.parts.data.pool),
                "val_examples": sum(len(b) for b in self.parts.val_batches),
                "setup_seconds": {k: round(v, 2) for k, v in self.parts.setup_seconds.items()},
            },
            is_main=self.is_main,
        )

    def _logs_at(self, step: int) -> bool:
        """A log line (with each term's gradient share) falls on optimizer step `step` (1-based)."""
        return step % self.cfg_t.logging_steps == 0 or step == 1

    def _total_micro_batches(self) -> int:
        total = self.parts.micro_batches * self.cfg_t.num_epochs
        if self.max_steps is not None:
            total = min(total, self.max_steps * self.cfg_t.gradient_accumulation_steps)
        return total

    def _done_micro_batches(self) -> int:
        return (self.state.epoch - 1) * self.parts.micro_batches + self.state.batch_in_epoch

    def _reached_max_steps(self) -> bool:
        return self.max_steps is not None and self.state.global_step >= self.max_steps

    def _evaluate_start(self, tb: ScalarLogger, budget: Budget) -> None:
        """Step 0: the start is evaluated (and kept as the best model until training beats it), so no
        selected model is below it. A wall-clock budget then times steps and plans how many fit."""
        phase = self.parts.schedule.phase(1)
        started = time.perf_counter()
        if self.parts.dev and self.is_main:
            record = self._evaluate(1, phase, tb)
            record["best"] = self._select(record, phase)
            self.state.evaluations.append(record)
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_history(self.state.history)
        evaluation = time.perf_counter() - started
        if budget.minutes is None or self.max_steps is not None:
            return
        dev = self.config.dev
        evaluations = (dev.evaluations or self.cfg_t.num_epochs) if self.parts.dev else 0
        steps = budget.plan(self._time_step(), evaluation, dev.every_steps, evaluations)
        log.info("training.max_minutes=%g: planned %d optimizer steps", budget.minutes, steps)
        self._plan(self.dist.broadcast_int(steps))

    def _time_step(self) -> float:
        """Seconds of one optimizer step, timed on the first batch (the gradients are dropped)."""
        parts = self.parts
        rows = parts.data.pool[: self.config.data.batch_size]
        batch = make_batch(
            parts.data.table,
            parts.data.rows,
            rows,
            parts.tokenizer.pad_id,
            self.dist.shard(rows),
            self.config.data.query_max_length,
        ).to(self.device)
        weights = parts.schedule.loss_weights(0, parts.schedule.phase(1))
        started = time.perf_counter()
        for _ in range(2):
            parts.step.micro_batch(batch, weights, 1)
        seconds = (time.perf_counter() - started) / 2 * self.cfg_t.gradient_accumulation_steps
        parts.optimizer.zero_grad(set_to_none=True)
        parts.step.window = RunningMeans(device=self.device)
        parts.step.epoch = RunningMeans(self.state.epoch_sums, self.device)
        return seconds

    def _group_size(self, b: int) -> int:
        """Micro-batches in the accumulation group of micro-batch `b`; the epoch's last group may be short."""
        steps = self.cfg_t.gradient_accumulation_steps
        return min(steps, self.parts.micro_batches - b // steps * steps)

    # ---- evaluations, selection, history ------------------------------------------------------------
    def _evaluate(
        self, epoch: int, phase: PhaseSettings, tb: ScalarLogger, with_dev: bool = True
    ) -> dict[str, Any]:
        """Validation and dev metrics now, and the monitored value (lower is better)."""
        val = self.validate(phase, with_dev)
        tb.log({(k if "/" in k else f"val/{k}"): v for k, v in val.items()}, self.state.global_step)
        monitored, metric = self._monitored(val, self.parts.step.epoch.read())
        return {
            "epoch": epoch,
            "global_step": self.state.global_step,
            "phase": phase.index,
            "val": val,
            "monitored": monitored,
            "metric": metric,
        }

    @property
    def _dev_every_steps(self) -> bool:
        return bool(self.parts.dev and self._dev_every())

    def _dev_every(self) -> int | None:
        """Optimizer steps between dev evaluations (None: at epoch ends)."""
        dev = self.config.dev
        if dev.every_steps:
            return dev.every_steps
        if dev.evaluations and self.max_steps:
            return max(1, self.max_steps // dev.evaluations)
        return None

    def _select(self, record: dict[str, Any], phase: PhaseSettings) -> bool:
        """Keep the best model and count towards early stopping; True when this evaluation is the best."""
        state = self.state
        if record["monitored"] == "train/loss":
            self.selection.restart_on_new_phase(phase)
        improved = self.selection.observe(
            record["metric"], record["monitored"], record["epoch"], record["global_step"], phase.index
        )
        if improved:
            self._save_best()
        if state.stopped_early:
            log.warning(
                "early stopping at step %d (epoch %d): %s did not improve for %d evaluations",
                state.global_step,
                record["epoch"],
                record["monitored"],
                self.selection.patience,
            )
        return improved

    def _evaluate_mid_epoch(self, epoch: int, phase: PhaseSettings, tb: ScalarLogger) -> None:
        """A `dev.every_steps` evaluation: selection and early stopping, recorded in the history file (rank
        0 evaluates and decides)."""
        if self.is_main:
            record = self._evaluate(epoch, phase, tb)
            record["best"] = self._select(record, phase)
            self.state.evaluations.append(record)
            self._write_history(self.state.history)
        self.state.stopped_early = self.dist.broadcast_flag(self.state.stopped_early)

    def _write_history(self, entries: list[dict[str, Any]]) -> None:
        state = self.state
        write_json(
            self.out / "training_history.json",
            {
                "best_epoch": state.best_epoch,
                "best_step": state.best_step,
                "best_metric": state.best_metric,
                "monitored": state.monitored,
                "epochs": entries,
                "evaluations": state.evaluations,
            },
        )

    def _epoch_record(
        self, epoch: int, phase: PhaseSettings, started: float, tb: ScalarLogger
    ) -> dict[str, Any]:
        """Evaluate and summarise the epoch so far as one history entry (without its `best` flag)."""
        train_stats = self.parts.step.epoch.read()
        tb.log({f"epoch/train_{k}": v for k, v in train_stats.items()}, epoch)
        return {
            **self._evaluate(epoch, phase, tb, with_dev=not self._dev_every_steps),
            "phase_name": phase.name,
            "temperature": phase.temperature,
            "lambda_infonce": phase.lambda_infonce,
            "lr_multiplier": phase.lr_multiplier,
            "learning_rate": self.parts.scheduler.get_last_lr()[0],
            "train": train_stats,
            "seconds": round(time.time() - started, 3),
        }

    def _end_epoch(self, epoch: int, phase: PhaseSettings, started: float, tb: ScalarLogger) -> None:
        """Evaluate, record history, keep the best model, move to the next epoch, decide early stopping."""
        state = self.state
        if self.is_main:
            record = self._epoch_record(epoch, phase, started, tb)
            # with dev.every_steps the dev evaluations alone select; an epoch's end only records
            record["best"] = not self._dev_every_steps and self._select(record, phase)
            state.history.append(record)
            self._write_history(state.history)
        state.stopped_early = self.dist.broadcast_flag(state.stopped_early)
        state.epoch, state.batch_in_epoch, state.epoch_sums = epoch + 1, 0, {}
        self.parts.step.epoch = RunningMeans(device=self.device)

    def _stop_mid_epoch(
        self, epoch: int, phase: PhaseSettings, started: float, tb: ScalarLogger, last_ckpt: Path | None
    ) -> tuple[Path, dict[str, Any]]:
        """max_steps reached inside an epoch: checkpoint the true position (a resume continues this epoch)
        and report the partial epoch, without the end-of-epoch bookkeeping."""
        state = self.state
        if last_ckpt is None or last_ckpt.name != f"checkpoint_{state.global_step}":
            last_ckpt = self._save(phase)
        record: dict[str, Any] = {"epoch": epoch, "global_step": state.global_step, "partial": True}
        if self.is_main:
            record = {**self._epoch_record(epoch, phase, started, tb), "best": False, "partial": True}
            self._write_history([*state.history, record])
        log.info(
            "stopped at training.max_steps=%d in epoch %d after %d of %d batches; --resume continues it",
            self.cfg_t.max_steps,
            epoch,
            state.batch_in_epoch,
            self.parts.micro_batches,
        )
        return last_ckpt, record

    def _save(self, phase: PhaseSettings) -> Path:
        """A checkpoint of the run's position (written by rank 0; the others wait for it)."""
        if not self.parts.step.is_finite():
            self._fail_non_finite(self.state.epoch)
        self.state.epoch_sums = self.parts.step.epoch.state()
        if not self.is_main:
            self.dist.barrier()
            return self.out / f"checkpoint_{self.state.global_step}"
        if self.parts.teacher is not None:
            self.parts.teacher.flush()
        path = ckpt.save_checkpoint(
            self.out,
            self.parts.model,
            self.parts.optimizer,
            self.parts.scheduler,
            self.parts.scaler,
            self.state,
            {
                "phase": phase.index,
                "temperature": phase.temperature,
                "best_metric": self.state.best_metric,
                "model": self.config.model.name,
                "stopped_early": self.state.stopped_early,
                "resume_settings": self.resume_settings,
                "resume_settings_hash": ckpt.settings_hash(self.resume_settings),
                "time": time.time(),
            },
        )
        ckpt.rotate_checkpoints(self.out, self.cfg_t.save_total_limit)
        self.dist.barrier()
        return path

    def _save_best(self) -> None:
        from splade.model.card import training_facts, write_model_card

        with atomic_dir(self.out / "best_model") as tmp:
            self.parts.model.save_pretrained(tmp)
            write_model_card(tmp, training_facts(self.config, self.state), name=f"{self.out.name} best_model")


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
