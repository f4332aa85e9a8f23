"""Everything a run trains with, built once from its config: the model (and its lexical start), the data,
the loss, the teacher, the dev sets, the schedule, the optimizer and the step."""

from __future__ import annotations

import hashlib
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
from splade.fingerprint import files_fingerprint, key_of
from splade.model import SpladeModel, TermSaturation, model_identity
from splade.model.lexical_start import LexicalStart
from splade.model.pooling import default_pooling
from splade.model.tokenization import TextTokenizer
from splade.trainer.batches import TripletBatch, make_batch, tokenized_triplets
from splade.trainer.dev_eval import DevEvaluator
from splade.trainer.distill import TeacherScores
from splade.trainer.distributed import Distributed
from splade.trainer.idf import bm25_idf, idf_penalty_weights
from splade.trainer.losses import SpladeLoss
from splade.trainer.schedule import Schedule
from splade.trainer.step import TrainStep
from splade.trainer.training_data import TrainingData, table_length

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
    full_micro_batches: int  # micro-batches of a whole pass over the pool (no budget)
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
    # the lengths it is served with (dev selection encodes at them too); training batches carry their own
    model.max_length = cfg.doc_max_length or config.data.max_length
    model.query_max_length = cfg.query_max_length or config.data.query_max_length or config.data.max_length
    model.expansion_weight = cfg.expansion_weight
    model.doc_expansion_weight = cfg.doc_expansion_weight
    if cfg.doc_expansion_weight is not None and cfg.query_encoder == "idf":
        log.info("model.doc_expansion_weight is for models whose queries expand: this inference-free "
                 "model's documents are served at model.expansion_weight, as trained")
    model.similarity = config.loss.similarity
    model.to(device).train()
    if config.training.compile:
        model.mlm.compile(dynamic=True)
    return model


def apply_term_saturation(config: TrainConfig, model: SpladeModel, data: TrainingData) -> None:
    """Set `model.bm25`'s term weighting: k1, b and the average length from the config, or the average
    length measured on a seeded sample of the training passages tokenized at the served document length
    (or turn it off)."""
    cfg = config.model.bm25
    if cfg is None:
        model.term_saturation = None
        return
    average = cfg.average_length
    if average is None:
        documents = data.passage_rows()
        rng = np.random.default_rng(config.training.seed)
        rows = rng.choice(documents, size=min(len(documents), cfg.length_sample), replace=False)
        texts = [data.table.texts[r] for r in rows]
        encoded = TextTokenizer(model.tokenizer).encode(texts, model.max_length)
        keep = model.vocab_keep.cpu().numpy()
        average = max(1.0, float(np.mean([keep[ids[ids < len(keep)]].sum() for ids in encoded])))
    model.term_saturation = TermSaturation(cfg.k1, cfg.b, float(average))
    log.info("BM25 term weighting: k1 %.2f, b %.2f, average document length %.1f tokens",
             cfg.k1, cfg.b, average)


def start_targets(config: TrainConfig, model: SpladeModel, idf: np.ndarray) -> torch.Tensor:
    """What a text's own token weighs at step 0, for a product of `s · Σ idf` over the shared tokens (as
    BM25 sums them; `s` = `model.start_score_scale`): `sqrt(s · idf)` on both sides of a siamese model,
    `s` for an inference-free model's documents (its query table carries the IDF)."""
    scale = config.model.start_score_scale
    if config.model.query_encoder == "idf":
        return torch.full((model.vocab_size,), scale)
    return torch.from_numpy(np.sqrt(scale * idf)).float()


def apply_lexical_start(
    config: TrainConfig, model: SpladeModel, data: TrainingData, idf: np.ndarray
) -> LexicalStart:
    """Refit the MLM head so training starts from each text's own tokens, then calibrate each vocabulary
    row to its token's target weight; both are kept in the cache, so a rerun on the same data and backbone
    reads them."""
    from splade.model.lexical_start import (
        CALIBRATION_RULE,
        calibrate_own_weights,
        calibration_arrays,
        head_arrays,
        lexical_start,
        restore_calibration,
        restore_head,
    )

    cfg, seed = config.model, config.training.seed
    key = key_of(
        model_identity(cfg.name),
        data.files_key,
        cfg.lexical_texts,
        cfg.lexical_keep,
        model.max_length,
        seed,
    )
    cached = data.cache.load(f"lexical-{key}")
    if cached is not None:
        fitted = restore_head(model, cached)
    else:
        picked = np.random.default_rng(seed).choice(
            data.pool, size=min(len(data.pool), cfg.lexical_texts // 2), replace=False
        )
        rows = np.concatenate([data.rows.query[picked], data.rows.positive[picked]])
        fitted = lexical_start(model, [data.table.texts[r] for r in rows], keep_own=cfg.lexical_keep)
        data.cache.save(f"lexical-{key}", **head_arrays(model, fitted))
    if not cfg.calibrate_start:
        return fitted
    targets = start_targets(config, model, idf)
    calibration_key = key_of(
        key, CALIBRATION_RULE, cfg.calibration_texts, hashlib.sha256(targets.numpy().tobytes()).hexdigest()
    )
    calibration = f"calibration-{calibration_key}"
    cached = data.cache.load(calibration)
    if cached is not None:
        restore_calibration(model, cached)
        return fitted
    picked = np.random.default_rng([seed, 3]).choice(
        data.pool, size=min(len(data.pool), cfg.calibration_texts // 2), replace=False
    )
    rows = np.concatenate([data.rows.query[picked], data.rows.positive[picked]])
    calibrate_own_weights(model, [data.table.texts[r] for r in rows], targets)
    data.cache.save(calibration, **calibration_arrays(model))
    return fitted


def apply_lexical_floor(config: TrainConfig, model: SpladeModel, idf: np.ndarray) -> None:
    """`model.lexical_floor`'s share of the start weights, fixed on a text's own tokens (a resumed run, or a
    model trained with a floor, keeps the floor it was saved with)."""
    share = config.model.lexical_floor
    if share > 0 and model.lexical_floor is None:
        model.set_lexical_floor(
            share * start_targets(config, model, idf), share, config.model.lexical_floor_scope
        )


def apply_query_table(config: TrainConfig, model: SpladeModel, idf: np.ndarray, fresh: bool) -> None:
    """An inference-free model's query weights: the training documents' IDF at the start (a resumed run
    keeps its trained table), trainable when `model.learn_query_weights`."""
    cfg = config.model
    if cfg.query_encoder != "idf":
        return
    table = torch.from_numpy(idf).float() if fresh or model.query_weights is None else model.query_weights
    model.set_query_weights(table, trainable=cfg.learn_query_weights)


def build_teacher(config: TrainConfig, data: TrainingData, device: torch.device) -> TeacherScores | None:
    """The distillation teacher; with `precompute: all` (a GPU's `auto`) every training text is embedded
    now, once."""
    cfg = config.loss
    if cfg.lambda_kd <= 0 or cfg.teacher is None:
        return None
    teacher = TeacherScores(cfg.teacher, data.table.texts, data.cache, device, data.rows.documents())
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
    cut = config.data
    table, rows = tokenized_triplets(val, tokenizer, table_length(config), data.cache, key)
    return [
        make_batch(table, rows, np.arange(s, min(len(val), s + cut.batch_size)), tokenizer.pad_id,
                   None, cut.query_max_length, cut.max_length, cut.document_window)
        for s in range(0, len(val), cut.batch_size)
    ]


def epoch_steps(config: TrainConfig, micro_batches: int, full_micro_batches: int) -> tuple[int, int]:
    """Optimizer steps of one epoch as run and of one full pass over the data."""
    accumulate = config.training.gradient_accumulation_steps
    return math.ceil(micro_batches / accumulate), math.ceil(full_micro_batches / accumulate)


def budget_micro_batches(config: TrainConfig, full_micro_batches: int, max_steps: int | None) -> int:
    """Micro-batches an epoch. A budget of `max_steps` optimizer steps shorter than the configured epochs
    shrinks every epoch alike, so the whole schedule (warm-up, every curriculum phase, the FLOPS warm-up)
    fits in it instead of the run stopping inside the warm-up."""
    training = config.training
    accumulate = training.gradient_accumulation_steps
    full_steps = math.ceil(full_micro_batches / accumulate) * training.num_epochs
    if not max_steps or max_steps >= full_steps:
        return full_micro_batches
    return math.ceil(max_steps / training.num_epochs) * accumulate


def fit_budget(parts: RunParts, config: TrainConfig, max_steps: int) -> None:
    """Shrink a built run's epochs and schedule to `max_steps` optimizer steps (a wall-clock budget's
    estimate, known once steps were timed)."""
    parts.micro_batches = budget_micro_batches(config, parts.full_micro_batches, max_steps)
    parts.schedule.resize(*epoch_steps(config, parts.micro_batches, parts.full_micro_batches))
    # the scheduler set the next step's learning rate from the schedule before it shrank: set it again
    scheduler = parts.scheduler
    factor = parts.schedule.lr_factor(scheduler.last_epoch)
    for group, base in zip(parts.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * factor
    scheduler._last_lr = [group["lr"] for group in parts.optimizer.param_groups]  # noqa: SLF001


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
        df, n_docs = timed("idf", lambda: data.document_frequencies(config, tokenizer, model.vocab_size))
        timed("neighbours", lambda: data.find_neighbours(config, tokenizer, model.vocab_size))
        token_idf = bm25_idf(df, n_docs) * model.vocab_keep.cpu().numpy()
        init = config.model.init
        if checkpoint is None and (init == "lexical" or (init == "auto" and model.head_built)):
            lexical = timed("lexical start", lambda: apply_lexical_start(config, model, data, token_idf))
        apply_lexical_floor(config, model, token_idf)
        apply_query_table(config, model, token_idf, fresh=checkpoint is None)
        apply_term_saturation(config, model, data)
        idf = idf_penalty_weights(df, n_docs) if config.loss.use_idf_weighting else None
        teacher = timed("teacher", lambda: build_teacher(config, data, device))
    loss_fn = SpladeLoss(config.loss, idf).to(device)
    dev = timed(
        "dev sets", lambda: DevEvaluator(config.dev if dist.is_main else DevConfig(), config.training.seed)
    )
    training = config.training
    epoch_size = config.data.epoch_size or len(data.pool)
    full_micro_batches = max(1, epoch_size // config.data.batch_size)
    micro_batches = budget_micro_batches(config, full_micro_batches, training.max_steps)
    schedule = Schedule(config, *epoch_steps(config, micro_batches, full_micro_batches))
    on_gpu = device.type == "cuda"
    optimizer = torch.optim.AdamW(
        _param_groups(model, training.weight_decay),
        lr=training.learning_rate,
        **({"fused": True} if on_gpu else {}),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)  # follows `resize`
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
        full_micro_batches,
        lexical,
        timed.seconds,
    )
