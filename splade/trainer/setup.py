"""Everything a run trains with, built once from its config: the model (and its lexical start), the data,
the loss, the teacher, the dev sets, the schedule, the optimizer and the step."""

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

from splade.config import DevConfig, TrainConfig
from splade.errors import SpladeError
from splade.model import SpladeModel, model_identity
from splade.model.lexical_start import LexicalStart
from splade.model.pooling import default_pooling
from splade.model.tokenization import TextTokenizer
from splade.trainer.batches import TripletBatch, make_batch, tokenized_triplets
from splade.trainer.cache import files_fingerprint, key_of
from splade.trainer.dev_eval import DevEvaluator
from splade.trainer.distill import TeacherScores
from splade.trainer.distributed import Distributed
from splade.trainer.losses import SpladeLoss
from splade.trainer.schedule import Schedule
from splade.trainer.step import TrainStep
from splade.trainer.training_data import TrainingData

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class RunParts:
    """What the loop drives."""

    model: SpladeModel
    tokenizer: TextTokenizer
    data: TrainingData
    loss_fn: SpladeLoss
    teacher: TeacherScores | None
    dev: DevEvaluator
    schedule: Schedule
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    step: TrainStep
    val_batches: list[TripletBatch]
    micro_batches: int  # micro-batches an epoch
    lexical: LexicalStart | None = None
    setup_seconds: dict[str, float] = field(default_factory=dict)


class _Timer:
    """Seconds each setup part took (reported by `splade train` and the benchmark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, what: str, build: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = build()
        self.seconds[what] = time.perf_counter() - started
        return value


def load_model(config: TrainConfig, checkpoint: Path | None, device: torch.device) -> SpladeModel:
    """The backbone (or the checkpoint's model) with the run's length, expansion and similarity."""
    cfg = config.model
    source = checkpoint / "model" if checkpoint is not None else cfg.name
    model = SpladeModel.from_pretrained(
        source, max_length=config.data.max_length, dropout=cfg.dropout, dtype=DTYPES[cfg.dtype]
    )
    model.max_length = config.data.max_length
    model.use_expansion = cfg.use_expansion
    model.similarity = config.loss.similarity
    model.to(device).train()
    if config.training.compile:
        model.mlm.compile(dynamic=True)
    return model


def apply_lexical_start(config: TrainConfig, model: SpladeModel, data: TrainingData) -> LexicalStart:
    """Refit the MLM head so training starts from each text's own tokens; the fit is kept in the cache, so
    a rerun on the same data and backbone reads it."""
    from splade.model.lexical_start import head_arrays, lexical_start, restore_head

    cfg, seed = config.model, config.training.seed
    key = key_of(
        model_identity(cfg.name),
        data.files_key,
        cfg.lexical_texts,
        cfg.lexical_keep,
        config.data.max_length,
        seed,
    )
    cached = data.cache.load(f"lexical-{key}")
    if cached is not None:
        return restore_head(model, cached)
    picked = np.random.default_rng(seed).choice(
        data.pool, size=min(len(data.pool), cfg.lexical_texts // 2), replace=False
    )
    rows = np.concatenate([data.rows.query[picked], data.rows.positive[picked]])
    fitted = lexical_start(model, [data.table.texts[r] for r in rows], keep_own=cfg.lexical_keep)
    data.cache.save(f"lexical-{key}", **head_arrays(model, fitted))
    return fitted


def build_teacher(config: TrainConfig, data: TrainingData, device: torch.device) -> TeacherScores | None:
    """The distillation teacher; with `precompute: all` (a GPU's `auto`) every training text is embedded
    now, once."""
    cfg = config.loss
    if cfg.lambda_kd <= 0 or cfg.teacher is None:
        return None
    teacher = TeacherScores(cfg.teacher, data.table.texts, data.cache, device)
    mode = cfg.teacher.precompute
    if mode == "all" or (mode == "auto" and device.type == "cuda"):
        rows, pool = data.rows, data.pool
        teacher.precompute(rows.query[pool], np.concatenate([rows.positive[pool], rows.negative[pool]]))
        log.info(
            "teacher: embedded %d texts in %.1f s (one-time; cached in %s)",
            teacher.embedded,
            teacher.seconds,
            data.cache.folder,
        )
    return teacher


def validation_batches(
    config: TrainConfig, tokenizer: TextTokenizer, data: TrainingData
) -> list[TripletBatch]:
    """The validation triplets, as batches (token ids cached like the training ones)."""
    files = config.data.val_files
    if not files:
        return []
    from splade.data.triplets import load_triplets

    val = load_triplets(files, config.data.skip_invalid)
    key = key_of(files_fingerprint(files), config.data.skip_invalid)
    table, rows = tokenized_triplets(val, tokenizer, config.data.max_length, data.cache, key)
    size = config.data.batch_size
    return [
        make_batch(table, rows, np.arange(s, min(len(val), s + size)), tokenizer.pad_id)
        for s in range(0, len(val), size)
    ]


def build_run(
    config: TrainConfig, checkpoint: Path | None, dist: Distributed, device: torch.device
) -> RunParts:
    """Build every part of a run (rank 0 first on several processes: it fills the caches the others read)."""
    timed = _Timer()
    model = timed("model", lambda: load_model(config, checkpoint, device))
    tokenizer = TextTokenizer(model.tokenizer)
    lexical = None
    with dist.main_first():
        data = timed("data", lambda: TrainingData.load(config, tokenizer))
        init = config.model.init
        if checkpoint is None and (init == "lexical" or (init == "auto" and model.head_built)):
            lexical = timed("lexical start", lambda: apply_lexical_start(config, model, data))
        idf = timed(
            "loss",
            lambda: (
                data.idf_weights(config, tokenizer, model.vocab_size)
                if config.loss.use_idf_weighting
                else None
            ),
        )
        teacher = timed("teacher", lambda: build_teacher(config, data, device))
    loss_fn = SpladeLoss(config.loss, idf).to(device)
    dev = timed(
        "dev sets", lambda: DevEvaluator(config.dev if dist.is_main else DevConfig(), config.training.seed)
    )
    training = config.training
    epoch_size = config.data.epoch_size or len(data.pool)
    micro_batches = max(1, epoch_size // config.data.batch_size)
    schedule = Schedule(config, math.ceil(micro_batches / training.gradient_accumulation_steps))
    on_gpu = device.type == "cuda"
    optimizer = torch.optim.AdamW(
        _param_groups(model, training.weight_decay),
        lr=training.learning_rate,
        **({"fused": True} if on_gpu else {}),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
    autocast = (
        {"bf16": torch.bfloat16, "fp16": torch.float16}.get(training.mixed_precision) if on_gpu else None
    )
    scaler = torch.amp.GradScaler("cuda") if on_gpu and training.mixed_precision == "fp16" else None
    pooling = default_pooling(device) if training.pooling == "auto" else training.pooling
    step = TrainStep(
        model,
        loss_fn,
        optimizer,
        scheduler,
        scaler,
        pooling,
        autocast,
        training.max_grad_norm,
        teacher,
        config.loss.mask_false_negatives,
        dist,
    )
    val = validation_batches(config, tokenizer, data)
    return RunParts(
        model,
        tokenizer,
        data,
        loss_fn,
        teacher,
        dev,
        schedule,
        optimizer,
        scheduler,
        scaler,
        step,
        val,
        micro_batches,
        lexical,
        timed.seconds,
    )
