"""CLI verbs for the index stage: `splade index` builds an index, `splade search` queries it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from splade.cli.options import opensearch_options
from splade.config.index import IndexConfig, SearchConfig
from splade.config.opensearch import OpenSearchSettings

Model = Annotated[Path, typer.Option(
    "--model", help="Model folder: checkpoint, ONNX export, or sentence-transformers SPLADE folder.")]
IndexName = Annotated[str, typer.Option("--index", help="Index folder (local) or alias name (opensearch).")]
Backend = Annotated[str, typer.Option(
    "--backend", help="local: embedded on-disk index, no server; opensearch: an OpenSearch alias.")]
Device = Annotated[str | None, typer.Option(
    "--device", help="Encoder device (cpu, cuda); default: the best.")]
QueryMode = Annotated[str, typer.Option(
    "--query-mode", help="auto (probe for the neural-search plugin) | neural_sparse | rank_feature.")]
Format = Annotated[str, typer.Option(
    "--format", help="table (for people), json ({query, hits: [{rank, doc_id, score, text}]}) or trec "
    "(`1 Q0 DOC_ID RANK SCORE RUN` lines).")]
FORMATS = ("table", "json", "trec")
_index, _search = IndexConfig.default, SearchConfig.default
SCALE = "Scale-out"
BATCH = "Batch search (a TREC run file)"
Shard = Annotated[str | None, typer.Option(
    "--shard", help="Encode only share I of N (I/N, e.g. 0/4; torchrun sets it from RANK/WORLD_SIZE); "
    "the last shard to finish publishes the whole index.", rich_help_panel=SCALE)]
Mapping = Annotated[str | None, typer.Option(
    "--mapping", help="OpenSearch vector field: rank_features (exact; default) or sparse_vector (SEISMIC, "
    "OpenSearch 3.3+).", rich_help_panel=SCALE)]
TwoPhase = Annotated[bool, typer.Option(
    "--two-phase", help="Search the rank_features index through a neural_sparse two-phase pipeline "
    "(OpenSearch 2.15+).", rich_help_panel=SCALE)]
Seismic = Annotated[list[str] | None, typer.Option(
    "--seismic", help="SEISMIC parameter KEY=VALUE for sparse_vector (n_postings, cluster_ratio, "
    "summary_prune_ratio, approximate_threshold, quantization_ceiling_search, quantization_ceiling_ingest, "
    "top_n, heap_factor); repeatable.", rich_help_panel=SCALE)]
PrimaryShards = Annotated[int, typer.Option(
    "--primary-shards", help="Primary shards of a new OpenSearch index (spread over the data nodes).",
    rich_help_panel=SCALE)]
Replicas = Annotated[int, typer.Option(
    "--replicas", help="Replicas of each primary shard of a new OpenSearch index.", rich_help_panel=SCALE)]


def print_hits(query: str, hits: list[tuple[str, float, str | None]], output_format: str,
               run_name: str = "splade") -> None:
    """Print ranked hits to stdout: a table that keeps ids and scores whole at any width, JSON, or TREC."""
    if output_format == "json":
        rows = [{"rank": rank, "doc_id": doc_id, "score": score, "text": text}
                for rank, (doc_id, score, text) in enumerate(hits, start=1)]
        typer.echo(json.dumps({"query": query, "hits": rows}, ensure_ascii=False))
        return
    if output_format == "trec":
        run = re.sub(r"\s+", "_", run_name) or "splade"
        for rank, (doc_id, score, _) in enumerate(hits, start=1):
            typer.echo(f"1 Q0 {doc_id} {rank} {score:.6f} {run}")
        return
    from rich.console import Console
    from rich.table import Table

    rows = [(str(rank), doc_id, f"{score:.4f}", " ".join((text or "").split())[:300])
            for rank, (doc_id, score, text) in enumerate(hits, start=1)]
    widths = [max([len(header)] + [len(row[column]) for row in rows])
              for column, header in enumerate(("#", "doc id", "score"))]
    console = Console()
    # ids and scores are never shortened: the text takes what is left of the line (3 = padding + border);
    # with too little left it is left out, and ids too long for the terminal run past its edge, whole
    fixed = sum(w + 3 for w in widths) + 1
    text_width = console.width - fixed - 3
    if fixed > console.width:
        console = Console(width=fixed)
    table = Table(title=f"{query}  ({len(hits)} hits)", title_justify="left")
    table.add_column("#", justify="right", width=widths[0], no_wrap=True)
    table.add_column("doc id", width=widths[1], no_wrap=True)
    table.add_column("score", justify="right", width=widths[2], no_wrap=True)
    if text_width >= 8:
        table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=text_width)
    for row in rows:
        table.add_row(*(row if text_width >= 8 else row[:3]))
    console.print(table)


def verify_index(index: str, backend: str) -> None:
    """`splade index --verify-files`: the full check of an embedded index, one line either way."""
    from splade.errors import at_option
    from splade.indexer.local import LocalSparseIndex

    if backend != "local":
        raise at_option("--verify-files", "checks embedded (--backend local) indexes only")
    found = LocalSparseIndex.verify(index)
    note = "" if found["checksums"] else (" (written before checksums: structure checked only; rebuild it to "
                                          "add them)")
    typer.echo(f"{index}: {found['documents']} documents in {found['segments']} segments verified{note}")


def register(app: typer.Typer) -> None:
    """Add `index` and `search` to the root app."""

    @app.command("index")
    @opensearch_options
    def index_command(
        index: IndexName,
        model: Annotated[Path | None, typer.Option(
            "--model", help="Model folder: checkpoint, ONNX export, or sentence-transformers SPLADE folder."
        )] = None,
        corpus: Annotated[Path | None, typer.Option(
            "--corpus", help="BEIR folder with corpus.jsonl.")] = None,
        backend: Backend = _index("backend"),
        top_k_doc: Annotated[int | None, typer.Option(
            "--top-k-doc", help="Keep at most this many terms per document.")] = None,
        threshold: Annotated[float, typer.Option(
            "--threshold", help="Drop document weights at or below this.")] = _index("threshold"),
        batch_size: Annotated[int, typer.Option(
            "--batch-size", help="Documents encoded per batch.")] = _index("batch_size"),
        append: Annotated[bool, typer.Option(
            "--append", help="Add to the existing index (same model and pruning), not rebuild.")] = False,
        duplicate_ids: Annotated[str, typer.Option(
            "--duplicate-ids", help="A corpus _id on two lines: error (names both lines), keep-first or "
            "keep-last.")] = _index("duplicate_ids"),
        device: Device = None,
        query_mode: QueryMode = _index("query_mode"),
        shard: Shard = None, mapping: Mapping = None, two_phase: TwoPhase = False, seismic: Seismic = None,
        primary_shards: PrimaryShards = _index("primary_shards"), replicas: Replicas = _index("replicas"),
        verify_files: Annotated[bool, typer.Option(
            "--verify-files", help="Check every file of the embedded index --index (checksums and postings) "
            "and exit; needs no --model or --corpus.")] = False,
        opensearch: OpenSearchSettings | None = None,
    ) -> None:
        """Encode a corpus and index it; a rebuild replaces the live index only once it is complete."""
        from rich.console import Console

        from splade.errors import at_option
        from splade.indexer.pipeline import build_index

        if verify_files:
            return verify_index(index, backend)
        if model is None or corpus is None:
            raise at_option("--model" if model is None else "--corpus", "required to build an index")

        config = IndexConfig(model=model, corpus=corpus, index=index, backend=backend, opensearch=opensearch,
                             query_mode=query_mode, top_k_doc=top_k_doc, threshold=threshold,
                             batch_size=batch_size, append=append, duplicate_ids=duplicate_ids, device=device,
                             shard=shard, mapping=mapping, two_phase=two_phase, seismic=seismic or [],
                             primary_shards=primary_shards, replicas=replicas)
        summary = build_index(config)
        console = Console(stderr=True, soft_wrap=True)
        for note in summary["notes"]:
            console.print(note, markup=False)
        console.print(summary.get("message") or f"indexed {summary['documents']} documents into the "
                      f"{summary['backend']} index {summary['index']} ({summary['device']})", markup=False)

    @app.command("search")
    @opensearch_options
    def search_command(
        model: Model,
        index: IndexName,
        backend: Backend = _search("backend"),
        top_k: Annotated[int, typer.Option("--top-k", help="Number of results.")] = _search("top_k"),
        query_top_k: Annotated[int | None, typer.Option(
            "--query-top-k", help="Search only each query's heaviest N terms (cheaper queries).")] = None,
        allow_other_model: Annotated[bool, typer.Option(
            "--allow-other-model", help="Only require the same vocabulary, not the same model.")] = False,
        output_format: Format = "table",
        device: Device = None,
        query_mode: QueryMode = _search("query_mode"),
        queries: Annotated[Path | None, typer.Option(
            "--queries", help="Search every query of a file instead: BEIR queries.jsonl (_id, text) or TSV "
            "(id<TAB>text a line); needs --output.", rich_help_panel=BATCH)] = None,
        output: Annotated[Path | None, typer.Option(
            "--output", "-o", help="TREC run file the --queries search writes (`QID Q0 DOC_ID RANK SCORE "
            "RUN`).", rich_help_panel=BATCH)] = None,
        batch_size: Annotated[int, typer.Option(
            "--batch-size", help="Queries encoded per batch.",
            rich_help_panel=BATCH)] = _search("batch_size"),
        shard: Annotated[str | None, typer.Option(
            "--shard", help="Search only share I of N of the --queries (I/N; torchrun sets it); the last "
            "shard to finish writes the whole run file.", rich_help_panel=BATCH)] = None,
        query: Annotated[str | None, typer.Argument(help="The query text (or --queries FILE).")] = None,
        opensearch: OpenSearchSettings | None = None,
    ) -> None:
        """Search an index with one query and print the ranked documents, or write the TREC run of a query
        file (--queries, --output)."""
        from splade.errors import at_option
        from splade.indexer.pipeline import search_text

        if output_format not in FORMATS:
            raise at_option("--format", f"choose one of {', '.join(FORMATS)}, not {output_format!r}")
        if (queries is None) == (query is None):
            raise at_option("QUERY", "give one query text or --queries FILE (not both)")
        if queries is None and (output is not None or shard is not None):
            raise at_option("--output" if output is not None else "--shard", "needs --queries FILE")
        if queries is not None and output is None:
            raise at_option("--output", "--queries writes a TREC run file: name it with --output")
        config = SearchConfig(model=model, index=index, backend=backend, opensearch=opensearch,
                              query_mode=query_mode, top_k=top_k, query_top_k=query_top_k,
                              allow_other_model=allow_other_model,
                              device=device, queries=queries, output=output, shard=shard,
                              batch_size=batch_size)
        if queries is not None:
            from rich.console import Console

            from splade.indexer.batch import search_to_run

            Console(stderr=True, soft_wrap=True).print(search_to_run(config)["message"], markup=False)
            return
        assert query is not None
        print_hits(query, search_text(config, query), output_format, run_name=model.name)
