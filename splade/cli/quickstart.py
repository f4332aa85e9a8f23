"""`splade quickstart`: the whole pipeline on the bundled sample, no server, GPU or network needed."""

from __future__ import annotations

from pathlib import Path

import typer


def quickstart(
    out: Path = typer.Option(Path("outputs/quickstart"), "--out", help="Folder for every stage's output."),
    model: str = typer.Option(
        None, "--model",
        help="Backbone (hub id or path). Default: a small BERT built from the sample, no download.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a training config field, e.g. --set training.num_epochs=1 (repeatable).",
    ),
) -> None:
    """Run data -> train -> export -> index -> eval on the bundled Korean-English sample."""
    from rich.console import Console

    from splade.quickstart import run_quickstart

    console = Console()
    result = run_quickstart(out, model=model, overrides=list(overrides), say=console.print)
    console.print(f"\n[bold green]done[/]: trained model {result.model_dir}, ONNX {result.onnx_dir}, "
                  f"index {result.index_dir}")
    console.print(f"report: {result.report}")
    console.print(_summary_table(result.systems))


def _summary_table(systems: list[dict]):  # noqa: ANN202 - a rich Table, imported lazily
    """The headline figures of each system on the sample's evaluation set."""
    from rich.table import Table

    table = Table(title="bundled sample (dev): the full comparison is in the report")
    columns = [("system", "name", "{}"), ("NDCG@10", "ndcg@10", "{:.3f}"), ("MRR@10", "mrr@10", "{:.3f}"),
               ("R@1000", "recall@1000", "{:.3f}"), ("q terms", "avg_query_terms", "{:.1f}"),
               ("d terms", "avg_doc_terms", "{:.1f}"), ("QPS", "qps", "{:.0f}")]
    for title, _, _ in columns:
        table.add_column(title, justify="left" if title == "system" else "right")
    for row in systems:
        table.add_row(*(fmt.format(row[key]) if key in row else "-" for _, key, fmt in columns))
    return table


def register(app: typer.Typer) -> None:
    """Add `splade quickstart`."""
    app.command("quickstart")(quickstart)
