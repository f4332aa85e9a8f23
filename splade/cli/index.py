"""CLI verbs for the index stage: `splade index` builds an index, `splade search` queries it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

CONN = "OpenSearch connection"

Model = Annotated[Path, typer.Option(
    "--model", help="Model folder (checkpoint, or ONNX export with model.onnx).")]
IndexName = Annotated[str, typer.Option("--index", help="Index folder (local) or alias name (opensearch).")]
Backend = Annotated[str, typer.Option(
    "--backend", help="local: embedded on-disk index, no server; opensearch: an OpenSearch alias.")]
Device = Annotated[str | None, typer.Option(
    "--device", help="Encoder device (cpu, cuda); default: the best.")]
Hosts = Annotated[str | None, typer.Option(
    "--hosts", help="Comma-separated URLs (env OPENSEARCH_HOSTS).", rich_help_panel=CONN)]
User = Annotated[str | None, typer.Option(
    "--user", help="Basic-auth user (env OPENSEARCH_USER).", rich_help_panel=CONN)]
Password = Annotated[str | None, typer.Option(
    "--password", help="Basic-auth password (env OPENSEARCH_PASSWORD).", rich_help_panel=CONN)]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", help="API key (env OPENSEARCH_API_KEY).", rich_help_panel=CONN)]
CaCerts = Annotated[Path | None, typer.Option(
    "--ca-certs", help="CA bundle for TLS (env OPENSEARCH_CA_CERTS).", rich_help_panel=CONN)]
Insecure = Annotated[bool, typer.Option(
    "--insecure", help="Do not verify TLS certificates (env OPENSEARCH_VERIFY_CERTS=false).",
    rich_help_panel=CONN)]
Timeout = Annotated[float | None, typer.Option(
    "--timeout", help="Request timeout in seconds (env OPENSEARCH_TIMEOUT).", rich_help_panel=CONN)]
QueryMode = Annotated[str, typer.Option(
    "--query-mode", help="auto (probe for the neural-search plugin) | neural_sparse | rank_feature.",
    rich_help_panel=CONN)]
SCALE = "Scale-out"
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


def _target(backend: str, index: str, query_mode: str, hosts: str | None, user: str | None,
            password: str | None, api_key: str | None, ca_certs: Path | None, insecure: bool,
            timeout: float | None) -> Any:
    """The `IndexTarget`; OpenSearch settings come from the options, then `OPENSEARCH_*` variables."""
    from splade.indexer.connection import OpenSearchSettings
    from splade.indexer.pipeline import IndexTarget

    settings = None
    if backend == "opensearch":
        settings = OpenSearchSettings.from_env(
            hosts=hosts, user=user, password=password, api_key=api_key,
            ca_certs=str(ca_certs) if ca_certs else None, verify=False if insecure else None, timeout=timeout)
    return IndexTarget(backend, index, settings, query_mode)


def register(app: typer.Typer) -> None:
    """Add `index` and `search` to the root app."""

    @app.command("index")
    def index_command(
        model: Model,
        corpus: Annotated[Path, typer.Option("--corpus", help="BEIR folder with corpus.jsonl.")],
        index: IndexName,
        backend: Backend = "local",
        top_k_doc: Annotated[int | None, typer.Option(
            "--top-k-doc", help="Keep at most this many terms per document.")] = None,
        threshold: Annotated[float, typer.Option(
            "--threshold", help="Drop document weights at or below this.")] = 0.0,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Documents encoded per batch.")] = 32,
        append: Annotated[bool, typer.Option(
            "--append", help="Add to the existing index (same model and pruning), not rebuild.")] = False,
        duplicate_ids: Annotated[str, typer.Option(
            "--duplicate-ids", help="A corpus _id on two lines: error (names both lines), keep-first or "
            "keep-last.")] = "error",
        device: Device = None,
        hosts: Hosts = None, user: User = None, password: Password = None, api_key: ApiKey = None,
        ca_certs: CaCerts = None, insecure: Insecure = False, timeout: Timeout = None,
        query_mode: QueryMode = "auto",
        shard: Shard = None, mapping: Mapping = None, two_phase: TwoPhase = False, seismic: Seismic = None,
        primary_shards: PrimaryShards = 1, replicas: Replicas = 0,
    ) -> None:
        """Encode a corpus and index it; a rebuild replaces the live index only once it is complete."""
        from rich.console import Console

        from splade.indexer.layouts import Layout
        from splade.indexer.pipeline import build_index

        target = _target(backend, index, query_mode, hosts, user, password, api_key, ca_certs, insecure,
                         timeout)
        layout = None
        if mapping or two_phase or seismic or primary_shards != 1 or replicas != 0:
            layout = Layout.build(mapping or "rank_features", two_phase, seismic or [], primary_shards,
                                  replicas)
        summary = build_index(model, corpus, target, top_k=top_k_doc, threshold=threshold,
                              batch_size=batch_size, append=append, device=device,
                              duplicate_ids=duplicate_ids, shard=shard, layout=layout)
        console = Console(stderr=True, soft_wrap=True)
        for note in summary["notes"]:
            console.print(note, markup=False)
        console.print(summary.get("message") or f"indexed {summary['documents']} documents into the "
                      f"{summary['backend']} index {summary['index']} ({summary['device']})", markup=False)

    @app.command("search")
    def search_command(
        query: Annotated[str, typer.Argument(help="The query text.")],
        model: Model,
        index: IndexName,
        backend: Backend = "local",
        top_k: Annotated[int, typer.Option("--top-k", help="Number of results.")] = 10,
        allow_other_model: Annotated[bool, typer.Option(
            "--allow-other-model", help="Only require the same vocabulary, not the same model.")] = False,
        device: Device = None,
        hosts: Hosts = None, user: User = None, password: Password = None, api_key: ApiKey = None,
        ca_certs: CaCerts = None, insecure: Insecure = False, timeout: Timeout = None,
        query_mode: QueryMode = "auto",
    ) -> None:
        """Search an index with one query and print the ranked documents."""
        from rich.console import Console
        from rich.table import Table

        from splade.indexer.pipeline import search_text

        target = _target(backend, index, query_mode, hosts, user, password, api_key, ca_certs, insecure,
                         timeout)
        hits = search_text(model, target, query, top_k=top_k, device=device,
                           check_model=not allow_other_model)
        table = Table(title=f"{query}  ({len(hits)} hits)")
        table.add_column("#", justify="right")
        table.add_column("doc id")
        table.add_column("score", justify="right")
        table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=80)
        for rank, (doc_id, score, text) in enumerate(hits, start=1):
            table.add_row(str(rank), doc_id, f"{score:.4f}", (text or "")[:200])
        Console().print(table)
