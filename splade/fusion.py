"""The teacher ensemble's arithmetic, in one place: per-query min-max normalisation and a BM25 + dense mix
whose BM25 weight follows the pair's languages (arXiv 2411.04403, heterogeneous ensemble).

BM25 helps where query and document share words (Korean -> Korean) and only adds noise across languages
(Korean -> English), so a pair gets `bm25_weight` when both texts are Korean and `cross_lingual_weight`
otherwise. Training's distillation teacher and `splade eval`'s teacher row both call this module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

HANGUL = (0xAC00, 0xD7A3)  # precomposed syllables
KOREAN_SHARE = 0.3  # a text whose letters are at least this share Hangul counts as Korean


def hangul_share(text: str) -> float:
    """Share of a text's letters that are Hangul syllables."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(HANGUL[0] <= ord(c) <= HANGUL[1] for c in letters) / len(letters)


def is_korean(texts: list[str]) -> np.ndarray:
    """`[len(texts)]` bool: which texts are Korean."""
    return np.fromiter((hangul_share(t) >= KOREAN_SHARE for t in texts), dtype=bool, count=len(texts))


def minmax_rows(scores: Tensor) -> Tensor:
    """Each row scaled to [0, 1] (a constant row becomes 0)."""
    low = scores.min(dim=-1, keepdim=True).values
    span = scores.max(dim=-1, keepdim=True).values - low
    return (scores - low) / span.clamp_min(1e-9)


def pair_weights(
    query_korean: np.ndarray, doc_korean: np.ndarray, bm25_weight: float, cross_lingual_weight: float
) -> np.ndarray:
    """`[queries, documents]` BM25 weight of every pair: `bm25_weight` where both are Korean."""
    same = query_korean[:, None] & doc_korean[None, :]
    return np.where(same, bm25_weight, cross_lingual_weight).astype(np.float32)


def fuse(bm25: Tensor, dense: Tensor, weights: Tensor) -> Tensor:
    """`w · minmax(bm25) + (1 - w) · minmax(dense)`, each normalised per query (row)."""
    return weights * minmax_rows(bm25.float()) + (1.0 - weights) * minmax_rows(dense.float())


def fuse_candidates(bm25: np.ndarray, dense: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`fuse` for one query's candidates (`[n]` each): a system's scores are NaN where its ranking lacks the
    candidate. Each system is min-max normalised over the candidates it ranked, and a candidate it did not
    rank gets 0 from it (its score is filled with that system's lowest before `fuse` normalises)."""

    def filled(scores: np.ndarray) -> Tensor:
        missing = np.isnan(scores)
        low = 0.0 if missing.all() else float(np.nanmin(scores))
        return torch.from_numpy(np.where(missing, low, scores).astype(np.float32))[None]

    mixed = fuse(filled(bm25), filled(dense), torch.from_numpy(weights.astype(np.float32))[None])
    return mixed[0].numpy()
