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
    markdown = result.report.parent / "report.md" if result.report.suffix != ".md" else result.report
    if markdown.is_file():
        from rich.markdown import Markdown

        console.print(Markdown(markdown.read_text(encoding="utf-8")))


def register(app: typer.Typer) -> None:
    """Add `splade quickstart`."""
    app.command("quickstart")(quickstart)
