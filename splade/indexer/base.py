"""The one `SparseIndex` interface every backend implements, and the metadata an index is built with."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from splade.errors import SpladeError
from splade.sparse import SparseBatch

SearchHits = list[tuple[str, float]]


@dataclass
class IndexMetadata:
    """Which model (and vocabulary) produced an index's vectors, and how document vectors were pruned."""

    model_name: str
    vocab_hash: str
    vocab_size: int
    top_k: int | None = None
    threshold: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> IndexMetadata:
        try:
            top_k = data.get("top_k")
            return IndexMetadata(
                model_name=str(data["model_name"]),
                vocab_hash=str(data["vocab_hash"]),
                vocab_size=int(data["vocab_size"]),
                top_k=None if top_k is None else int(top_k),
                threshold=float(data.get("threshold", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpladeError(f"index metadata is incomplete or invalid ({exc})") from None

    def check_compatible(self, expected: IndexMetadata, where: str, check_model: bool = True,
                         check_pruning: bool = False) -> None:
        """Raise a `SpladeError` when vectors made under `expected` must not meet this index's vectors.

        The vocabulary (hash and size) must always match; the model name unless `check_model=False`
        (e.g. the ONNX export of the indexing checkpoint); the pruning only when adding documents.
        """
        if self.vocab_hash != expected.vocab_hash or self.vocab_size != expected.vocab_size:
            raise SpladeError(
                f"{where}: index was built with vocabulary {self.vocab_hash} ({self.vocab_size} tokens) "
                f"but the model has vocabulary {expected.vocab_hash} ({expected.vocab_size} tokens); "
                "rebuild the index with this model"
            )
        if check_model and _normalise(self.model_name) != _normalise(expected.model_name):
            raise SpladeError(
                f"{where}: index was built with model {self.model_name!r}, not {expected.model_name!r} "
                "(same vocabulary; pass --allow-other-model to query it anyway)"
            )
        same_pruning = self.top_k == expected.top_k and abs(self.threshold - expected.threshold) <= 1e-9
        if check_pruning and not same_pruning:
            raise SpladeError(
                f"{where}: index keeps top_k={self.top_k}, threshold={self.threshold} per document; "
                f"new documents would use top_k={expected.top_k}, threshold={expected.threshold}"
            )


def _normalise(name: str) -> str:
    return os.path.normpath(name.rstrip("/\\")) if name else name


class SparseIndex(ABC):
    """Documents as sparse vectors, searched by exact dot product (best first).

    A backend also says how an index is written, opened and checked (`writer`, `open_for_search`,
    `check_target`), so callers choose a backend once (`splade.indexer.pipeline.backend_of`).
    """

    where = "index"  # what the backend's index is called in messages
    takes_layout = False  # whether the backend takes an OpenSearch `Layout`

    @classmethod
    def writer(cls, target: Any, meta: IndexMetadata, append: bool = False, *, keep_open: bool = False,
               **options: Any) -> AbstractContextManager[SparseIndex]:
        """`with backend.writer(target, meta, append=...) as w: w.add(...)`: open (`append`) or start anew
        the index `target`, fill it in the block, and publish it when the block ends cleanly; on an
        exception nothing is published and the previous version keeps serving. The index is closed after
        publishing unless `keep_open`. `write_notes()` then says what was cleaned up on the way."""
        raise NotImplementedError(f"{cls.__name__} has no writer")

    def write_notes(self) -> list[str]:
        """What opening this index for writing cleaned up (left by an interrupted earlier write)."""
        return []

    @property
    @abstractmethod
    def metadata(self) -> IndexMetadata:
        """The model, vocabulary and pruning the indexed vectors were made with."""

    @abstractmethod
    def add(self, doc_ids: Sequence[str], vectors: SparseBatch, texts: Sequence[str] | None = None) -> None:
        """Add (or replace, by id) documents; `vectors` row `i` belongs to `doc_ids[i]`."""

    @abstractmethod
    def search(self, queries: SparseBatch, top_k: int = 10) -> list[SearchHits]:
        """For each query row, up to `top_k` `(doc_id, score)` pairs with a positive score, best first."""

    @abstractmethod
    def count(self) -> int:
        """Number of live (not deleted) documents."""

    @abstractmethod
    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many were present."""

    @abstractmethod
    def size_bytes(self) -> int:
        """Storage used by the index, in bytes."""

    @abstractmethod
    def fetch_texts(self, doc_ids: Sequence[str]) -> list[str | None]:
        """The stored texts of the given documents (None where a document or its text is absent)."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the whole index, its documents and its storage; the object is unusable afterwards."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Flush pending writes and release resources."""

    def __enter__(self) -> SparseIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_add_arguments(doc_ids: Sequence[str], vectors: SparseBatch, texts: Sequence[str] | None,
                        metadata: IndexMetadata) -> None:
    """Shared argument checks for `add`."""
    if len(doc_ids) != len(vectors):
        raise ValueError(f"{len(doc_ids)} document ids but {len(vectors)} vectors")
    if texts is not None and len(texts) != len(doc_ids):
        raise ValueError(f"{len(doc_ids)} document ids but {len(texts)} texts")
    if vectors.vocab_size != metadata.vocab_size:
        raise SpladeError(f"vectors have vocabulary size {vectors.vocab_size}, "
                          f"the index {metadata.vocab_size}")
    if len(set(doc_ids)) != len(doc_ids):
        raise SpladeError("duplicate document ids in one add() call")


def check_search_arguments(queries: SparseBatch, top_k: int, metadata: IndexMetadata) -> None:
    """Shared argument checks for `search`."""
    if queries.vocab_size != metadata.vocab_size:
        raise SpladeError(
            f"queries have vocabulary size {queries.vocab_size}, the index {metadata.vocab_size}"
        )
    if top_k < 1:
        raise SpladeError(f"top_k must be at least 1, got {top_k}")
