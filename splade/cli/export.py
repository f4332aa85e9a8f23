"""CLI verbs for the export stage."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the root app (placeholder until the stage lands)."""
