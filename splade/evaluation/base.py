"""The interface every compared system implements (BM25, dense, SPLADE), with its timings and sizes."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from splade.data.beir import Document
from splade.evaluation.metrics import Run


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` holds the elapsed seconds."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


@dataclass
class SearchOutput:
    """A run plus what producing it cost."""

    run: Run
    query_encode_s: float
    search_s: float
    avg_query_terms: float
    flops: float | None  # expected multiply-adds per query-document pair
    latencies_ms: list[float] | None = None  # each query's search alone, where the system measures it


class RetrievalSystem(ABC):
    """Index a corpus once, then answer query sets; records doc-encoding and indexing time."""

    kind: ClassVar[str] = "system"

    def __init__(self, name: str, baseline: bool = False) -> None:
        self.name = name
        self.baseline = baseline
        self.doc_encode_s = 0.0
        self.index_s = 0.0

    @property
    def description(self) -> str:
        """One line saying what the system is (model, tokenizer, backend)."""
        return self.kind

    @property
    def lengths(self) -> dict[str, int | str]:
        """The longest input the system reads, per side, in tokens (`"whole document"`: no limit)."""
        return {}

    @abstractmethod
    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        """Replace the indexed corpus with `documents`; set `doc_encode_s` and `index_s`."""

    @abstractmethod
    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        """The `top_k` best documents of each query, best first, as a run `{qid: {doc_id: score}}`."""

    @property
    @abstractmethod
    def avg_doc_terms(self) -> float:
        """Mean active terms (or dimensions) per indexed document."""

    @property
    @abstractmethod
    def index_bytes(self) -> int:
        """Size of the index holding the corpus, in bytes."""

    def close(self) -> None:  # noqa: B027 - most systems hold nothing to release
        """Release the index and any temporary files."""
