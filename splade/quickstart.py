"""The main job end to end on the bundled sample: data -> model -> train -> export -> index -> eval.

Runs with no server, no GPU and no network: the base model is a small BERT built from the sample's
own text, the index is the embedded one, and the report compares the trained model with BM25.
Users with a GPU and network run the same steps with `--model skt/A.X-Encoder-base` (or any masked LM).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade.config import TrainConfig, load_config
from splade.config.loading import BUNDLED_CONFIGS

QUICKSTART_CONFIG = BUNDLED_CONFIGS / "train_quickstart.yaml"
LEXICAL_BIAS = -5.0  # the base model starts as a bag of its input tokens (see `splade.tiny.lexical_init`)


@dataclass
class QuickstartResult:
    """Where each stage wrote its output, and the headline numbers."""

    out_dir: Path
    model_dir: Path
    onnx_dir: Path
    index_dir: Path
    report: Path
    summary: dict[str, Any]
    systems: list[dict[str, Any]]  # one row per system: name, metrics and efficiency figures


def _sample_texts(sample: Path) -> list[str]:
    """Every query, positive and negative of the training sample: the base tokenizer's vocabulary source."""
    texts: list[str] = []
    with (sample / "train.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.extend(row[key] for key in ("query", "positive", "negative") if row.get(key))
    return texts


def build_base_model(folder: Path, vocab_size: int = 8000) -> Path:
    """The quickstart's base model: a small BERT whose WordPiece vocabulary is built from the sample."""
    from splade.data.sample import sample_dir
    from splade.tiny import build_tiny_model

    build_tiny_model(_sample_texts(sample_dir()), folder, vocab_size=vocab_size, hidden_size=128,
                     num_layers=2, num_heads=2, max_length=64, lexical_bias=LEXICAL_BIAS)
    return folder


def train_quickstart_overrides(user_overrides: list[str]) -> list[str]:
    """What makes `splade train quickstart` run from any folder, placed before the user's `--set`s: the
    packaged sample as training and validation files, and the token cache beside the output folder
    (never inside the installed package). `ensure_base_model` then builds the base model."""
    import copy

    from splade.config.loading import apply_override, read_config
    from splade.data.sample import sample_dir

    _, raw = read_config(QUICKSTART_CONFIG)
    sample = sample_dir()
    ours = [f"data.train_files=[{sample / 'train.jsonl'}]", f"data.val_files=[{sample / 'val.jsonl'}]"]
    effective = copy.deepcopy(raw)
    for override in [*ours, *user_overrides]:
        apply_override(effective, override)
    data = effective.get("data") or {}
    if not data.get("cache_dir"):
        output = Path(str((effective.get("output") or {}).get("dir", "outputs/quickstart/train")))
        ours.append(f"data.cache_dir={output.parent / 'cache'}")
    return ours


def ensure_base_model(config: TrainConfig, say: Callable[[str], None] = print) -> None:
    """Build the quickstart's base model at `model.name` when it is the bundled default and missing."""
    from splade.config.loading import read_config

    _, raw = read_config(QUICKSTART_CONFIG)
    model = config.model.name
    if model == str(raw["model"]["name"]) and not Path(model).exists():
        say(f"building the quickstart base model (a small BERT from the bundled sample) at {model}")
        build_base_model(Path(model))


def quickstart_config(out_dir: Path, model: str, sample: Path, overrides: list[str]) -> TrainConfig:
    """The bundled quickstart training config, pointed at the sample and at `out_dir`."""
    paths = [
        f"model.name={model}",
        f"data.train_files=[{sample / 'train.jsonl'}]",
        f"data.val_files=[{sample / 'val.jsonl'}]",
        f"output.dir={out_dir / 'train'}",
        f"data.cache_dir={out_dir / 'cache'}",  # never inside the installed package, beside the sample
    ]
    return load_config(QUICKSTART_CONFIG, [*paths, *overrides])


def run_quickstart(
    out_dir: Path,
    model: str | None = None,
    overrides: list[str] | None = None,
    vocab_size: int = 8000,
    say: Callable[[str], None] = print,
) -> QuickstartResult:
    """Run every stage on the bundled sample and return where the outputs are."""
    from splade.config.export import ExportConfig
    from splade.config.index import IndexConfig
    from splade.data.sample import sample_beir_dir, sample_dir
    from splade.evaluation import write_report
    from splade.evaluation.runner import EvalConfig, run_evaluation
    from splade.export.stage import run_export
    from splade.indexer.pipeline import build_index
    from splade.trainer.loop import train

    out_dir = Path(out_dir)
    sample, beir = sample_dir(), sample_beir_dir()
    say(f"[1/6] data: bundled sample {sample} (train/val triplets, evaluation set {beir.name})")

    if model is None:
        base = out_dir / "base_model"
        say(f"[2/6] model: a small BERT ({vocab_size} WordPiece vocabulary) built from the sample -> {base}")
        build_base_model(base, vocab_size)
        model = str(base)
    else:
        say(f"[2/6] model: {model}")

    say("[3/6] train: the 3-phase curriculum on the sample triplets")
    result = train(quickstart_config(out_dir, model, sample, overrides or []), overwrite=True)  # a fresh demo
    best = result.best_model_dir

    onnx_dir = out_dir / "onnx"
    say(f"[4/6] export: ONNX graph with parity check -> {onnx_dir}")
    exported = run_export(ExportConfig(checkpoint=best, out=onnx_dir))
    parity = exported.report.to_dict()

    index_dir = out_dir / "index"
    say(f"[5/6] index: embedded sparse index of {beir.name} -> {index_dir}")
    indexed = build_index(IndexConfig(model=onnx_dir, corpus=beir, index=str(index_dir)))

    report_dir = out_dir / "report"
    say(f"[6/6] eval: SPLADE against BM25 on {beir.name} -> {report_dir}")
    evaluation = run_evaluation(EvalConfig(datasets=[beir], splade=[("splade-quickstart", onnx_dir)],
                                           bm25=True, show_progress=True), log=say)
    report = write_report(evaluation, report_dir)
    summary = {
        "train": {"epochs": len(result.history), "best_model": str(best), "steps": result.global_step},
        "export": {k: parity[k] for k in ("max_abs_diff", "topk_overlap") if k in parity},
        "index": indexed,
        "report": str(report),
    }
    systems = [{"name": system.name, **system.metrics, **system.efficiency}
               for dataset in evaluation.datasets for system in dataset.systems]
    return QuickstartResult(out_dir, best, onnx_dir, index_dir, report, summary, systems)
