"""`splade export`'s settings: the ONNX graphs to write, how to check them, and the OpenSearch packages."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from splade.config.loading import OptionsModel

Exporter = Literal["legacy", "dynamo"]  # torch.onnx's TorchScript-based exporter, or torch.export's


class ExportConfig(OptionsModel):
    """What `splade export` writes; every field has the CLI option of the same name."""

    checkpoint: Path  # a trained model folder (save_pretrained, or a sentence-transformers SPLADE folder)
    out: Path  # output folder, replaced atomically
    fp16: bool = False  # also write model_fp16.onnx (GPU serving)
    int8: bool = False  # also write model_int8.onnx (dynamic int8, CPU)
    opset: int = Field(default=17, ge=14, le=23)  # ONNX opset (the dynamo exporter uses at least 18)
    exporter: Exporter = "legacy"  # torch.onnx exporter
    optimize: bool = True  # fuse attention / LayerNorm / GELU with the ONNX Runtime optimizer
    tolerance: float | None = Field(default=None, gt=0.0)  # max |ONNX - PyTorch| of the fp32 graph (1e-3)
    parity_texts: Path | None = None  # more parity texts (.jsonl with text, or one a line)
    max_length: int | None = Field(default=None, gt=1)  # max tokens (default: the checkpoint's)
    opensearch_package: bool = False  # also build an ML Commons SPARSE_ENCODING zip
    sparse_tokenize: bool = False  # also build a SPARSE_TOKENIZE zip (tokenizer + idf.json)
    idf_corpus: Path | None = None  # idf.json corpus (not for an inference-free model): BEIR, .jsonl, lines
    package_url: str | None = None  # URL the zips are served from (register_model.json)
    name: str | None = None  # model name to register (default: the output folder's name)

    @model_validator(mode="after")
    def _idf_corpus_for_tokenize(self) -> ExportConfig:
        """A siamese model's SPARSE_TOKENIZE package needs a corpus for its idf weights; an inference-free
        model's carries its own trained query weights."""
        if not self.sparse_tokenize:
            return self
        from splade.model.artifact import is_inference_free

        inference_free = is_inference_free(self.checkpoint)
        if self.idf_corpus is None and not inference_free:
            raise ValueError("--idf-corpus: --sparse-tokenize needs a corpus to compute idf weights from "
                             "(an inference-free model brings its own)")
        if self.idf_corpus is not None and inference_free:
            raise ValueError(f"--idf-corpus: {self.checkpoint} is inference-free: its SPARSE_TOKENIZE "
                             "package carries the model's own query weights (drop --idf-corpus)")
        return self
