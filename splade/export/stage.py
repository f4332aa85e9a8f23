"""The export stage as one call: ONNX graphs, then the OpenSearch ML Commons packages asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from splade.errors import at_option
from splade.export.onnx_export import ExportReport, export_onnx

ML_COMMONS_DIR = "opensearch"
TOKENIZE_DIR = "opensearch-tokenizer"


@dataclass
class ExportResult:
    report: ExportReport
    packages: list[Path] = field(default_factory=list)


def run_export(
    checkpoint: str | Path,
    out_dir: str | Path,
    fp16: bool = False,
    int8: bool = False,
    opset: int = 17,
    tolerance: float | None = None,
    exporter: str = "legacy",
    optimize: bool = True,
    parity_texts: str | Path | None = None,
    max_length: int | None = None,
    opensearch_package: bool = False,
    sparse_tokenize: bool = False,
    idf_corpus: str | Path | None = None,
    package_url: str | None = None,
    name: str | None = None,
) -> ExportResult:
    """Export `checkpoint` to `out_dir`; packages go to `out_dir/opensearch[-tokenizer]/`."""
    if not Path(checkpoint).is_dir():
        raise at_option("CHECKPOINT", f"{checkpoint} is not a model folder")
    if sparse_tokenize and idf_corpus is None:
        raise at_option("--idf-corpus", "--sparse-tokenize needs a corpus to compute idf weights from")
    report = export_onnx(checkpoint, out_dir, fp16=fp16, int8=int8, opset=opset, tolerance=tolerance,
                         exporter=exporter, optimize=optimize, parity_texts=parity_texts,
                         max_length=max_length)
    result = ExportResult(report)
    if opensearch_package or sparse_tokenize:
        from splade.export.opensearch_package import build_ml_commons_package, build_sparse_tokenize_package

        if opensearch_package:
            result.packages.append(build_ml_commons_package(
                checkpoint, Path(out_dir) / ML_COMMONS_DIR, name=name, url=package_url,
                max_length=max_length))
        if sparse_tokenize:
            result.packages.append(build_sparse_tokenize_package(
                checkpoint, Path(out_dir) / TOKENIZE_DIR, idf_corpus, url=package_url, max_length=max_length))
    return result
