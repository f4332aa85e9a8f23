"""How one OpenSearch index stores and searches the vectors: its layout.

- `rank_features` (default): token strings as keys; `neural_sparse` with `query_tokens`, or the same
  Lucene query as `bool`/`rank_feature` clauses (exact);
- `rank_features` + two-phase: the same field, searched through the index's default search pipeline, a
  `neural_sparse_two_phase_processor` (approximate: heavy query tokens first, the rest rescore the top);
- `sparse_vector` (OpenSearch 3.3+): token ids as keys, `method` SEISMIC, `index.sparse: true`;
  `neural_sparse` with `query_tokens` and `method_parameters` (approximate).

The layout is stored in the mapping's `_meta.splade_layout`, so searching an index needs no option.
SEISMIC's index parameters (`n_postings`, `cluster_ratio`, `summary_prune_ratio`, `approximate_threshold`,
`quantization_ceiling_search`, `quantization_ceiling_ingest`) go into the field's `method.parameters`, its
query parameters (`top_n`, `heap_factor`) into each query's `method_parameters` (with `k` = the number of
hits asked for); unset ones keep the server's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splade.errors import at_option
from splade.indexer.opensearch.queries import MIN_WEIGHT, build_query, token_weights

MAPPINGS = ("rank_features", "sparse_vector")
SEISMIC_INDEX = {"n_postings": int, "cluster_ratio": float, "summary_prune_ratio": float,
                 "approximate_threshold": int, "quantization_ceiling_search": float,
                 "quantization_ceiling_ingest": float}
SEISMIC_QUERY = {"top_n": int, "heap_factor": float}
INGEST_CEILING = 3.0  # OpenSearch's default quantization_ceiling_ingest: larger weights are clipped
TWO_PHASE_PIPELINE = "splade-two-phase"


def two_phase_pipeline() -> dict[str, Any]:
    """The search pipeline body (the processor's documented defaults, spelled out)."""
    return {"description": "splade: neural_sparse in two phases (heavy tokens first, the rest rescore)",
            "request_processors": [{"neural_sparse_two_phase_processor": {
                "tag": "splade-two-phase", "enabled": True,
                "two_phase_parameter": {"prune_ratio": 0.4, "expansion_rate": 5.0,
                                        "max_window_size": 10000}}}]}


@dataclass(frozen=True)
class Layout:
    """One index's field type, SEISMIC parameters and search pipeline, and its primary shards and replicas
    (which searching need not know: they are left out of comparisons and of `_meta`)."""

    mapping: str = "rank_features"
    two_phase: bool = False
    seismic: tuple[tuple[str, float], ...] = ()
    shards: int = field(default=1, compare=False)
    replicas: int = field(default=0, compare=False)

    @staticmethod
    def build(mapping: str = "rank_features", two_phase: bool = False, seismic: Sequence[str] = (),
              shards: int = 1, replicas: int = 0) -> Layout:
        """From the CLI's `--mapping`, `--two-phase`, `--seismic KEY=VALUE`, `--primary-shards` and
        `--replicas` options."""
        if shards < 1:
            raise at_option("--primary-shards", f"must be at least 1, got {shards}")
        if replicas < 0:
            raise at_option("--replicas", f"must be at least 0, got {replicas}")
        if mapping not in MAPPINGS:
            raise at_option("--mapping", f"choose one of {', '.join(MAPPINGS)}, not {mapping!r}")
        if two_phase and mapping != "rank_features":
            raise at_option("--two-phase", "the two-phase pipeline is for rank_features fields "
                                           "(sparse_vector has SEISMIC's own top_n and heap_factor)")
        if seismic and mapping != "sparse_vector":
            raise at_option("--seismic", "SEISMIC parameters need --mapping sparse_vector")
        return Layout(mapping, two_phase, tuple(sorted(_parse_seismic(item) for item in seismic)), shards,
                      replicas)

    @property
    def name(self) -> str:
        """A short name for system columns and messages."""
        return "two-phase" if self.two_phase else self.mapping

    @property
    def description(self) -> str:
        if self.mapping == "sparse_vector":
            return "OpenSearch sparse_vector (SEISMIC, approximate)"
        return "OpenSearch rank_features" + (" through the two-phase pipeline" if self.two_phase else "")

    def _params(self, keys: dict[str, type]) -> dict[str, Any]:
        return {key: keys[key](value) for key, value in self.seismic if key in keys}

    @property
    def ingest_ceiling(self) -> float:
        return float(self._params(SEISMIC_INDEX).get("quantization_ceiling_ingest", INGEST_CEILING))

    def settings(self) -> dict[str, Any]:
        """The index settings: shards and replicas, and what the field type or pipeline needs."""
        settings: dict[str, Any] = {"number_of_shards": self.shards, "number_of_replicas": self.replicas}
        if self.mapping == "sparse_vector":
            settings["sparse"] = True
        if self.two_phase:
            settings["search"] = {"default_pipeline": TWO_PHASE_PIPELINE}
        return settings

    def field(self) -> dict[str, Any]:
        """The vector field's mapping."""
        if self.mapping == "rank_features":
            return {"type": "rank_features"}
        method: dict[str, Any] = {"name": "seismic"}
        if self._params(SEISMIC_INDEX):
            method["parameters"] = self._params(SEISMIC_INDEX)
        return {"type": "sparse_vector", "method": method}

    def vector(self, ids: np.ndarray, weights: np.ndarray, id_to_token: Sequence[str]) -> dict[str, float]:
        """One sparse row as the field's JSON: `{token: weight}`, or `{"token id": weight}` for sparse_vector
        (every id with a finite weight OpenSearch accepts, as the embedded index keeps them)."""
        if self.mapping == "rank_features":
            return token_weights(ids, weights, id_to_token)
        keep = np.isfinite(weights) & (weights >= MIN_WEIGHT)
        return {str(i): float(w) for i, w in zip(ids[keep].tolist(), weights[keep].tolist(), strict=True)}

    def query(self, tokens: dict[str, float], field: str, mode: str, size: int) -> dict[str, Any]:
        """The search body for one pruned query."""
        if self.mapping == "rank_features":
            return build_query(tokens, field, mode, size)
        body = build_query(tokens, field, "neural_sparse", size)
        parameters = {"k": size, **self._params(SEISMIC_QUERY)}
        body["query"]["neural_sparse"][field]["method_parameters"] = parameters
        return body

    def to_meta(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "two_phase": self.two_phase, "seismic": dict(self.seismic)}

    @staticmethod
    def from_meta(meta: dict[str, Any] | None) -> Layout:
        """The stored layout (an index built before layouts existed is `rank_features`)."""
        meta = meta or {}
        seismic = tuple(sorted((str(k), float(v)) for k, v in (meta.get("seismic") or {}).items()))
        return Layout(str(meta.get("mapping", "rank_features")), bool(meta.get("two_phase", False)), seismic)


def _parse_seismic(item: str) -> tuple[str, float]:
    key, sep, value = item.partition("=")
    keys = {**SEISMIC_INDEX, **SEISMIC_QUERY}
    if not sep or key.strip() not in keys:
        raise at_option("--seismic", f"expected KEY=VALUE with KEY one of {', '.join(keys)}, got {item!r}")
    try:
        number = keys[key.strip()](value.strip())
    except ValueError:
        raise at_option("--seismic", f"{key.strip()} must be a number, got {value!r}") from None
    if number < 0:
        raise at_option("--seismic", f"{key.strip()} must not be negative, got {value!r}")
    return key.strip(), float(number)
