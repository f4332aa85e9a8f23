"""Training metrics: sparsity statistics and a small TensorBoard / history logger (guide 9.1)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


@torch.no_grad()
def sparsity_stats(q: Tensor, docs: Tensor) -> dict[str, float]:
    """Average active terms per query and per document, and the expected FLOPS of a query-document
    dot product, `Σ_j P(q_j > 0) · P(d_j > 0)` (the SPLADE paper's FLOPS measure)."""
    q_active, d_active = (q > 0).float(), (docs > 0).float()
    return {
        "active_terms_query": float(q_active.sum(-1).mean()),
        "active_terms_doc": float(d_active.sum(-1).mean()),
        "flops": float((q_active.mean(0) * d_active.mean(0)).sum()),
    }


@torch.no_grad()
def ranking_stats(scores: Tensor, n_queries: int) -> dict[str, float]:
    """From `[B, 2B]` scores (positives first, then hard negatives): how often the positive beats its own
    hard negative, and the MRR of the positive among all in-batch candidates. A tie counts against the
    positive (an all-zero query ranks its positive last, not first)."""
    idx = torch.arange(n_queries, device=scores.device)
    pos = scores[idx, idx]
    accuracy = (pos > scores[idx, idx + n_queries]).float().mean()
    rank = (scores >= pos.unsqueeze(1)).sum(1).float()  # the positive itself counts once
    return {"accuracy": float(accuracy), "mrr": float((1.0 / rank).mean())}


class ProgressBar:
    """One bar for the run: micro-batches done of those the run will do (`max_steps` included), with the
    phase, the learning rate, and the loss of the last log line."""

    def __init__(self, total: int, done: int, enabled: bool = True) -> None:
        self.bar = tqdm(
            total=total,
            initial=min(done, total),
            desc="train",
            unit="batch",
            dynamic_ncols=True,
            disable=not enabled,
        )
        self.postfix: dict[str, str] = {}

    def update(self, phase: int) -> None:
        if self.postfix.get("phase") != str(phase):
            self.postfix["phase"] = str(phase)
            self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(1)

    def show(self, lr: float, loss: float | None = None) -> None:
        """The current learning rate (known every step); the loss only where it was read (a log step)."""
        if loss is not None:
            self.postfix["loss"] = f"{loss:.3f}"
        self.postfix["lr"] = f"{lr:.2e}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()


class ScalarLogger:
    """Writes scalars to TensorBoard (when enabled) under `<output>/tensorboard/`."""

    def __init__(self, directory: Path | None, purge_step: int | None = None) -> None:
        self.writer = None
        if directory is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed: no event files are written")
                return
            self.writer = SummaryWriter(str(directory), purge_step=purge_step)

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
