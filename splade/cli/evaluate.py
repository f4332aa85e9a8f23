"""CLI verb `splade eval`: compare SPLADE models with BM25 and dense retrieval and write a report."""

from __future__ import annotations

from pathlib import Path

import typer

from splade.cli.options import opensearch_options
from splade.config.evaluate import EvalConfig
from splade.config.opensearch import OpenSearchSettings

SYSTEMS = "Systems"
OPENSEARCH = "OpenSearch layouts (with --backend opensearch)"
_default = EvalConfig.default


def evaluate(
    dataset: list[Path] = typer.Option(
        ..., "--dataset", "-d",
        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); repeat for several datasets."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (replaced atomically)."),
    split: str = typer.Option(_default("split"), help="Qrels split to evaluate."),
    merged_corpus: bool = typer.Option(
        _default("merged_corpus"), "--merged-corpus", help="Search every dataset's queries against all "
        "passages of all named datasets (distractors make Recall@1000 meaningful on small sets)."),
    duplicate_ids: str = typer.Option(
        _default("duplicate_ids"), "--duplicate-ids", help="A corpus _id on two lines: error (names both "
        "lines), keep-first or keep-last."),
    splade: list[str] = typer.Option(
        [], "--splade", "-s", help="SPLADE checkpoint, ONNX export or sentence-transformers SPLADE folder, "
        "or NAME=FOLDER; repeat to compare several.", rich_help_panel=SYSTEMS),
    index: list[str] = typer.Option(
        [], "--index", help="Search an existing index (folder, or alias with --backend opensearch) built by "
        "`splade index` with the --splade model, instead of encoding the corpus: INDEX, or NAME=INDEX for "
        "the --splade system NAME.", rich_help_panel=SYSTEMS),
    run: list[str] = typer.Option(
        [], "--run", help="A TREC run file scored as it is (nothing encoded): FILE or NAME=FILE; repeatable.",
        rich_help_panel=SYSTEMS),
    bm25: bool = typer.Option(_default("bm25"), "--bm25/--no-bm25",
                              help="BM25 over Kiwi content morphemes (baseline).", rich_help_panel=SYSTEMS),
    bm25_whitespace: bool = typer.Option(
        _default("bm25_whitespace"), "--bm25-whitespace",
        help="Also BM25 over whitespace tokens (a sanity column).", rich_help_panel=SYSTEMS),
    bm25_pieces: Path | None = typer.Option(
        None, "--bm25-pieces", metavar="MODEL_DIR", help="Also BM25 over the token pieces of this model "
        "folder's tokenizer (no special tokens, whole documents), e.g. ../shared/models/me5-small-koen: row "
        "bm25-pieces (baseline).", rich_help_panel=SYSTEMS),
    dense: str | None = typer.Option(
        None, "--dense", help="sentence-transformers model folder for the dense baseline, e.g. "
        "../shared/models/me5-small-koen.", rich_help_panel=SYSTEMS),
    query_prefix: str = typer.Option(_default("dense_query_prefix"), help="Dense query prefix.",
                                     rich_help_panel=SYSTEMS),
    passage_prefix: str = typer.Option(_default("dense_passage_prefix"), help="Dense passage prefix.",
                                       rich_help_panel=SYSTEMS),
    dense_max_length: int = typer.Option(_default("dense_max_length"), help="Dense max tokens.",
                                         rich_help_panel=SYSTEMS),
    teacher: bool = typer.Option(
        _default("teacher"), "--teacher", help="Also the trainer's teacher: BM25 and dense top 1000 each, "
        "min-max normalised per query and mixed (needs --bm25 and --dense): row teacher (baseline).",
        rich_help_panel=SYSTEMS),
    teacher_bm25_weight: float = typer.Option(
        _default("teacher_bm25_weight"), help="Teacher: BM25's weight w when query and document are Korean.",
        rich_help_panel=SYSTEMS),
    teacher_cross_lingual_weight: float = typer.Option(
        _default("teacher_cross_lingual_weight"), help="Teacher: BM25's weight w for every other pair.",
        rich_help_panel=SYSTEMS),
    query_max_length: int | None = typer.Option(
        None, help="SPLADE query length in tokens (default: each model's own, from splade_config.json).",
        rich_help_panel=SYSTEMS),
    doc_max_length: int | None = typer.Option(
        None, help="SPLADE document length in tokens (default: each model's own, from splade_config.json).",
        rich_help_panel=SYSTEMS),
    backend: str = typer.Option(_default("backend"), rich_help_panel=SYSTEMS,
                                help="SPLADE index: local (embedded, temporary) or opensearch."),
    encoder_backend: str = typer.Option(_default("encoder_backend"), rich_help_panel=SYSTEMS,
                                        help="SPLADE encoder: auto, torch or onnx."),
    doc_top_k: int | None = typer.Option(None, help="Keep at most this many terms per SPLADE document.",
                                         rich_help_panel=SYSTEMS),
    query_top_k: int | None = typer.Option(
        None, help="Search only the heaviest N terms of each SPLADE query (cheaper queries; the report "
        "gives the FLOPS and NDCG it costs).", rich_help_panel=SYSTEMS),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    batch_size: int = typer.Option(_default("batch_size"), help="Encoding batch size."),
    query_half: str = typer.Option(
        _default("query_half"), help="Dev half of the queries: select (the trainer picks its best model on "
        "it), report (the other half, for reports) or all."),
    max_queries: int | None = typer.Option(
        None, help="Evaluate a seeded sample of N queries per set (taken from --query-half)."),
    max_documents: int | None = typer.Option(
        None, help="Search a corpus of the evaluated queries' judged documents plus seeded distractors up to "
        "N per set (the same for every system; default: the whole corpus)."),
    top_k: int = typer.Option(_default("top_k"), help="Documents retrieved per query."),
    alpha: float = typer.Option(_default("alpha"), help="Significance level (after Holm's correction)."),
    trials: int = typer.Option(_default("trials"), help="Randomization-test trials."),
    seed: int = typer.Option(_default("seed"), help="Seed of the query sample and the randomization test."),
    mapping: list[str] = typer.Option(
        _default("mappings"), "--mapping", help="OpenSearch layout to evaluate each SPLADE model in: "
        "rank_features (exact) or sparse_vector (SEISMIC, 3.3+); repeat for one column each.",
        rich_help_panel=OPENSEARCH),
    two_phase: bool = typer.Option(
        False, "--two-phase", help="Also search rank_features through the neural_sparse two-phase pipeline "
        "(a column of its own).", rich_help_panel=OPENSEARCH),
    seismic: list[str] = typer.Option(
        [], "--seismic", help="SEISMIC parameter KEY=VALUE for the sparse_vector column; repeatable.",
        rich_help_panel=OPENSEARCH),
    shard: str | None = typer.Option(
        None, "--shard", help="Encode only share I of N of the SPLADE documents (I/N; torchrun sets it); the "
        "last shard to finish evaluates. Shards meet in OUT.shards."),
    opensearch: OpenSearchSettings | None = None,
) -> None:
    """Compare SPLADE with BM25 and dense retrieval: NDCG@10, MRR@10, Recall@100/1000, significance, costs.

    Writes report.md, report.html (plots inlined), results.json and TREC runs into --out.
    """
    from rich.console import Console

    from splade.atomic import refuse_foreign_dir
    from splade.evaluation import run_evaluation, write_report
    from splade.evaluation.runs import parse_run_spec
    from splade.evaluation.systems import parse_index_specs, parse_splade_spec

    refuse_foreign_dir(out, "results.json", "--out", "evaluation report")  # before any work
    console = Console(stderr=True)
    splade_systems = [parse_splade_spec(spec) for spec in splade]
    config = EvalConfig(
        datasets=list(dataset), split=split, merged_corpus=merged_corpus, duplicate_ids=duplicate_ids,
        splade=splade_systems, indexes=parse_index_specs(index, [name for name, _ in splade_systems]),
        runs=[parse_run_spec(spec) for spec in run], bm25=bm25, bm25_whitespace=bm25_whitespace,
        bm25_pieces=bm25_pieces, dense=dense, dense_query_prefix=query_prefix,
        dense_passage_prefix=passage_prefix, dense_max_length=dense_max_length, teacher=teacher,
        teacher_bm25_weight=teacher_bm25_weight, teacher_cross_lingual_weight=teacher_cross_lingual_weight,
        query_max_length=query_max_length, doc_max_length=doc_max_length, backend=backend,
        opensearch=opensearch, encoder_backend=encoder_backend, device=device, batch_size=batch_size,
        doc_top_k=doc_top_k, query_top_k=query_top_k, query_half=query_half, max_queries=max_queries,
        max_documents=max_documents, top_k=top_k, alpha=alpha,
        trials=trials, seed=seed, show_progress=True,
        mappings=list(mapping), two_phase=two_phase, seismic=list(seismic), shard=shard,
        shard_dir=out.parent / f"{out.name}.shards",
    )
    result = run_evaluation(config, log=lambda message: console.print(f"[dim]•[/dim] {message}"))
    if result is None:  # a shard that left the evaluation to the last one
        return
    report = write_report(result, out)
    from splade.evaluation.report import summary_table

    header, rows = summary_table(result)
    console.print("NDCG@10: " + "  ".join(f"{h}" for h in header[1:]))
    for row in rows:
        console.print(f"  {row[0]:<18} " + "  ".join(row[1:]))
    typer.echo(str(report))


def register(app: typer.Typer) -> None:
    """Add `splade eval` to the root app."""
    app.command("eval")(opensearch_options(evaluate))
