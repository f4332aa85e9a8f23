"""What the benchmarks share: where the real model and data are, and the Korean training triplets."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
ME5 = SHARED / "models" / "me5-small-koen"
KOREAN_TRIPLETS = REPO / "data" / "ko" / "train.jsonl"
DEV_SETS = [SHARED / "data" / "beir" / name for name in ("korquad", "msmarco-ko", "msmarco-koen")]


def best_rate(
    encode: Callable[[list[str]], T], texts: list[str], repeats: int, warmup: int
) -> tuple[float, T]:
    """Best-of-`repeats` texts a second of `encode(texts)` after a warm-up call on `warmup` texts, and the
    last run's output."""
    encode(texts[:warmup])
    best, out = 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = encode(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best, out


def print_table(header: str, lines: Iterable[str] = ()) -> None:
    """A table's header, a rule as wide as it, then `lines` (a table that streams its rows prints them
    itself)."""
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line)


def ensure_triplets(path: Path) -> Path:
    """The triplets at `path`; the Korean set (the default) is built first when it is missing."""
    if path.is_file():
        return path
    if path != KOREAN_TRIPLETS:
        sys.exit(f"no triplets at {path}")
    if not (SHARED / "data").is_dir():
        sys.exit(f"no triplets at {path} and no ../shared/data to build them from: pass --triplets FILE")
    print(f"building {path} with splade data build --config configs/data_ko.yaml (once)", flush=True)
    command = [
        sys.executable,
        "-m",
        "splade",
        "data",
        "build",
        "--config",
        "configs/data_ko.yaml",
        "--out",
        str(path.parent),
    ]
    subprocess.run(command, cwd=REPO, check=True)
    return path


def sentence_transformers_splade(path: Path, max_length: int, device: str):  # noqa: ANN201 - a SparseEncoder
    """sentence-transformers' own SPLADE over a backbone: its masked-LM module and max SpladePooling (a
    dense sentence-transformers folder such as me5 would otherwise load as a dense model), in float32 on a
    CPU and bf16 on a GPU (the shared backbone is stored in float16)."""
    import warnings

    import torch
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with warnings.catch_warnings():  # the module's newer name differs between releases
        warnings.simplefilter("ignore")
        backbone = MLMTransformer(str(path), max_seq_length=max_length, model_args={"dtype": dtype})
    return SparseEncoder(modules=[backbone, SpladePooling(pooling_strategy="max")], device=device)


def sentence_transformers_step(model, loss_fn, optimizer, batch: list, device: str) -> None:  # noqa: ANN001
    """One optimizer step of sentence-transformers' SPLADE recipe on `batch` triplets (bf16 autocast on a
    GPU), as its trainer does it: tokenize, loss, backward, clip to norm 1, step."""
    import contextlib

    import torch

    features = [model.tokenize([getattr(r, col) for r in batch]) for col in ("query", "positive", "negative")]
    features = [{k: v.to(device) if hasattr(v, "to") else v for k, v in f.items()} for f in features]
    precision = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    with precision:
        losses = loss_fn(features, None)
        loss = sum(losses.values()) if isinstance(losses, dict) else losses
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

