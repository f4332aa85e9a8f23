"""CLI verbs for the data stage: `splade data build` and `splade data sample`."""

from __future__ import annotations

from pathlib import Path

import typer

from splade.data.sample import SAMPLE_CONFIG
from splade.errors import at_option

data_app = typer.Typer(
    help="Build training triplets (BM25 hard negatives, cross-lingual pairs) from real data.",
    no_args_is_help=True,
)


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def _print_summary(summary: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    train, val = summary["train"]["rows"], summary["val"]["rows"]
    table = Table(title=f"{out}: {train:,} train / {val:,} val triplets")
    table.add_column("pair_type")
    table.add_column("train rows", justify="right")
    table.add_column("share", justify="right")
    for name, stats in summary["train"]["pair_types"].items():
        table.add_row(name, f"{stats['rows']:,}", f"{stats['fraction']:.1%}")
    console = Console(stderr=True)
    console.print(table)
    difficulty = ", ".join(f"{k} {v['fraction']:.0%}" for k, v in summary["train"]["difficulty"].items())
    leak = summary["leak_check"]
    console.print(f"difficulty: {difficulty}; duplicates dropped: {summary['dedup']['duplicates_dropped']}; "
                  f"leak check: {'passed' if leak['passed'] else 'FAILED'} "
                  f"({leak['dropped_query_groups']} held-out queries removed)")
    if "eval_set" in summary:
        ev = summary["eval_set"]
        console.print(f"evaluation set {ev['path']}: {ev['queries']:,} queries, "
                      f"{ev['documents']:,} documents")


@data_app.command("build")
def build(
    out: Path = typer.Option(..., "--out", help="Output folder (replaced atomically): train.jsonl, "
                                                "val.jsonl, summary.json."),
    config: Path | None = typer.Option(None, "--config", help="YAML build config: a file, or a bundled one "
                                                              "by name (data_ko.yaml, data_sample.yaml)."),
    beir: list[Path] = typer.Option([], "--beir", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/); "
                                                       "repeatable."),
    parallel: list[Path] = typer.Option([], "--parallel", help="Parallel TSV with 'ko' and 'en' columns; "
                                                               "repeatable."),
    lexicon: list[Path] = typer.Option([], "--lexicon", help="Term lexicon TSV with 'ko' and 'en' columns; "
                                                             "repeatable."),
    hub: list[str] = typer.Option([], "--hub", help="Public set from the Hugging Face hub (miracl-ko, "
                                                    "mrtydi-ko); needs network and `datasets`."),
    split: str = typer.Option("train", "--split", help="qrels split the --beir / --hub triplets come from."),
    negatives: int | None = typer.Option(None, "--negatives", min=1, help="Negatives per positive."),
    mine_with: Path | None = typer.Option(None, "--mine-with", help="Mine with this trained SPLADE model "
                                                                    "(checkpoint or ONNX folder) instead "
                                                                    "of BM25."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (sampling, splits)."),
) -> None:
    """Turn retrieval sets, parallel sentences and lexicons into training and validation triplets."""
    from splade.config.data import SourceConfig, build_config
    from splade.data.build import build_training_data

    sources = [SourceConfig(type="beir", path=str(p), split=split) for p in beir]
    sources += [SourceConfig(type="parallel", path=str(p)) for p in parallel]
    sources += [SourceConfig(type="lexicon", path=str(p)) for p in lexicon]
    sources += [SourceConfig(type="hub", name=n, split=split) for n in hub]
    if mine_with is not None and not mine_with.is_dir():
        raise at_option("--mine-with", f"{mine_with} is not a model folder")
    cfg = build_config(config, sources, mining_model=str(mine_with) if mine_with else None,
                       negatives_per_positive=negatives, seed=seed)
    from splade.config.inputs import build_inputs, check_inputs

    check_inputs(build_inputs(cfg), str(config or "options"))
    result = build_training_data(cfg, out, show_progress=True, log=_echo)
    _print_summary(result.summary, out)


@data_app.command("sample")
def sample(
    config: Path = typer.Option(SAMPLE_CONFIG, "--config", help="Build config of the sample (default: "
                                                                "the bundled data_sample.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: the package's bundled "
                                                        "sample, splade/resources/sample)."),
) -> None:
    """Rebuild the small redistributable sample bundled in the package (needs ../shared/data)."""
    from splade.data.sample import build_sample

    target = build_sample(config, out, show_progress=True, log=_echo)
    import json

    _print_summary(json.loads((target / "summary.json").read_text(encoding="utf-8")), target)


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app (build, sample) to the root app."""
    app.add_typer(data_app, name="data")
