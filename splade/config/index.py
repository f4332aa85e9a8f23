"""Settings of `splade index` and `splade search`: which index, which model, how to prune and batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from splade.config.loading import OptionsModel
from splade.config.opensearch import OpenSearchSettings, settings_from_env

Backend = Literal["local", "opensearch"]
QueryMode = Literal["auto", "neural_sparse", "rank_feature"]


class IndexTarget(OptionsModel):
    """Which index a command talks to: an embedded index folder, or an OpenSearch alias."""

    backend: Backend = "local"  # local: embedded on-disk index, no server; opensearch: an alias
    index: str  # index folder (local) or alias name (opensearch)
    opensearch: OpenSearchSettings | None = None  # backend opensearch (None: from the environment)
    query_mode: QueryMode = "auto"  # OpenSearch query: auto probes for the neural-search plugin

    @model_validator(mode="before")
    @classmethod
    def _opensearch_from_env(cls, data: Any) -> Any:
        return settings_from_env(data)


class IndexConfig(IndexTarget):
    """`splade index`: encode a corpus with a model and build (or append to) an index."""

    model: Path  # checkpoint, or ONNX export folder
    corpus: Path  # BEIR folder with corpus.jsonl, or the .jsonl file
    top_k_doc: int | None = Field(default=None, ge=1)  # keep at most this many terms per document
    threshold: float = Field(default=0.0, ge=0.0)  # drop document weights at or below this
    batch_size: int = Field(default=32, ge=1)  # documents encoded per batch
    append: bool = False  # add to the existing index (same model and pruning) instead of rebuilding
    duplicate_ids: Literal["error", "keep-first", "keep-last"] = "error"  # a corpus _id on two lines
    device: str | None = None  # encoder device (default: the best there is)
    shard: str | None = None  # "i/n": encode only this share (torchrun's RANK/WORLD_SIZE when not given)
    # OpenSearch layout of a new index: field type, two-phase pipeline, SEISMIC parameters, shards
    mapping: Literal["rank_features", "sparse_vector"] | None = None
    two_phase: bool = False
    seismic: list[str] = Field(default_factory=list)  # KEY=VALUE
    primary_shards: int = Field(default=1, ge=1)
    replicas: int = Field(default=0, ge=0)


class SearchConfig(IndexTarget):
    """`splade search`: encode a query (or a file of them, into a TREC run) and rank an index's documents."""

    model: Path
    top_k: int = Field(default=10, ge=1)  # results per query
    query_top_k: int | None = Field(default=None, ge=1)  # search a query's heaviest N terms (None: all)
    allow_other_model: bool = False  # require only the same vocabulary, not the same model
    device: str | None = None
    queries: Path | None = None  # queries.jsonl (BEIR) or TSV `id<TAB>text`: search them all
    output: Path | None = None  # the TREC run file the batch search writes
    shard: str | None = None  # "i/n": search only this share of the queries (torchrun's RANK/WORLD_SIZE)
    batch_size: int = Field(default=32, ge=1)  # queries encoded per batch
