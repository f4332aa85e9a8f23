"""The training loop (guide sections 1, 4, 8, 9): AdamW, cosine schedule with warmup and per-phase LR
multipliers, gradient clipping and accumulation, mixed precision on GPU, validation every epoch, early
stopping, checkpoints with exact resume, TensorBoard and `training_history.json`."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from splade.atomic import atomic_dir, write_json
from splade.config import TrainConfig
from splade.data.triplets import Triplet, TripletCollator, TripletDataset, load_triplets
from splade.errors import SpladeError
from splade.model import SpladeModel, bag_of_tokens
from splade.model.pooling import default_pooling
from splade.trainer import checkpoints as ckpt
from splade.trainer.curriculum import Curriculum, PhaseSettings
from splade.trainer.losses import LossOutput, SpladeLoss, similarity
from splade.trainer.metrics import ScalarLogger, ranking_stats, sparsity_stats
from splade.trainer.sampler import epoch_indices

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SpladeError(f"training.device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpladeError("training.device: CUDA is not available on this machine")
    return device


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor: linear warm-up to 1, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def flops_scale(step: int, warmup_steps: int) -> float:
    """Quadratic FLOPS lambda warm-up over the first `warmup_steps` optimizer steps (SPLADE paper)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step / warmup_steps) ** 2)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar at every checkpoint
        seed_everything(self.cfg_t.seed)
        self._threads = torch.get_num_threads()
        if self.cfg_t.num_threads:
            torch.set_num_threads(self.cfg_t.num_threads)
        self.device = resolve_device(self.cfg_t.device)
        self._load_data()
        self._load_model()
        self._build_loss()
        self._build_schedule()
        self.state = ckpt.TrainerState(skipped_lines=self.train_set.skipped)
        self.resume_settings = ckpt.resume_settings(config)
        if checkpoint is not None:
            ckpt.warn_if_settings_changed(checkpoint, self.resume_settings)
            ckpt.load_optim_states(checkpoint, self.optimizer, self.scheduler, self.scaler, self.device)
            self.state = ckpt.load_trainer_state(checkpoint)  # restores RNG states last
            log.info("resuming from %s (step %d)", checkpoint, self.state.global_step)

    # ---- setup -------------------------------------------------------------------------------------
    def _load_data(self) -> None:
        data = self.config.data
        self.train_set: TripletDataset = load_triplets(data.train_files, data.skip_invalid)
        self.val_set: TripletDataset | None = (
            load_triplets(data.val_files, data.skip_invalid) if data.val_files else None
        )
        if self.train_set.skipped:
            log.warning(
                "skipped %d invalid training lines, e.g. %s",
                self.train_set.skipped,
                self.train_set.skipped_examples[0],
            )
        self.values = {name: self.train_set.values(name) for name in ("pair_type", "difficulty")}
        self.epoch_size = data.epoch_size or len(self.train_set)
        self.micro_batches = max(1, self.epoch_size // data.batch_size)

    def _load_model(self) -> None:
        cfg = self.config.model
        source = self.checkpoint / "model" if self.checkpoint is not None else cfg.name
        self.model = SpladeModel.from_pretrained(
            source, max_length=self.config.data.max_length, dropout=cfg.dropout, dtype=DTYPES[cfg.dtype]
        )
        self.model.max_length = self.config.data.max_length
        self.model.use_expansion = cfg.use_expansion
        self.model.to(self.device).train()
        self.collate = TripletCollator(self.model.tokenizer, self.config.data.max_length)

    def _build_loss(self) -> None:
        cfg = self.config.loss
        weights = None
        if cfg.use_idf_weighting:
            from splade.trainer.idf import corpus_texts, idf_penalty_weights

            texts = corpus_texts(cfg.idf_corpus) if cfg.idf_corpus else self.train_set.texts()
            weights = idf_penalty_weights(
                texts, self.model.tokenizer, self.model.vocab_size, self.config.data.max_length
            )
        self.loss_fn = SpladeLoss(cfg, weights).to(self.device)
        self.teacher = None
        if cfg.lambda_kd > 0 and cfg.teacher is not None:
            from splade.trainer.distill import DenseTeacher

            self.teacher = DenseTeacher(cfg.teacher, device=str(self.device))
        self.curriculum = Curriculum(self.config.curriculum_phases, cfg)

    def _build_schedule(self) -> None:
        t = self.cfg_t
        self.steps_per_epoch = math.ceil(self.micro_batches / t.gradient_accumulation_steps)
        # the schedule spans all epochs even with max_steps: a run stopped there and resumed without it
        # follows the same learning rates as an uninterrupted one
        self.total_steps = self.steps_per_epoch * t.num_epochs
        warmup = int(t.warmup_ratio * self.total_steps)
        base = cosine_with_warmup(self.total_steps, warmup)
        phase_mult = self.curriculum.lr_multiplier

        def factor(step: int) -> float:
            return base(step) * phase_mult(min(t.num_epochs, step // self.steps_per_epoch + 1))

        self.optimizer = torch.optim.AdamW(_param_groups(self.model, t.weight_decay), lr=t.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        on_gpu = self.device.type == "cuda"
        self.autocast_dtype = (
            {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.mixed_precision) if on_gpu else None
        )
        self.scaler = torch.amp.GradScaler("cuda") if on_gpu and t.mixed_precision == "fp16" else None

    # ---- one batch ---------------------------------------------------------------------------------
    def _forward(
        self, triplets: list[Triplet], phase: PhaseSettings, step: int, with_teacher: bool
    ) -> tuple[LossOutput, torch.Tensor, torch.Tensor]:
        batch = self.collate(triplets)
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        size = len(triplets)
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype
            else torch.autocast(self.device.type, enabled=False)
        )
        with ctx:
            # queries, positives and negatives in one forward pass
            pooling = default_pooling(self.device) if self.cfg_t.fused_pooling else "plain"
            reps = self.model(ids, mask, pooling=pooling)
        reps = reps.float()
        keep = self.model.vocab_keep.float()
        bags = bag_of_tokens(ids[: 2 * size], mask[: 2 * size], self.model.vocab_size) * keep
        q, p, n = reps[:size], reps[size : 2 * size], reps[2 * size :]
        teacher_scores = None
        if with_teacher and self.teacher is not None:
            docs = [t.positive for t in triplets] + [t.negative for t in triplets]
            teacher_scores = self.teacher.scores([t.query for t in triplets], docs)
        out = self.loss_fn(
            q,
            p,
            n,
            bags[:size],
            bags[size:],
            temperature=phase.temperature,
            lambda_infonce=phase.lambda_infonce,
            flops_scale=flops_scale(step, self.config.loss.flops_warmup_steps),
            teacher_scores=teacher_scores,
        )
        return out, q, torch.cat([p, n])

    def _fail_non_finite(self, what: str, epoch: int, detail: str) -> None:
        latest = ckpt.latest_checkpoint(self.out)
        keep = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        raise SpladeError(
            f"{what} became non-finite at step {self.state.global_step + 1} (epoch {epoch}; {detail}); "
            f"training stopped and {keep}. Lower training.learning_rate or check the data"
        )

    # ---- validation --------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, phase: PhaseSettings) -> dict[str, float]:
        if self.val_set is None:
            return {}
        self.model.eval()
        bs = self.config.data.batch_size
        sums: dict[str, float] = {}
        count = 0
        for start in range(0, len(self.val_set), bs):
            chunk = self.val_set.triplets[start : start + bs]
            out, q, docs = self._forward(chunk, phase, self.state.global_step, with_teacher=False)
            stats = {
                "loss": float(out.total),
                **{f"loss_{k}": float(v) for k, v in out.components.items()},
                **ranking_stats(similarity(q, docs, self.config.loss.similarity), len(chunk)),
                **sparsity_stats(q, docs),
            }
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * len(chunk)
            count += len(chunk)
        self.model.train()
        return {key: value / count for key, value in sums.items()}

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        t, state = self.cfg_t, self.state
        if state.stopped_early:
            log.warning(
                "%s: this run already stopped early after epoch %d (no improvement for %d epochs); "
                "nothing left to train",
                self.checkpoint,
                state.epoch - 1,
                state.bad_epochs,
            )
            torch.set_num_threads(self._threads)
            return self._result(self.checkpoint)
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "train_config.json", self.config.model_dump(mode="json"))
        tb = ScalarLogger(
            self.out / "tensorboard" if self.config.output.tensorboard else None,
            purge_step=state.global_step + 1 if self.checkpoint else None,
        )
        total_micro = self.micro_batches * t.num_epochs
        done_micro = (state.epoch - 1) * self.micro_batches + state.batch_in_epoch
        bar = tqdm(total=total_micro, initial=done_micro, desc="train", unit="batch", dynamic_ncols=True)
        finished = self._reached_max_steps()
        if finished and state.epoch <= t.num_epochs:
            log.warning(
                "already at training.max_steps=%d (step %d); nothing to train", t.max_steps, state.global_step
            )
        last_ckpt: Path | None = self.checkpoint
        partial: dict[str, Any] | None = None
        try:
            while state.epoch <= t.num_epochs and not finished:
                epoch = state.epoch
                phase = self.curriculum.settings(epoch)
                order = epoch_indices(
                    self.values, phase.focus, self.micro_batches * self.config.data.batch_size, t.seed, epoch
                )
                batches = order.reshape(self.micro_batches, -1)
                started = time.time()
                for b in range(state.batch_in_epoch, self.micro_batches):
                    triplets = [self.train_set[int(i)] for i in batches[b]]
                    self._train_micro_batch(triplets, phase, epoch, self._group_size(b))
                    state.batch_in_epoch = b + 1
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{state.epoch_sums.get('loss', 0) / max(1, state.epoch_sums.get('n', 1)):.3f}",
                        phase=phase.index,
                        refresh=False,
                    )
                    boundary = (b + 1) % t.gradient_accumulation_steps == 0 or b + 1 == self.micro_batches
                    if not boundary:
                        continue
                    self._optimizer_step(epoch, phase, tb)
                    if t.save_steps and state.global_step % t.save_steps == 0:
                        last_ckpt = self._save(phase)
                    if self.step_callback is not None:
                        self.step_callback(state.global_step)
                    if self._reached_max_steps():
                        finished = True
                        break
                if finished and state.batch_in_epoch < self.micro_batches:
                    last_ckpt, partial = self._stop_mid_epoch(epoch, phase, started, tb, last_ckpt)
                    break
                self._end_epoch(epoch, phase, started, tb)
                last_ckpt = self._save(phase)
                if state.stopped_early:
                    break
        finally:
            bar.close()
            tb.close()
            torch.set_num_threads(self._threads)
        if not (self.out / "best_model").is_dir():  # no epoch ended yet (max_steps): keep the final weights
            self._save_best()
        return self._result(last_ckpt, partial)

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
                "train_examples": len(self.train_set),
                "val_examples": len(self.val_set) if self.val_set else 0,
            },
        )

    def _reached_max_steps(self) -> bool:
        return bool(self.cfg_t.max_steps and self.state.global_step >= self.cfg_t.max_steps)

    def _group_size(self, b: int) -> int:
        """Micro-batches in the accumulation group of micro-batch `b`; the epoch's last group may be short."""
        steps = self.cfg_t.gradient_accumulation_steps
        return min(steps, self.micro_batches - b // steps * steps)

    def _train_micro_batch(
        self, triplets: list[Triplet], phase: PhaseSettings, epoch: int, group: int
    ) -> None:
        """Forward and backward one micro-batch; its loss is divided by the size of its accumulation group."""
        state = self.state
        out, q, docs = self._forward(triplets, phase, state.global_step, with_teacher=True)
        if not torch.isfinite(out.total):
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in out.components.items())
            self._fail_non_finite("the loss", epoch, parts)
        loss = out.total / group
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        sums = state.epoch_sums
        sums["n"] = sums.get("n", 0) + 1
        sums["loss"] = sums.get("loss", 0.0) + float(out.total.detach())
        for name, value in out.components.items():
            sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + float(value.detach())
        self._last = (out, q.detach(), docs.detach())

    def _optimizer_step(self, epoch: int, phase: PhaseSettings, tb: ScalarLogger) -> None:
        state, t = self.state, self.cfg_t
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
        if self.scaler is None and not torch.isfinite(grad_norm):
            self._fail_non_finite("the gradient norm", epoch, f"norm={float(grad_norm)}")
        lr = self.scheduler.get_last_lr()[0]
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.global_step += 1
        if state.global_step % t.logging_steps == 0 or state.global_step == 1:
            out, q, docs = self._last
            scalars = {
                "train/loss": float(out.total.detach()),
                "train/learning_rate": lr,
                "train/gradient_norm": float(grad_norm),
                "train/temperature": phase.temperature,
                "train/lambda_infonce": phase.lambda_infonce,
                "train/phase": phase.index,
                "train/lambda_flops": out.weights["flops"],
                "train/epoch": epoch,
            }
            scalars.update({f"train/loss_{k}": float(v.detach()) for k, v in out.components.items()})
            scalars.update({f"train/{k}": v for k, v in sparsity_stats(q, docs).items()})
            tb.log(scalars, state.global_step)
            log.info(
                "step %d epoch %d loss %.4f lr %.3g", state.global_step, epoch, scalars["train/loss"], lr
            )

    def _epoch_record(
        self, epoch: int, phase: PhaseSettings, started: float, tb: ScalarLogger
    ) -> dict[str, Any]:
        """Validate and summarise the epoch so far as one history entry (without its `best` flag)."""
        state = self.state
        sums = state.epoch_sums
        n = max(1, sums.get("n", 0))
        train_stats = {k: v / n for k, v in sums.items() if k != "n"}
        val = self.validate(phase)
        tb.log({f"val/{k}": v for k, v in val.items()}, state.global_step)
        # validation MRR selects the best model (the loss is not comparable across phases: the temperature
        # changes); without validation files, the training loss
        metric = -val["mrr"] if "mrr" in val else train_stats.get("loss", float("inf"))
        return {
            "epoch": epoch,
            "global_step": state.global_step,
            "phase": phase.index,
            "phase_name": phase.name,
            "temperature": phase.temperature,
            "lambda_infonce": phase.lambda_infonce,
            "lr_multiplier": phase.lr_multiplier,
            "learning_rate": self.scheduler.get_last_lr()[0],
            "train": train_stats,
            "val": val,
            "metric": metric,
            "seconds": round(time.time() - started, 3),
        }

    def _write_history(self, epochs: list[dict[str, Any]]) -> None:
        state = self.state
        write_json(
            self.out / "training_history.json",
            {"best_epoch": state.best_epoch, "best_metric": state.best_metric, "epochs": epochs},
        )

    def _restart_on_new_phase(self, phase: PhaseSettings) -> None:
        """When the training loss is the monitored metric, a new phase (other temperature and lambda, so
        another loss scale) restarts the best value and the early-stopping count."""
        state = self.state
        if state.best_metric is None or not state.history or state.history[-1]["phase"] == phase.index:
            return
        log.info(
            "phase %d (%s) starts: the monitored training loss changes scale, so its best value and the "
            "early-stopping count restart",
            phase.index,
            phase.name,
        )
        state.best_metric, state.bad_epochs = None, 0

    def _end_epoch(self, epoch: int, phase: PhaseSettings, started: float, tb: ScalarLogger) -> None:
        """Validate, record history, keep the best model, move to the next epoch and decide early stopping
        (`state.stopped_early`)."""
        state, t = self.state, self.cfg_t
        record = self._epoch_record(epoch, phase, started, tb)
        tb.log({f"epoch/train_{k}": v for k, v in record["train"].items()}, epoch)
        if "mrr" not in record["val"]:
            self._restart_on_new_phase(phase)
        metric = record["metric"]
        improved = state.best_metric is None or metric < state.best_metric - t.early_stopping_min_delta
        if improved:
            state.best_metric, state.best_epoch, state.bad_epochs = metric, epoch, 0
            self._save_best()
        else:
            state.bad_epochs += 1
        state.history.append({**record, "best": improved})
        self._write_history(state.history)
        state.epoch, state.batch_in_epoch, state.epoch_sums = epoch + 1, 0, {}
        patience = t.early_stopping_patience
        if patience and state.bad_epochs >= patience:
            log.warning("early stopping after epoch %d: no improvement for %d epochs", epoch, patience)
            state.stopped_early = True

    def _stop_mid_epoch(
        self, epoch: int, phase: PhaseSettings, started: float, tb: ScalarLogger, last_ckpt: Path | None
    ) -> tuple[Path, dict[str, Any]]:
        """max_steps reached inside an epoch: checkpoint the true position (a resume continues this epoch)
        and report the partial epoch, without the end-of-epoch bookkeeping (best model, early stopping,
        next epoch). Returns the last checkpoint and the partial history entry."""
        state = self.state
        if last_ckpt is None or last_ckpt.name != f"checkpoint_{state.global_step}":
            last_ckpt = self._save(phase)
        record = {**self._epoch_record(epoch, phase, started, tb), "best": False, "partial": True}
        self._write_history([*state.history, record])
        log.info(
            "stopped at training.max_steps=%d in epoch %d after %d of %d batches; --resume continues it",
            self.cfg_t.max_steps,
            epoch,
            state.batch_in_epoch,
            self.micro_batches,
        )
        return last_ckpt, record

    def _save(self, phase: PhaseSettings) -> Path:
        path = ckpt.save_checkpoint(
            self.out,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
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
        return path

    def _save_best(self) -> None:
        with atomic_dir(self.out / "best_model") as tmp:
            self.model.save_pretrained(tmp)


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
) -> TrainResult:
    """Train a SPLADE model as `config` says; writes checkpoints, `best_model/`, history and TensorBoard.

    `step_callback(global_step)` runs after every optimizer step (and after that step's checkpoint).
    """
    checkpoint = find_checkpoint(config, resume, resume_from)
    return Trainer(config, checkpoint, step_callback).run()
