"""The training configuration: typed pydantic models of `configs/train_*.yaml`.

The guide's numbers live in the YAML files only; fields here carry no guide value as default
(a default exists only where the neutral choice is obvious: off, none, 0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from splade.config.loading import StrictModel, load_yaml_model, validate


class Bm25Config(StrictModel):
    """BM25's term-frequency part on every term (`splade.model.term_weights`)."""

    k1: float = Field(default=1.2, gt=0.0)  # term-frequency saturation
    b: float = Field(default=0.75, ge=0.0, le=1.0)  # length normalisation
    # BM25's average document length, in tokens at the served document length. null: measured on the
    # documents of the QA triplets (`pair_type` *_qa: the passages the model retrieves; all documents
    # when there are none), a seeded sample of `length_sample`. Lexicon and sentence pairs are far
    # shorter than passages and would make every passage look long.
    average_length: float | None = Field(default=None, gt=0.0)
    length_sample: int = Field(default=2000, gt=0)


class ModelConfig(StrictModel):
    """The backbone: any Hugging Face masked-LM by hub id or local path."""

    name: str
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    # weight of the terms a text does not contain (expansion) against its own tokens: 1 is plain SPLADE,
    # 0 own tokens only; in between, expansion stays learnable but cannot drown the text's own words. Saved
    expansion_weight: float = Field(default=1.0, ge=0.0, le=1.0)
    # served documents' expansion terms weigh this instead (null: expansion_weight). Training scores both
    # sides at expansion_weight; indexes, dev selection and every encoder serve documents at this. Saved
    doc_expansion_weight: float | None = Field(default=None, gt=0.0, le=1.0)
    # BM25's term-frequency saturation and length normalisation on every term of a text: an own token by
    # its count, an expansion term as one occurrence at expansion_weight (null: off, plain SPLADE). Saved
    bm25: Bm25Config | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # pretrained: the backbone's MLM head as it is (or as built); lexical: the head refitted on training
    # texts so each text starts as a bag of its own tokens (see splade.model.lexical_start); auto: lexical
    # for a backbone that came without an MLM head, pretrained for one with a trained head
    init: Literal["auto", "pretrained", "lexical"] = "pretrained"
    lexical_texts: int = Field(default=2000, gt=0)  # training texts the lexical start is fitted on
    lexical_keep: float = Field(default=0.75, gt=0.0, lt=1.0)  # share of own tokens active after the fit
    # the lexical start then calibrates each vocabulary row so a text's own token weighs an IDF-like target
    # (sqrt of BM25's IDF for a siamese model, 1 for an inference-free one's documents): BM25-grade at step 0
    calibrate_start: bool = True
    calibration_texts: int = Field(default=600, gt=0)
    # a query x document score at step 0 is about this times the sum of the shared tokens' IDF: small
    # enough that InfoNCE and distillation at temperature 1 are not saturated (scores in the tens)
    start_score_scale: float = Field(default=1.0, gt=0.0)
    # the share of that start weight a text's own token keeps as a fixed floor (`lexical_floor.json`, saved):
    # the encoder's weights count the rest on top, so training can add expansion and raise a token but never
    # take an own token below this share of its BM25-like weight. 0: off, plain SPLADE
    lexical_floor: float = Field(default=0.0, ge=0.0, lt=1.0)
    # which encoder weights count 1 - lexical_floor: own, a text's own tokens (its expansion terms count in
    # full, so the floor keeps the text's words without quieting what training adds); all, every term
    lexical_floor_scope: Literal["own", "all"] = "own"
    # model: queries pass through the encoder like documents; idf: inference-free ("doc-only"), a query is
    # its own tokens weighted by a table that starts as the training documents' IDF
    query_encoder: Literal["model", "idf"] = "model"
    learn_query_weights: bool = False  # idf: train the table too (OpenSearch doc-v3 style)
    # the lengths the saved model is served with (null: the training lengths of `data`)
    query_max_length: int | None = Field(default=None, gt=1, le=8192)
    doc_max_length: int | None = Field(default=None, gt=1, le=8192)

    @model_validator(mode="after")
    def _document_expansion(self) -> ModelConfig:
        if self.doc_expansion_weight is not None and self.expansion_weight == 0.0:
            raise ValueError("model.doc_expansion_weight: a model with expansion_weight 0 has no expansion "
                             "to weigh (leave it null)")
        return self


class NeighbourConfig(StrictModel):
    """Near triplets drawn together (`splade.trainer.neighbours`): each drawn triplet of the named pair
    types brings `size` - 1 of its nearest (same source, positives alike) into its batch. 1: off."""

    size: int = Field(default=1, ge=1)
    pair_types: list[str] = Field(default_factory=lambda: ["monolingual_qa", "cross_lingual_qa"])


class DataConfig(StrictModel):
    """Triplet JSONL files (`query, positive, negative, pair_type, difficulty`) and batching."""

    train_files: list[Path] = Field(min_length=1)
    val_files: list[Path] = Field(default_factory=list)
    max_length: int = Field(gt=1, le=8192)  # documents (and queries, unless query_max_length is set)
    query_max_length: int | None = Field(default=None, gt=1, le=8192)
    # which max_length tokens of a longer training document the model reads: first, its opening (the
    # guide's); query, the span holding the most of its triplet's query tokens, so a cut positive keeps
    # what makes it relevant (read up to model.doc_max_length, the served length)
    document_window: Literal["first", "query"] = "first"
    batch_size: int = Field(gt=0)
    skip_invalid: bool = False  # true: skip malformed lines and count them instead of stopping
    epoch_size: int | None = Field(default=None, gt=0)  # samples drawn per epoch (default: dataset size)
    # at most this many triplets of a `source` value in the training pool (a fixed, seeded subset)
    source_caps: dict[str, int] = Field(default_factory=dict)
    cache_dir: Path | None = None  # token ids, IDF and teacher embeddings (default: beside the training file)
    # near triplets share a batch, so a positive meets passages close to it as in-batch negatives
    neighbour_groups: NeighbourConfig = Field(default_factory=NeighbourConfig)

    @field_validator("source_caps")
    @classmethod
    def _positive_caps(cls, value: dict[str, int]) -> dict[str, int]:
        if any(cap <= 0 for cap in value.values()):
            raise ValueError("caps must be > 0")
        return value


class TeacherConfig(StrictModel):
    """A dense sentence-transformers teacher for knowledge distillation."""

    name: str
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    max_length: int = Field(default=256, gt=1)
    # softmax temperature of the teacher's normalised scores (the student's raw scores are not rescaled:
    # the KL's gradient then has InfoNCE's form and scale)
    temperature: float = Field(default=1.0, gt=0.0)
    batch_size: int = Field(default=64, gt=0)
    # the ensemble (arXiv 2411.04403): Kiwi BM25 mixed in with this weight where query and document are
    # both Korean, `cross_lingual_bm25_weight` elsewhere; each teacher's scores min-max normalised per query.
    # 0 and 0: the dense teacher alone
    bm25_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    cross_lingual_bm25_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    # all: embed every training text once before the first step (a GPU's choice); lazy: embed each batch's
    # new texts as they come (a CPU's choice, for short runs); auto: all on a GPU, lazy otherwise.
    # Either way the embeddings are cached on disk and reused by epochs, resumes and reruns.
    precompute: Literal["auto", "all", "lazy"] = "auto"


class TermConfig(StrictModel):
    """A registered loss term's settings (`splade.trainer.losses.loss_term`)."""

    weight: float = Field(ge=0.0)
    warmup_steps: int = Field(default=0, ge=0)  # quadratic weight warm-up, as the FLOPS terms'


class LossConfig(StrictModel):
    """The six components of the guide's section 3 (plus optional distillation), each with its lambda."""

    lambda_infonce: float = Field(ge=0.0)
    lambda_self: float = Field(ge=0.0)
    lambda_positive: float = Field(ge=0.0)
    lambda_margin: float = Field(ge=0.0)
    lambda_flops: float = Field(ge=0.0)
    lambda_min_act: float = Field(ge=0.0)
    margin: float
    temperature: float = Field(gt=0.0)  # used where a curriculum phase does not set one
    min_act_k: int = Field(gt=0)
    min_act_threshold: float
    similarity: Literal["cosine", "dot"]  # what training scores; saved with the model, served the same way
    lambda_flops_doc: float = Field(default=0.0, ge=0.0)  # FLOPS on documents (the guide: queries only)
    flops_warmup_steps: int = Field(default=0, ge=0)  # quadratic lambda warm-up (SPLADE paper); 0 = off
    use_idf_weighting: bool = False
    # what the FLOPS terms price: `activations`, the encoder's weights before `model.expansion_weight`,
    # `model.bm25` and `model.lexical_floor` scale them and add the floor (an expansion term pays for its
    # activation in full, as at weight 1, not a quarter of it), or the `served` weights
    flops_on: Literal["activations", "served"] = "activations"
    # the documents IDF is counted over (FLOPS weights, the lexical start and floor, an inference-free
    # query table): `passages`, those of the QA triplets (all documents when there are none), as the
    # indexed corpus is; `all`, every training document, lexicon entries and sentences too
    idf_documents: Literal["passages", "all"] = "passages"
    idf_corpus: Path | None = None  # JSONL/BEIR corpus for IDF instead of the training documents
    lambda_kd: float = Field(default=0.0, ge=0.0)
    teacher: TeacherConfig | None = None
    # self-reconstruction and positive activation push a term's weight up to this target and no further
    # (`mean(relu(target - w))`); null: the guide's unbounded `-mean(w)`
    activation_target: float | None = Field(default=None, gt=0.0)
    # in-batch documents that are positives of the query too (a repeated query or positive text in the
    # batch) are left out of its InfoNCE denominator instead of counting as negatives
    mask_false_negatives: bool = True
    # any registered term by name, e.g. `terms: {l1_doc: {weight: 0.01}}`; the guide's terms keep their
    # `lambda_*` keys (a term named here too takes this weight)
    terms: dict[str, TermConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _teacher_when_kd(self) -> LossConfig:
        if self.lambda_kd > 0 and self.teacher is None:
            raise ValueError("loss.lambda_kd > 0 needs loss.teacher (a sentence-transformers model)")
        return self


class TrainingConfig(StrictModel):
    """Optimizer, schedule and loop settings."""

    learning_rate: float = Field(gt=0.0)
    num_epochs: int = Field(gt=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # applies on GPU only
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 42
    logging_steps: int = Field(default=10, gt=0)
    save_steps: int | None = Field(default=None, gt=0)  # also saved at the end of every epoch
    save_total_limit: int = Field(default=3, gt=0)
    early_stopping_patience: int | None = Field(default=None, gt=0)  # epochs without val improvement
    early_stopping_min_delta: float = Field(default=0.0, ge=0.0)
    # a budget: the whole schedule (warm-up, curriculum phases, FLOPS warm-up) shrinks to fit it
    max_steps: int | None = Field(default=None, ge=0)  # optimizer steps; 0 saves the start and stops
    max_minutes: float | None = Field(default=None, gt=0.0)  # wall clock, steps estimated from timed steps
    num_threads: int | None = Field(default=None, gt=0)  # CPU threads for torch (default: torch's choice)
    # the max-pooled vocabulary projection's implementation (same values, see splade.model.pooling);
    # auto: the fastest measured for the device
    pooling: Literal["auto", "plain", "dense", "sparse"] = "auto"
    compile: bool = False  # torch.compile the backbone (pays on a GPU for long runs)
    # phase: linear warm-up, then each curriculum phase at learning_rate x its lr_multiplier;
    # cosine: one cosine decay over the whole run, times the phase's multiplier
    lr_schedule: Literal["phase", "cosine"] = "phase"

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _no_precision(cls, value: Any) -> Any:
        return "no" if value in (False, None, "none", "off") else value  # YAML reads `no` as false


class FocusConfig(StrictModel):
    """Data focus of a phase: draw the named fractions of one field's values, the rest from the others.

    `fractions: balanced` draws every value of the field equally often (the guide's "33% each type").
    """

    by: Literal["pair_type", "difficulty"]
    fractions: dict[str, float] | Literal["balanced"]

    @field_validator("fractions")
    @classmethod
    def _valid_fractions(cls, value: dict[str, float] | str) -> dict[str, float] | str:
        if isinstance(value, dict):
            if any(f < 0 for f in value.values()):
                raise ValueError("fractions must be >= 0")
            if sum(value.values()) > 1.0 + 1e-6:
                raise ValueError(f"fractions sum to {sum(value.values()):.3f} > 1")
        return value


class PhaseConfig(StrictModel):
    """One curriculum phase (epochs are 1-based and inclusive)."""

    start_epoch: int = Field(gt=0)
    end_epoch: int = Field(gt=0)
    temperature: float | None = Field(default=None, gt=0.0)
    lambda_infonce: float | None = Field(default=None, ge=0.0)
    lr_multiplier: float = Field(default=1.0, gt=0.0)
    data_focus: FocusConfig | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PhaseConfig:
        if self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch {self.end_epoch} < start_epoch {self.start_epoch}")
        return self


class DevConfig(StrictModel):
    """Retrieval on held-out BEIR sets during training: selects the best model and drives early stopping."""

    sets: list[Path] = Field(default_factory=list)  # BEIR folders; each scored against its own corpus
    split: str = "dev"
    # which half of the split's queries selects (splade.dev_split); reports use the other one
    half: Literal["select", "report", "all"] = "select"
    metric: Literal["ndcg@10", "mrr@10", "recall@100"] = "ndcg@10"
    every_steps: int | None = Field(default=None, gt=0)  # null: at the end of every epoch
    # or this many over a run of max_steps or a budget (the last one on its last step)
    evaluations: int | None = Field(default=None, gt=0)
    max_queries: int | None = Field(default=200, gt=0)  # a fixed, seeded sample per set
    # judged documents of the sampled queries plus seeded distractors up to this many (null: whole corpus)
    max_documents: int | None = Field(default=5000, gt=0)
    # the share of those distractors that BM25 over character bigrams ranks nearest to the sampled
    # queries (the rest are random): a small sample that still tells lexical precision apart
    near_distractors: float = Field(default=0.5, ge=0.0, le=1.0)
    batch_size: int = Field(default=64, gt=0)


class OutputConfig(StrictModel):
    """Where checkpoints, `best_model/`, `training_history.json` and `tensorboard/` go."""

    dir: Path
    tensorboard: bool = True


class TrainConfig(StrictModel):
    """The whole training configuration (one YAML file)."""

    version: str | None = None
    model: ModelConfig
    data: DataConfig
    loss: LossConfig
    training: TrainingConfig
    curriculum_phases: list[PhaseConfig] = Field(default_factory=list)
    dev: DevConfig = Field(default_factory=DevConfig)
    output: OutputConfig

    @model_validator(mode="after")
    def _phases_do_not_overlap(self) -> TrainConfig:
        """Phases (in any order) must not share an epoch; gaps and epochs past the last phase are allowed
        (they keep the preceding phase's settings, see `Curriculum`)."""
        phases = sorted(self.curriculum_phases, key=lambda p: p.start_epoch)
        for prev, cur in zip(phases, phases[1:], strict=False):
            if cur.start_epoch <= prev.end_epoch:
                raise ValueError(f"curriculum phases overlap at epoch {cur.start_epoch}")
        return self

    @model_validator(mode="after")
    def _fp16_needs_float32_weights(self) -> TrainConfig:
        if self.model.dtype == "float16" and self.training.mixed_precision == "fp16":
            raise ValueError(
                "model.dtype float16 with training.mixed_precision fp16: the fp16 grad scaler cannot "
                "unscale float16 gradients; use model.dtype float32 (or training.mixed_precision bf16/no)"
            )
        return self


def config_from_dict(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a raw mapping; errors name the source and the offending key."""
    return validate(TrainConfig, raw, source)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config, apply `key=value` overrides and validate it into a `TrainConfig`."""
    return load_yaml_model(TrainConfig, path, overrides)
