"""The data-build configuration (`configs/data_*.yaml`): sources, splits, negatives and mining."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from splade.config.loading import StrictModel, load_yaml_model, read_config, validate
from splade.errors import at_option


class MiningSettings(StrictModel):
    """How negatives are chosen and labelled (the build config's `mining:` section)."""

    model_config = ConfigDict(frozen=True)

    model: str | None = None  # a trained SPLADE checkpoint or ONNX folder: mine with it instead of BM25
    backend: str = "auto"  # encoder backend for `model`: auto, torch or onnx
    top_k: int = 50  # candidates retrieved per anchor
    sample_depth: int = 10  # negatives are drawn among the best `sample_depth` surviving candidates
    near_duplicate: float = 0.8  # char-trigram Jaccard at or above which a candidate counts as the positive
    hard_ratio: float = 0.7  # negative score / positive score at or above which a negative is "hard"
    medium_ratio: float = 0.4  # ... and at or above which it is "medium" (below: "easy")


class SourceConfig(StrictModel):
    """One input of the build (an item of the config's `sources:` list)."""

    type: Literal["beir", "parallel", "lexicon", "hub"]
    path: str | None = None  # folder (beir) or TSV file (parallel, lexicon)
    name: str | None = None  # label in rows and summary; hub: the public set (miracl-ko, mrtydi-ko)
    split: str = "train"  # beir / hub: qrels split the triplets come from
    queries_file: str = "queries.jsonl"
    header: bool = True  # parallel / lexicon: first line names the `ko` and `en` columns
    direction: Literal["ko-en", "en-ko", "both"] = "ko-en"  # parallel / lexicon: query -> positive language
    paraphrases: bool = False  # parallel: Korean <-> Korean pairs from Korean sentences sharing a translation
    pair_type: str | None = None  # override the derived pair type
    max_pairs: int | None = Field(default=None, ge=1)  # keep at most this many aligned groups (seeded sample)
    eval_queries: int = Field(default=0, ge=0)  # parallel / lexicon: groups held out for the evaluation set
    negatives: int | None = Field(default=None, ge=1)  # negatives per positive (default: build-wide)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return Path(self.path or "source").stem


class EvalSetConfig(StrictModel):
    """A BEIR-layout evaluation set cut from the parallel / lexicon sources' `eval_queries`."""

    name: str = "sample-koen"
    distractors: int = Field(default=1000, ge=0)  # extra training-side texts added to its corpus


class BuildConfig(StrictModel):
    """The data build config (`configs/data_*.yaml`)."""

    sources: list[SourceConfig] = Field(min_length=1)
    seed: int = 13
    val_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    negatives_per_positive: int = Field(default=1, ge=1)
    max_positives_per_query: int = Field(default=1, ge=1)
    single_term_max_words: int = Field(default=2, ge=1)  # lexicon queries up to this many words: single_term
    holdout_splits: list[str] = Field(default_factory=lambda: ["dev", "test"])
    mining: MiningSettings = Field(default_factory=MiningSettings)
    eval_set: EvalSetConfig | None = None


def load_build_config(path: str | Path, overrides: Sequence[str] = ()) -> BuildConfig:
    """Read a YAML build config (a bundled one by name too); a problem names the file and the key."""
    return load_yaml_model(BuildConfig, path, overrides)


def build_config(path: str | Path | None, sources: Sequence[SourceConfig] = (),
                 mining_model: str | None = None, **options: Any) -> BuildConfig:
    """`splade data build`'s config: the YAML file (if any) plus the `sources` given as options, with
    every option that is not None set (`mining_model` sets `mining.model`)."""
    source, raw = read_config(path) if path is not None else ("options", {})
    raw["sources"] = list(raw.get("sources") or []) + [s.model_dump(exclude_defaults=True) for s in sources]
    if not raw["sources"]:
        raise at_option("--config", "give a build config or at least one --beir, --parallel, --lexicon or "
                                    "--hub source")
    raw.update({key: value for key, value in options.items() if value is not None})
    if mining_model is not None:
        raw["mining"] = {**(raw.get("mining") or {}), "model": mining_model}
    return validate(BuildConfig, raw, str(source))
