"""Sparse vectors <-> OpenSearch JSON: safe `rank_features` keys and the two equivalent query forms.

A `rank_features` key containing `.` is indexed but can never be matched by a `rank_feature` query
(the field path `vector.a.b` is ambiguous), so every `.` in a token becomes U+2024 ONE DOT LEADER
(`․`) at index time and at query time alike. Weights must be finite and positive (OpenSearch stores
them with 9 significant bits); anything else is dropped. Queries keep at most `max_clauses` tokens
(the heaviest; OpenSearch's default `indices.query.bool.max_clause_count` is 1,024) and cap each
weight at 64, the `neural_sparse` limit, so both query modes rank identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from splade.tokens import named_weights

DOT_ESCAPE = "\u2024"
MAX_CLAUSES = 1024
MAX_QUERY_WEIGHT = 64.0
MIN_WEIGHT = float(np.finfo(np.float32).tiny)  # smallest positive normal float OpenSearch accepts
QUERY_MODES = ("auto", "neural_sparse", "rank_feature")


def escape_token(token: str) -> str:
    """The `rank_features` key for a vocabulary token."""
    return token.replace(".", DOT_ESCAPE)


def unescape_token(key: str) -> str:
    return key.replace(DOT_ESCAPE, ".")


def token_weights(ids: np.ndarray, weights: np.ndarray, id_to_token: Sequence[str]) -> dict[str, float]:
    """One sparse row as `{escaped token: weight}`, keeping only finite weights OpenSearch accepts.

    Ids that share a name (see `splade.tokens`) keep the largest weight, as the ML Commons package does;
    unnamed ids (special tokens) are dropped.
    """
    keep = np.isfinite(weights) & (weights >= MIN_WEIGHT)
    return named_weights(ids[keep].tolist(), weights[keep].tolist(), id_to_token, key=escape_token)


def prune_query(tokens: dict[str, float], max_clauses: int = MAX_CLAUSES,
                max_weight: float = MAX_QUERY_WEIGHT) -> dict[str, float]:
    """The `max_clauses` heaviest tokens, each weight capped at `max_weight`."""
    ranked = sorted(tokens.items(), key=lambda kv: (-kv[1], kv[0]))[:max_clauses]
    return {token: min(weight, max_weight) for token, weight in ranked}


def build_query(tokens: dict[str, float], field: str, mode: str, size: int) -> dict[str, Any]:
    """The search body for one (already pruned) query in `neural_sparse` or `rank_feature` form."""
    if mode == "neural_sparse":
        query: dict[str, Any] = {"neural_sparse": {field: {"query_tokens": tokens}}}
    elif mode == "rank_feature":
        query = {"bool": {"should": [
            {"rank_feature": {"field": f"{field}.{token}", "linear": {}, "boost": weight}}
            for token, weight in tokens.items()
        ]}}
    else:
        raise ValueError(f"unknown query mode {mode!r}")
    return {"query": query, "size": size, "_source": ["doc_id"], "track_total_hits": False}
