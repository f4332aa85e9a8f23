"""`--help` reads as documentation: every verb answers, and no help text is eaten as Rich markup."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from splade.cli import _register_all, app

_register_all()

VERBS = [["train"], ["data", "build"], ["data", "sample"], ["export"], ["encode"], ["index"], ["search"],
         ["eval"], ["quickstart"]]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_help_of_every_verb(verb: list[str]) -> None:
    result = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    # Rich reads `[env X]` or `[default Y]` as markup and drops it, leaving "hosts ." behind
    assert not re.search(r"\w \.(\s|$)", result.output), result.output


def test_bracketed_hints_survive() -> None:
    runner = CliRunner()
    env = {"COLUMNS": "250", "NO_COLOR": "1"}
    assert "(env OPENSEARCH_HOSTS)" in runner.invoke(app, ["eval", "--help"], env=env).output
    assert "(default 1e-3)" in runner.invoke(app, ["export", "--help"], env=env).output
