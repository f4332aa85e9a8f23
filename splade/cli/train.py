"""CLI verb `splade train v22|v23`: load the YAML config, apply overrides, run the training loop."""

from __future__ import annotations

from pathlib import Path

import typer

VERSIONS = ("v22", "v23", "quickstart")


def train_command(
    version: str = typer.Argument(
        ..., help="Config version: v22 (the guide), v23 (the review's fixes), quickstart."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c",
        help="YAML config (default configs/train_<version>.yaml, else the one bundled with splade).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Resume from the latest checkpoint in the output dir."
    ),
    resume_from: Path | None = typer.Option(
        None, "--resume-from", help="Resume from this checkpoint_N folder."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="First remove a previous run's checkpoints and best_model/ there."
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="Override a config field: key=value (repeatable), e.g. --set training.learning_rate=1e-5.",
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Output dir (default outputs/train_<version>)."
    ),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Skip malformed triplet lines and count them."
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="A budget of optimizer steps: the schedule shrinks to fit (0: the start)."
    ),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="A wall-clock budget: the steps that fit are planned after one is timed."
    ),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Train a SPLADE model (six-part loss, 3-phase curriculum, checkpoints, TensorBoard)."""
    from splade.errors import SpladeError

    if version not in VERSIONS and config is None:
        raise SpladeError(f"version {version!r}: expected one of {', '.join(VERSIONS)} or pass --config")
    from splade.config import load_config

    sets = list(overrides or [])
    if output_dir is not None:
        sets.append(f"output.dir={output_dir}")
    if skip_invalid:
        sets.append("data.skip_invalid=true")
    if max_steps is not None:
        sets.append(f"training.max_steps={max_steps}")
    if max_minutes is not None:
        sets.append(f"training.max_minutes={max_minutes}")
    if device is not None:
        sets.append(f"training.device={device}")
    quickstart = version == "quickstart" and config is None  # runs from any folder (packaged sample)
    if quickstart:
        from splade.quickstart import ensure_base_model, train_quickstart_overrides

        sets = [*train_quickstart_overrides(sets), *sets]
    source = config or default_config(version)
    cfg = load_config(source, sets)
    if cfg.version is None:
        cfg = cfg.model_copy(update={"version": version})
    if quickstart:
        ensure_base_model(cfg, say=lambda line: typer.echo(line, err=True))
    from splade.config.inputs import check_inputs, train_inputs

    check_inputs(train_inputs(cfg), str(source))

    from splade.trainer.loop import train

    result = train(cfg, resume=resume, resume_from=resume_from, overwrite=overwrite)
    if not result.is_main:  # one summary for a run on several processes
        return
    typer.echo(
        f"trained {result.global_step} steps, {len(result.history)} epochs"
        + (" (early stop)" if result.stopped_early else "")
    )
    if result.skipped_lines:
        typer.echo(f"skipped {result.skipped_lines} invalid training lines")
    last = result.history[-1] if result.history else {}
    if last.get("train"):
        typer.echo(f"last epoch: train loss {last['train'].get('loss', float('nan')):.4f}")
    summary = result.summary  # best_value: the monitored metric as reported (see TrainResult)
    where = f"step {summary.get('best_step')} (epoch {summary.get('best_epoch')})"
    if summary.get("best_value") is not None:
        typer.echo(f"best {summary['monitored']} {summary['best_value']:.4f} at {where}")
    elif summary.get("monitored") == "last":
        typer.echo(f"no evaluation selected a model: the best model is the last weights, {where}")
    typer.echo(f"best model: {result.best_model_dir}")


def default_config(version: str) -> Path:
    """`configs/train_<version>.yaml` in the working folder, else the copy bundled with the package."""
    from splade.config.loading import find_config

    return find_config(Path("configs") / f"train_{version}.yaml")


def register(app: typer.Typer) -> None:
    """Add `splade train` to the root app."""
    app.command("train")(train_command)
