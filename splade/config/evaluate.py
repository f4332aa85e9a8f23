"""`splade eval`'s settings: which datasets, which systems, how to test them; one field per option."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from splade.config.loading import OptionsModel
from splade.config.opensearch import OpenSearchSettings, settings_from_env

SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BASELINE_NAMES = ("bm25", "bm25-pieces", "dense", "teacher", "bm25-whitespace")


class EvalConfig(OptionsModel):
    """What `splade eval` compares; every field has the CLI option of the same name."""

    option_names: ClassVar[dict[str, str]] = {"datasets": "--dataset", "dense_query_prefix": "--query-prefix",
                                              "dense_passage_prefix": "--passage-prefix", "runs": "--run",
                                              "indexes": "--index"}

    datasets: list[Path]
    split: str = "dev"
    merged_corpus: bool = False
    duplicate_ids: Literal["error", "keep-first", "keep-last"] = "error"  # a corpus _id on two lines
    splade: list[tuple[str, Path]] = Field(default_factory=list)  # (name, model folder)
    indexes: dict[str, str] = Field(default_factory=dict)  # SPLADE name -> an existing index it searches
    runs: list[tuple[str, Path]] = Field(default_factory=list)  # (name, TREC run file) scored as they are
    bm25: bool = True  # Okapi BM25 over Kiwi content morphemes (a baseline)
    bm25_whitespace: bool = False  # the same over whitespace tokens (a sanity column)
    bm25_pieces: Path | None = None  # the same over this model folder's tokenizer pieces (a baseline)
    dense: str | None = None  # sentence-transformers model (a baseline)
    dense_query_prefix: str = "query: "
    dense_passage_prefix: str = "passage: "
    dense_max_length: int = Field(default=256, ge=1)
    teacher: bool = False  # the trainer's teacher: BM25 and dense fused per query (a baseline)
    teacher_bm25_weight: float = Field(default=0.4, ge=0.0, le=1.0)  # BM25's share, Korean query and doc
    teacher_cross_lingual_weight: float = Field(default=0.0, ge=0.0, le=1.0)  # BM25's share otherwise
    query_max_length: int | None = Field(default=None, ge=1)  # SPLADE query length (None: the model's)
    doc_max_length: int | None = Field(default=None, ge=1)  # SPLADE document length (None: the model's)
    backend: Literal["local", "opensearch"] = "local"  # SPLADE index: embedded or OpenSearch
    opensearch: OpenSearchSettings | None = None  # backend opensearch (None: from the environment)
    encoder_backend: Literal["auto", "torch", "onnx"] = "auto"
    device: str | None = None
    batch_size: int = Field(default=32, ge=1)
    doc_top_k: int | None = Field(default=None, ge=1)  # SPLADE document pruning (None: every positive weight)
    query_top_k: int | None = Field(default=None, ge=1)  # SPLADE query pruning (None: every positive weight)
    mappings: list[str] = Field(default_factory=lambda: ["rank_features"])  # OpenSearch layouts to compare
    two_phase: bool = False  # also search rank_features through the two-phase pipeline (OpenSearch)
    seismic: list[str] = Field(default_factory=list)  # SEISMIC KEY=VALUE for the sparse_vector layout
    shard: str | None = None  # "i/n": encode this share of every corpus (torchrun: RANK/WORLD_SIZE)
    shard_dir: Path | None = None  # where the shards of a sharded evaluation meet (shared by all of them)
    query_half: Literal["select", "report", "all"] = "all"  # the dev half (splade.dev_split) to evaluate
    max_queries: int | None = Field(default=None, ge=1)
    # every document judged for the evaluated queries plus seeded distractors up to this many (None: all)
    max_documents: int | None = Field(default=None, ge=1)
    top_k: int = Field(default=1000, ge=1)
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    trials: int = Field(default=10_000, ge=1)  # randomization-test permutations
    seed: int = 0
    show_progress: bool = False

    @model_validator(mode="after")
    def _something_to_compare(self) -> EvalConfig:
        if not self.datasets:
            raise ValueError("--dataset: give at least one BEIR dataset folder")
        baselines = self.bm25 or self.bm25_whitespace or self.bm25_pieces or self.dense
        if not (baselines or self.splade or self.runs):
            raise ValueError("nothing to compare: enable --bm25, --bm25-pieces, --dense, --splade or --run")
        if self.teacher and not (self.bm25 and self.dense):
            raise ValueError("--teacher: the teacher fuses BM25 and dense retrieval; it needs --bm25 and "
                             "--dense")
        names = [name for name, _ in self.splade] + [name for name, _ in self.runs]
        for i, name in enumerate(names):
            option = "--splade" if i < len(self.splade) else "--run"
            if not SYSTEM_NAME.fullmatch(name):
                raise ValueError(f"{option}: system name {name!r} may use only letters, digits, '.', '_' "
                                 "and '-' (it names run files and the TREC run column)")
            if name in BASELINE_NAMES or names.count(name) > 1:
                raise ValueError(f"{option}: system name {name!r} is used twice; name them NAME=...")
        unknown = sorted(set(self.indexes) - {name for name, _ in self.splade})
        if unknown:
            raise ValueError(f"--index: {unknown[0]!r} names no --splade system")
        return self

    @model_validator(mode="before")
    @classmethod
    def _opensearch_from_env(cls, data: Any) -> Any:
        return settings_from_env(data)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON, without credentials (the OpenSearch hosts only)."""
        data = self.model_dump(mode="json", exclude={"opensearch"})
        data["splade"] = [{"name": name, "path": str(path)} for name, path in self.splade]
        data["runs"] = [{"name": name, "path": str(path)} for name, path in self.runs]
        data["opensearch"] = None if self.opensearch is None else {"hosts": self.opensearch.hosts_text}
        return data
