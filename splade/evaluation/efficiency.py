"""Efficiency numbers of sparse retrieval: active terms per vector and FLOPS as in the SPLADE papers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from splade.sparse import SparseBatch


def term_activation(batch: SparseBatch) -> np.ndarray:
    """Share of rows in which each vocabulary term is active (`p(term)`), shape `[vocab]`."""
    if len(batch) == 0:
        return np.zeros(batch.vocab_size)
    ids = batch.indices[batch.values != 0]
    return np.bincount(ids, minlength=batch.vocab_size) / len(batch)


def flops(queries: SparseBatch, documents: SparseBatch) -> float:
    """Expected multiply-adds per query-document pair: sum over terms of p_q(term) * p_d(term)."""
    if queries.vocab_size != documents.vocab_size:
        raise ValueError("queries and documents use different vocabularies")
    return float(term_activation(queries) @ term_activation(documents))


def term_sets_to_batch(term_lists: Sequence[Iterable[str]], vocabulary: dict[str, int]) -> SparseBatch:
    """Bag-of-words rows (weight 1 per distinct term) over `vocabulary`, which grows with new terms.

    Lets BM25's token lists go through the same `flops` as SPLADE vectors (build the documents' batch
    first, then the queries' with the same vocabulary; the vocab size is fixed when each batch is made).
    """
    rows = []
    for terms in term_lists:
        ids = sorted({vocabulary.setdefault(term, len(vocabulary)) for term in terms})
        rows.append((np.asarray(ids, dtype=np.int32), np.ones(len(ids), dtype=np.float32)))
    return SparseBatch.from_rows(rows, vocab_size=max(len(vocabulary), 1))


def widen(batch: SparseBatch, vocab_size: int) -> SparseBatch:
    """The same rows over a larger vocabulary (for term sets built before the vocabulary grew)."""
    return SparseBatch(batch.indptr, batch.indices, batch.values, vocab_size)


def average_terms(batch: SparseBatch) -> float:
    """Mean number of active terms per row."""
    return float(batch.active_counts().mean()) if len(batch) else 0.0
