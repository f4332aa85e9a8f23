"""The `splade` command line: one verb per stage; each verb parses options and calls one stage function."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from splade.errors import SpladeError

app = typer.Typer(
    name="splade",
    help="Train, export, index and evaluate Korean / Korean-English SPLADE neural sparse retrieval models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



def _show_version(shown: bool) -> None:
    if shown:
        from splade.versions import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                 help="Print the version of splade and of its main libraries, and exit."),
) -> None:
    """Train, export, index and evaluate Korean / Korean-English SPLADE neural sparse retrieval models."""


# Each module registers its verbs on `app` through a `register(app)` function.
COMMAND_MODULES = ("quickstart", "data", "train", "export", "index", "evaluate")


_registered: list[str] = []


def _plain_flags_in_help() -> None:
    """Show a flag (`--append`, `--help`) without the `<bool>` value placeholder typer's help gives it: a
    flag takes no value."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_splade_plain_flags", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - typer's own signature
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._splade_plain_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def _register_all() -> None:
    """Add every verb to `app` (once; later calls do nothing)."""
    _plain_flags_in_help()
    for name in COMMAND_MODULES:
        if name not in _registered:
            importlib.import_module(f"splade.cli.{name}").register(app)
            _registered.append(name)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register_all()
    try:
        app()
    except SpladeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
