"""CLI verbs for the export stage: `splade export` (ONNX + OpenSearch packages) and `splade encode`."""

from __future__ import annotations

from pathlib import Path

import typer

from splade.config.export import ExportConfig

_default = ExportConfig.default


def export(
    checkpoint: Path = typer.Argument(
        ..., help="Trained model folder (splade checkpoint or sentence-transformers SPLADE folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (replaced atomically)."),
    fp16: bool = typer.Option(_default("fp16"), "--fp16",
                              help="Also write model_fp16.onnx (for GPU serving)."),
    int8: bool = typer.Option(_default("int8"), "--int8",
                              help="Also write model_int8.onnx (dynamic int8, for CPU)."),
    opset: int = typer.Option(_default("opset"), "--opset", help="ONNX opset version."),
    tolerance: float = typer.Option(None, "--tolerance",
                                    help="Max |ONNX - PyTorch| allowed for the fp32 graph (default 1e-3)."),
    exporter: str = typer.Option(_default("exporter"), help="torch.onnx exporter: legacy or dynamo."),
    optimize: bool = typer.Option(_default("optimize"), "--optimize/--no-optimize",
                                  help="Fuse attention/LayerNorm/GELU (ONNX Runtime optimizer)."),
    parity_texts: Path = typer.Option(None, "--parity-texts",
                                      help="More parity texts (.jsonl with text, or one a line)."),
    max_length: int = typer.Option(None, "--max-length", help="Max tokens (default: the checkpoint's)."),
    opensearch_package: bool = typer.Option(_default("opensearch_package"), "--opensearch-package",
                                            help="Also build an ML Commons SPARSE_ENCODING zip."),
    sparse_tokenize: bool = typer.Option(_default("sparse_tokenize"), "--sparse-tokenize",
                                         help="Also build a SPARSE_TOKENIZE zip (tokenizer + idf.json)."),
    idf_corpus: Path = typer.Option(None, help="idf.json corpus: BEIR folder, .jsonl, or one text a line."),
    package_url: str = typer.Option(None, "--package-url",
                                    help="URL the zip is served from (for register_model.json)."),
    name: str = typer.Option(None, "--name", help="Model name to register (default: folder name)."),
) -> None:
    """Export a checkpoint to ONNX (parity-checked against PyTorch) and, optionally, OpenSearch packages."""
    import time

    from rich.console import Console
    from rich.table import Table

    from splade.export.stage import run_export

    config = ExportConfig(
        checkpoint=checkpoint, out=out, fp16=fp16, int8=int8, opset=opset, tolerance=tolerance,
        exporter=exporter, optimize=optimize, parity_texts=parity_texts, max_length=max_length,
        opensearch_package=opensearch_package, sparse_tokenize=sparse_tokenize, idf_corpus=idf_corpus,
        package_url=package_url, name=name)
    console, steps = Console(), Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()

    def say(step: str) -> None:  # every step on its own line: no silent stretch, on a terminal or in a log
        steps.print(f"{time.perf_counter() - started:6.1f}s {step}", markup=False, highlight=False)

    result = run_export(config, say=say)
    report = result.report
    table = Table(title=f"parity vs PyTorch ({report.parity['fp32'].n_texts} Korean/English texts)")
    for column in ("graph", "max |diff|", "tolerance", f"top-{report.parity['fp32'].k} overlap", "verdict"):
        table.add_column(column)
    for variant, parity in report.parity.items():
        if not parity.ran:
            table.add_row(variant, "-", "-", "-", f"not run: {parity.note}")
            continue
        table.add_row(variant, f"{parity.max_abs_diff:.2e}", f"{parity.tolerance.max_abs_diff:g}",
                      f"{parity.topk_overlap:.3f}", "ok" if parity.passed else "FAILED")
    console.print(table)
    fused = ", ".join(f"{k} {v}" for k, v in report.fusions.items()) or "none"
    console.print(f"exporter {report.exporter}, opset {report.opset}; fused: {fused}")
    console.print(f"wrote {out}: {', '.join(report.files)} ({report.seconds:.1f}s)")
    for package in result.packages:
        console.print(f"OpenSearch package: {package} (register: {package.parent / 'register_model.json'})")


VECTORS = "Vectors out (--input, --output)"


def encode(
    texts: list[str] = typer.Argument(
        None, help="Texts whose top terms to print (the older `splade encode MODEL TEXT...` works too)."),
    model: Path = typer.Option(None, "--model",
                               help="Checkpoint folder (PyTorch) or exported folder (ONNX)."),
    input_file: Path = typer.Option(
        None, "--input", help="Encode a file instead: a BEIR corpus (folder or corpus.jsonl; title + text), "
        "or with --queries a queries.jsonl or TSV (id<TAB>text).", rich_help_panel=VECTORS),
    output: Path = typer.Option(None, "--output", "-o", help="JSONL vectors file --input writes.",
                                rich_help_panel=VECTORS),
    queries: bool = typer.Option(False, "--queries", help="--input holds queries (encoded as queries are).",
                                 rich_help_panel=VECTORS),
    output_format: str = typer.Option(
        "jsonl", "--format", help="jsonl: pyserini JsonVectorCollection {id, contents, vector}; opensearch: "
        "{id, query_tokens} per query, {doc_id, text, sparse_embedding} per document.",
        rich_help_panel=VECTORS),
    quantize: int = typer.Option(None, "--quantize", help="Write round(weight x N) integers (impacts for an "
                                 "Anserini / pyserini impact index).", rich_help_panel=VECTORS),
    threshold: float = typer.Option(0.0, "--threshold", help="Drop weights at or below this.",
                                    rich_help_panel=VECTORS),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts encoded per batch.",
                                   rich_help_panel=VECTORS),
    top_k: int = typer.Option(None, "--top-k",
                              help="Terms kept per text (default: 20 printed, all written)."),
    backend: str = typer.Option("auto", "--backend", help="auto, torch or onnx."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: a GPU when present)."),
) -> None:
    """Print the top weighted terms of texts, or write a file's vectors as JSONL (--input, --output)."""
    from rich.console import Console

    from splade.encoders import load_encoder
    from splade.errors import at_option

    texts = list(texts or [])
    if model is None and texts and Path(texts[0]).is_dir():  # the older positional form: MODEL TEXT...
        model, texts = Path(texts[0]), texts[1:]
    if model is None:
        raise at_option("--model", "name the model folder (splade encode --model FOLDER ...)")
    if not model.is_dir():
        raise at_option("--model", f"model folder not found: {model}")
    if (input_file is None) == (not texts):
        raise at_option("--input", "give texts to print or --input FILE --output FILE (not both)")
    if input_file is not None and output is None:
        raise at_option("--output", "--input writes a vectors file: name it with --output")
    if input_file is None and (output is not None or queries):
        raise at_option("--output" if output is not None else "--queries", "needs --input FILE")
    console = Console(stderr=input_file is not None)
    if input_file is not None:
        from splade.indexer.vectors import read_items, write_vectors

        items = read_items(input_file, queries)
        encoder = load_encoder(model, backend=backend, device=device)
        count = write_vectors(encoder, items, output, output_format, queries, batch_size, top_k, threshold,
                              quantize)
        console.print(f"wrote {count} {'query' if queries else 'document'} vectors to {output} "
                      f"({encoder.model_name} on {encoder.device_description})", markup=False)
        return
    encoder = load_encoder(model, backend=backend, device=device)
    batch = encoder.encode(texts, top_k=top_k or 20)
    console.print(f"[dim]{encoder.model_name} on {encoder.device_description}[/dim]")
    for text, terms in zip(texts, batch.to_token_dicts(encoder.id_to_token), strict=True):
        ranked = sorted(terms.items(), key=lambda kv: -kv[1])
        console.print(f"[bold]{text}[/bold] ({len(ranked)} terms)")
        console.print("  " + "  ".join(f"{token}:{weight:.2f}" for token, weight in ranked), highlight=False)


def register(app: typer.Typer) -> None:
    """Add `export` and `encode` to the root app."""
    app.command("export")(export)
    app.command("encode")(encode)
