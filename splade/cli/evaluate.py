"""CLI verbs for the evaluate stage."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's verbs to the root app (placeholder until the stage lands)."""
