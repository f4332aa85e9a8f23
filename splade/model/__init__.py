"""The core every stage imports: the SPLADE representation, its pooling variants and its saved form."""

from splade.model.artifact import (
    ONNX_INPUT_NAMES,
    ONNX_OUTPUT_NAME,
    ONNX_VARIANT_FILES,
    SPLADE_CONFIG_NAME,
    SpladeArtifact,
    model_identity,
    vocabulary_hash,
)
from splade.model.representation import ExportGraph, SpladeModel
from splade.model.term_weights import TermSaturation, bag_of_tokens

__all__ = [
    "ExportGraph",
    "ONNX_INPUT_NAMES",
    "ONNX_OUTPUT_NAME",
    "ONNX_VARIANT_FILES",
    "SPLADE_CONFIG_NAME",
    "SpladeArtifact",
    "SpladeModel",
    "TermSaturation",
    "bag_of_tokens",
    "model_identity",
    "vocabulary_hash",
]
