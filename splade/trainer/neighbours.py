"""Near triplets share a batch: topic-aware sampling (Hofstätter et al., SIGIR 2021) over the triplets'
positives, so in-batch negatives include passages close to each positive, not only other topics.

A random batch pairs a query with passages on other subjects, which any lexical overlap already ranks
below the positive. What a QA model must learn, telling the answering passage from another passage of
the same article, only the one mined hard negative teaches. With `data.neighbour_groups.size` g, the
sampler draws a triplet, then g - 1 of its nearest triplets (same source, positives alike by the cosine
of IDF-weighted token sets), and keeps the group together in the batch: each positive becomes an
in-batch negative of the group's other queries, for InfoNCE and the teacher alike.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse as sp

from splade.data.bm25 import top_k_of
from splade.trainer.batches import TextTable, TripletRows
from splade.trainer.idf import bm25_idf, token_matrix

log = logging.getLogger(__name__)
COMMON_SHARE = 0.5  # tokens in more than half of the positives say nothing about a topic
BLOCK = 2048  # similarity rows computed at once


def nearest_triplets(
    table: TextTable,
    rows: TripletRows,
    pool: np.ndarray,
    sources: np.ndarray,
    eligible: np.ndarray,
    vocab_size: int,
    count: int,
) -> np.ndarray:
    """For every pool position, the pool positions of its `count` nearest triplets (-1 where fewer): of
    the same source, eligible, with another query and another positive text; positives compared by the
    cosine of their IDF-weighted token sets, tokens common to over `COMMON_SHARE` of them left out."""
    nearest = np.full((len(pool), count), -1, dtype=np.int64)
    for source in np.unique(sources[eligible]):
        members = np.flatnonzero(eligible & (sources == source))
        if len(members) < 2:
            continue
        positives = rows.positive[pool[members]]
        queries = rows.query[pool[members]]
        matrix = token_matrix(table, positives, vocab_size).astype(np.float32)
        df = np.asarray(matrix.sum(axis=0)).ravel()  # the matrix is binary
        weights = bm25_idf(df, len(members)) * (df <= max(1, COMMON_SHARE * len(members)))
        matrix = (matrix @ sp.diags(weights.astype(np.float32))).tocsr()
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        matrix = (sp.diags(1.0 / np.maximum(norms, 1e-12).astype(np.float32)) @ matrix).tocsr()
        transposed = matrix.T.tocsr()
        for start in range(0, len(members), BLOCK):
            block = slice(start, start + BLOCK)
            scores = (matrix[block] @ transposed).toarray()
            scores[positives[block, None] == positives[None, :]] = -np.inf  # itself, or the same positive
            scores[queries[block, None] == queries[None, :]] = -np.inf  # other positives of one query
            for row, row_scores in enumerate(scores):
                candidates, _ = top_k_of(row_scores, 4 * count)  # those repeating a positive are skipped
                kept = _distinct_positives(candidates, positives, count)
                nearest[members[start + row], : len(kept)] = members[kept]
    log.info(
        "neighbour groups: %d of %d triplets have a near triplet",
        int((nearest[:, 0] >= 0).sum()), int(eligible.sum()),
    )
    return nearest


def neighbour_units(
    seeds: np.ndarray, nearest: np.ndarray, size: int, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Groups of pool positions totalling `count`: each seed in turn with up to `size` - 1 of its nearest
    triplets (picked at random among them), until `count` positions are taken."""
    units: list[np.ndarray] = []
    taken = 0
    for seed in seeds:
        if taken >= count:
            break
        near = nearest[seed][nearest[seed] >= 0]
        group = [int(seed), *rng.permutation(near)[: size - 1].tolist()][: count - taken]
        units.append(np.asarray(group, dtype=np.int64))
        taken += len(group)
    return units


def _distinct_positives(candidates: np.ndarray, positives: np.ndarray, count: int) -> list[int]:
    """The first `count` candidates whose positive texts differ (several queries may share a passage)."""
    kept: list[int] = []
    seen: set[int] = set()
    for candidate in candidates.tolist():
        if positives[candidate] not in seen:
            seen.add(int(positives[candidate]))
            kept.append(candidate)
            if len(kept) == count:
                break
    return kept
