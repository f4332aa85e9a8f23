"""The export stage as one call: ONNX graphs, then the OpenSearch ML Commons packages asked for."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from splade.atomic import refuse_foreign_dir
from splade.config.export import ExportConfig
from splade.errors import at_option
from splade.export.onnx_export import ExportReport, export_onnx

ML_COMMONS_DIR = "opensearch"
TOKENIZE_DIR = "opensearch-tokenizer"


@dataclass
class ExportResult:
    report: ExportReport
    packages: list[Path] = field(default_factory=list)


def run_export(config: ExportConfig, say: Callable[[str], None] | None = None) -> ExportResult:
    """Export `config.checkpoint` to `config.out`; packages go to `out/opensearch[-tokenizer]/`; `say`
    hears each step (none is silent for long)."""
    checkpoint, out_dir, name, url = config.checkpoint, config.out, config.name, config.package_url
    if not checkpoint.is_dir():
        raise at_option("CHECKPOINT", f"{checkpoint} is not a model folder")
    refuse_foreign_dir(out_dir, "export_report.json", "--out", "export")
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    # packages first, in scratch space: a package that fails its check stops the export before anything
    # is written; the ONNX export then replaces `out_dir` and the checked packages are moved into it
    with tempfile.TemporaryDirectory(prefix=".splade-packages-", dir=parent) as scratch:
        staged: list[tuple[str, Path]] = []
        if config.opensearch_package or config.sparse_tokenize:
            from splade.export.opensearch_package import (
                build_ml_commons_package,
                build_sparse_tokenize_package,
            )

            if config.opensearch_package:
                if say:
                    say("building the ML Commons SPARSE_ENCODING package (traced, checked)")
                staged.append((ML_COMMONS_DIR, build_ml_commons_package(
                    checkpoint, Path(scratch) / ML_COMMONS_DIR, name=name, url=url,
                    max_length=config.max_length)))
            if config.sparse_tokenize:
                if say:
                    say("building the SPARSE_TOKENIZE package")
                staged.append((TOKENIZE_DIR, build_sparse_tokenize_package(
                    checkpoint, Path(scratch) / TOKENIZE_DIR, config.idf_corpus, url=url,
                    name=f"{name}-tokenizer" if name else None, max_length=config.max_length)))
        report = export_onnx(config, say=say)
        result = ExportResult(report)
        for folder, package in staged:
            os.replace(Path(scratch) / folder, out_dir / folder)
            result.packages.append(out_dir / folder / package.name)
        if staged:  # the card names the packages now beside it
            from splade.model.card import write_model_card

            write_model_card(out_dir, source=out_dir, name=name or out_dir.name)
    return result
