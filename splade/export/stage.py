"""The export stage as one call: ONNX graphs, then the OpenSearch ML Commons packages asked for."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from splade.atomic import refuse_foreign_dir
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
    refuse_foreign_dir(out_dir, "export_report.json", "--out", "export")
    parent = Path(out_dir).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    # packages first, in scratch space: a package that fails its check stops the export before anything
    # is written; the ONNX export then replaces `out_dir` and the checked packages are moved into it
    with tempfile.TemporaryDirectory(prefix=".splade-packages-", dir=parent) as scratch:
        staged: list[tuple[str, Path]] = []
        if opensearch_package or sparse_tokenize:
            from splade.export.opensearch_package import (
                build_ml_commons_package,
                build_sparse_tokenize_package,
            )

            if opensearch_package:
                staged.append((ML_COMMONS_DIR, build_ml_commons_package(
                    checkpoint, Path(scratch) / ML_COMMONS_DIR, name=name, url=package_url,
                    max_length=max_length)))
            if sparse_tokenize:
                staged.append((TOKENIZE_DIR, build_sparse_tokenize_package(
                    checkpoint, Path(scratch) / TOKENIZE_DIR, idf_corpus, url=package_url,
                    name=f"{name}-tokenizer" if name else None, max_length=max_length)))
        report = export_onnx(checkpoint, out_dir, fp16=fp16, int8=int8, opset=opset, tolerance=tolerance,
                             exporter=exporter, optimize=optimize, parity_texts=parity_texts,
                             max_length=max_length)
        result = ExportResult(report)
        for folder, package in staged:
            os.replace(Path(scratch) / folder, Path(out_dir) / folder)
            result.packages.append(Path(out_dir) / folder / package.name)
    return result
