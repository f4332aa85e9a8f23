"""Sparse vectors as CSR batches: the one type every stage passes around."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splade.tokens import named_weights


@dataclass
class SparseBatch:
    """A batch of sparse vectors over one vocabulary, stored row-wise (CSR).

    Row `r` holds `indices[indptr[r]:indptr[r + 1]]` (token ids, ascending) with the matching `values`.
    """

    indptr: np.ndarray  # int64, [n_rows + 1]
    indices: np.ndarray  # int32, [nnz]
    values: np.ndarray  # float32, [nnz]
    vocab_size: int

    def __post_init__(self) -> None:
        self.indptr = np.asarray(self.indptr, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int32)
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.indptr.ndim != 1 or self.indptr.size == 0 or self.indptr[0] != 0:
            raise ValueError("indptr must be a 1-D array starting at 0")
        if self.indptr[-1] != self.indices.size or self.indices.size != self.values.size:
            raise ValueError("indptr, indices and values disagree in length")

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and weights of row `r`."""
        lo, hi = self.indptr[r], self.indptr[r + 1]
        return self.indices[lo:hi], self.values[lo:hi]

    def rows(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for r in range(len(self)):
            yield self.row(r)

    def active_counts(self) -> np.ndarray:
        """Number of non-zero terms per row."""
        return np.diff(self.indptr)

    def to_dense(self) -> np.ndarray:
        dense = np.zeros((len(self), self.vocab_size), dtype=np.float32)
        for r, (ids, weights) in enumerate(self.rows()):
            dense[r, ids] = weights
        return dense

    def to_token_dicts(self, id_to_token: Sequence[str]) -> list[dict[str, float]]:
        """Rows as `{token string: weight}` for display; ids sharing a name keep the largest weight,
        unnamed ids (`""`) are left out."""
        return [named_weights(ids.tolist(), weights.tolist(), id_to_token) for ids, weights in self.rows()]

    def select(self, rows: Sequence[int] | np.ndarray) -> SparseBatch:
        """A new batch holding the given rows in the given order."""
        parts = [self.row(int(r)) for r in rows]
        return SparseBatch.from_rows(parts, self.vocab_size)

    @staticmethod
    def from_rows(rows: Sequence[tuple[np.ndarray, np.ndarray]], vocab_size: int) -> SparseBatch:
        lengths = [len(ids) for ids, _ in rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if not rows:
            return SparseBatch(indptr, np.zeros(0, np.int32), np.zeros(0, np.float32), vocab_size)
        indices = np.concatenate([np.asarray(i, np.int32) for i, _ in rows])
        values = np.concatenate([np.asarray(v, np.float32) for _, v in rows])
        return SparseBatch(indptr, indices, values, vocab_size)

    @staticmethod
    def from_dense(
        dense: np.ndarray, top_k: int | None = None, threshold: float = 0.0
    ) -> SparseBatch:
        """Keep entries above `threshold` and, if `top_k` is set, only the `top_k` largest per row."""
        dense = np.asarray(dense, dtype=np.float32)
        if dense.ndim != 2:
            raise ValueError("dense must be [batch, vocab]")
        if top_k is not None and 0 < top_k < dense.shape[1]:
            cut = np.argpartition(-dense, top_k - 1, axis=1)[:, :top_k]
            kept = np.zeros_like(dense)
            np.put_along_axis(kept, cut, np.take_along_axis(dense, cut, axis=1), axis=1)
            dense = kept
        mask = dense > threshold
        rows, cols = np.nonzero(mask)  # row-major order: cols ascending within each row
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
        np.cumsum(mask.sum(axis=1), out=indptr[1:])
        return SparseBatch(indptr, cols.astype(np.int32), dense[rows, cols], dense.shape[1])

    @staticmethod
    def concat(batches: Sequence[SparseBatch]) -> SparseBatch:
        if not batches:
            raise ValueError("nothing to concatenate")
        vocab = batches[0].vocab_size
        if any(b.vocab_size != vocab for b in batches):
            raise ValueError("batches have different vocabulary sizes")
        offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
        indptr = np.concatenate([[0]] + [b.indptr[1:] + off for b, off in zip(batches, offsets, strict=True)])
        return SparseBatch(
            indptr,
            np.concatenate([b.indices for b in batches]),
            np.concatenate([b.values for b in batches]),
            vocab,
        )

    def save(self, path: str | Path) -> None:
        """Save as `.npz` (not atomic by itself: callers write into an atomic folder)."""
        np.savez(path, indptr=self.indptr, indices=self.indices, values=self.values,
                 vocab_size=np.int64(self.vocab_size))

    @staticmethod
    def load(path: str | Path) -> SparseBatch:
        with np.load(path) as data:
            return SparseBatch(data["indptr"], data["indices"], data["values"], int(data["vocab_size"]))
