"""The saved form of a SPLADE model, in one place: file names, ONNX tensor names and `splade_config.json`.

A trained folder is a Hugging Face masked-LM folder (`save_pretrained`) plus `splade_config.json`, which
says how to turn the backbone's logits into the served vector: pooling, activation, max length,
how much terms beyond the text's own tokens weigh, BM25's term weighting, whether own tokens carry a
lexical floor, and the score the model was trained for; and
sentence-transformers' module files (`st_format`), so `SparseEncoder(folder)` computes the same vectors.
An ONNX export holds the graph files, the tokenizer, the same `splade_config.json`, and the weights and
module files too. A folder trained by sentence-transformers (no `splade_config.json`) is read through
its module files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from splade.atomic import write_json
from splade.errors import SpladeError
from splade.fingerprint import weights_fingerprint  # noqa: F401 - its old home
from splade.model.st_format import read_module_files
from splade.model.term_weights import TermSaturation, document_expansion_ratio

SPLADE_CONFIG_NAME = "splade_config.json"
ONNX_INPUT_NAMES = ("input_ids", "attention_mask")
ONNX_OUTPUT_NAME = "output"
ONNX_VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
Similarity = Literal["dot", "cosine"]
QueryEncoderKind = Literal["model", "idf"]
# the terms whose encoder weights a lexical floor scales by `1 - share`: a text's own tokens (its expansion
# counts in full), or every term (models saved before the scope was recorded)
FloorScope = Literal["own", "all"]
FLOOR_SCOPES: tuple[str, ...] = get_args(FloorScope)
QUERY_WEIGHTS_NAME = "idf.json"  # an inference-free model's query weights, {token: weight}
LEXICAL_FLOOR_NAME = "lexical_floor.json"  # the weight a text's own token carries at least, {token: weight}


def saved_expansion_weight(raw: dict[str, Any]) -> Any:
    """A `splade_config.json`'s expansion weight as saved: an older folder's `use_expansion: false` is 0."""
    if "expansion_weight" in raw:
        return raw["expansion_weight"]
    return 0.0 if raw.get("use_expansion") is False else 1.0


@dataclass
class SpladeArtifact:
    """The contents of `splade_config.json`."""

    model_id: str | None = None
    max_length: int = 128  # the length a model without the two below was saved with (both sides)
    query_max_length: int | None = None  # served query length (None: max_length)
    doc_max_length: int | None = None  # served document length (None: max_length)
    query_encoder: QueryEncoderKind = "model"  # idf: queries are weighted by a table (inference-free)
    expansion_weight: float = 1.0  # terms a text does not contain weigh this much (0: own tokens only)
    doc_expansion_weight: float | None = None  # served documents' expansion weight (None: expansion_weight)
    bm25: dict[str, float] | None = None  # BM25's term-frequency part: k1, b, average_length (None: off)
    # a text's own tokens carry `lexical_floor.json`'s weights, this share of their start weights, and the
    # encoder's weights count the rest on top (0: no floor)
    lexical_floor: float = 0.0
    lexical_floor_scope: FloorScope = "all"  # older folders have no scope: theirs scaled every term
    similarity: Similarity = "dot"  # cosine: encoders L2-normalise every vector
    backbone_path: str | None = None  # the subfolder holding the masked LM (None: the folder itself)
    vocab_size: int | None = None
    vocab_hash: str | None = None
    special_token_ids: list[int] = field(default_factory=list)
    pooling: str = "max"
    activation: str = "log1p_relu"
    format: str = "splade"
    onnx: dict[str, Any] | None = None

    @classmethod
    def read(cls, folder: str | Path) -> SpladeArtifact | None:
        """The folder's `splade_config.json`, or None when it has none."""
        path = Path(folder) / SPLADE_CONFIG_NAME
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpladeError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise SpladeError(f"{path}: expected a JSON object")
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        known["expansion_weight"] = weight = saved_expansion_weight(raw)
        if isinstance(weight, bool) or not (isinstance(weight, int | float) and 0.0 <= weight <= 1.0):
            raise SpladeError(f"{path}: expansion_weight {weight!r} is not in [0, 1]")
        artifact = cls(**known)
        doc_weight = artifact.doc_expansion_weight
        if doc_weight is not None and (isinstance(doc_weight, bool) or not isinstance(doc_weight, int | float)
                                       or not 0.0 < doc_weight <= 1.0 or weight == 0):
            raise SpladeError(f"{path}: doc_expansion_weight {doc_weight!r} is not in (0, 1] "
                              "with an expansion_weight above 0")
        try:
            artifact.term_saturation  # noqa: B018 - validates the saved `bm25` object
        except ValueError as exc:
            raise SpladeError(f"{path}: {exc}") from None
        if artifact.similarity not in ("dot", "cosine"):
            raise SpladeError(f"{path}: similarity {artifact.similarity!r} is not dot or cosine")
        floor = artifact.lexical_floor
        if isinstance(floor, bool) or not (isinstance(floor, int | float) and 0.0 <= floor < 1.0):
            raise SpladeError(f"{path}: lexical_floor {floor!r} is not a share in [0, 1)")
        scope = artifact.lexical_floor_scope
        if scope not in FLOOR_SCOPES:
            raise SpladeError(f"{path}: lexical_floor_scope {scope!r} is not own or all")
        if artifact.query_encoder not in ("model", "idf"):
            raise SpladeError(f"{path}: query_encoder {artifact.query_encoder!r} is not model or idf")
        inner = Path(artifact.backbone_path or ".")
        if inner.is_absolute() or ".." in inner.parts:
            raise SpladeError(f"{path}: backbone_path {artifact.backbone_path!r} is not a subfolder")
        return artifact

    @property
    def term_saturation(self) -> TermSaturation | None:
        """The saved BM25 term weighting (`splade.model.term_weights`), or None."""
        return None if self.bm25 is None else TermSaturation.from_json(self.bm25)

    @property
    def document_expansion_ratio(self) -> float | None:
        """What a served document's expansion terms are multiplied by (None: served as trained)."""
        return document_expansion_ratio(self.expansion_weight, self.doc_expansion_weight,
                                        self.query_encoder == "idf")

    @property
    def query_length(self) -> int:
        """The longest query the model is served (in tokens)."""
        return self.query_max_length or self.max_length

    @property
    def doc_length(self) -> int:
        """The longest document the model is served (in tokens)."""
        return self.doc_max_length or self.max_length

    def backbone_in(self, folder: str | Path) -> Path:
        """The folder holding this model's masked LM (an inference-free model keeps it in the subfolder
        its sentence-transformers router names)."""
        return Path(folder) / self.backbone_path if self.backbone_path else Path(folder)

    def write(self, folder: str | Path) -> None:
        fields = {name: value for name, value in asdict(self).items() if value is not None}
        write_json(Path(folder) / SPLADE_CONFIG_NAME, fields)


def backbone_dir(folder: str | Path) -> Path:
    """The folder holding a model's weights and tokenizer: the folder itself, or the masked-LM module's
    subfolder of a sentence-transformers folder."""
    folder = Path(folder)
    artifact = SpladeArtifact.read(folder)
    if artifact is not None:
        return artifact.backbone_in(folder)
    st_model = read_module_files(folder)
    return st_model.backbone if st_model is not None else folder


def is_inference_free(folder: str | Path) -> bool:
    """The folder holds an inference-free model: `splade_config.json` says `query_encoder: idf`, or a
    sentence-transformers router weighs queries by a SparseStaticEmbedding."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    artifact = SpladeArtifact.read(folder)
    if artifact is not None:
        return artifact.query_encoder == "idf"
    st_model = read_module_files(folder)
    return st_model is not None and st_model.query_table is not None


def trained_max_length(folder: str | Path) -> int | None:
    """The max length a folder's model was trained with, when its files say (None: they do not)."""
    artifact = SpladeArtifact.read(folder)
    if artifact is not None:
        return artifact.max_length
    st_model = read_module_files(folder)
    return st_model.max_length if st_model is not None else None


def model_identity(name_or_path: str | Path) -> str:
    """What an index records as "the model": the same for a checkpoint and its ONNX export.

    `splade_config.json`'s `model_id` when present, else a weights fingerprint; a hub id is its own name.
    """
    directory = Path(name_or_path)
    if not directory.is_dir():
        return str(name_or_path)
    artifact = SpladeArtifact.read(directory)
    if artifact is not None and artifact.model_id:
        return artifact.model_id
    return f"{directory.resolve().name}@{weights_fingerprint(backbone_dir(directory))}"


def vocabulary_hash(tokenizer: Any) -> str:
    """A short hash of the vocabulary: indexes refuse queries encoded with another vocabulary."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256("\n".join(token for token, _ in vocab).encode("utf-8"))
    return digest.hexdigest()[:16]
