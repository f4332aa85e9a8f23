"""Every `splade ...` command in README.md and docs/*.md parses: its verb exists and so does each option it
names (checked against the CLI itself, so a renamed option or verb fails here, not in a user's terminal)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from splade.cli import _register_all, app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh|shell|console)?\n(.*?)```", re.S)
INLINE = re.compile(r"`(splade [^`]+)`")

_register_all()
ROOT_COMMAND = typer.main.get_command(app)


def _commands(text: str) -> list[str]:
    """`splade ...` command lines of fenced shell blocks (continuations joined) and inline code spans."""
    found: list[str] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            match = re.search(r"(?:^|-m |&& |\| )(splade (?!\.)[^#|&]*)", line)
            if match and not line.startswith(("pip", "from ", "import ")):
                found.append(match.group(1).strip())
    found += [span for span in INLINE.findall(text) if not span.startswith("splade.")]
    return found


def _all_commands() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCS for command in _commands(path.read_text(encoding="utf-8"))]


def _is_group(command: object) -> bool:
    return hasattr(command, "list_commands")  # typer may bring its own click: no isinstance checks


def _options(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command the words name and the words after it."""
    command: click.Command = ROOT_COMMAND
    rest = list(words)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.get_command(command.context_class(command), rest[0])
        if sub is None:
            raise AssertionError(f"unknown verb {rest[0]!r}")
        command, rest = sub, rest[1:]
    return command, rest


COMMANDS = _all_commands()


def test_the_docs_show_many_commands() -> None:
    assert len(COMMANDS) > 40
    verbs = {command.split()[1] for _, command in COMMANDS}
    assert {"train", "export", "encode", "index", "search", "eval", "quickstart", "data"} <= verbs


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command_parses(doc: str, command: str) -> None:
    try:
        words = shlex.split(command)[1:]
    except ValueError:  # an unbalanced quote in prose: check the words anyway
        words = command.split()[1:]
    words = [w for w in words if w not in ("...", "…")]
    cli, rest = _resolve(words)
    known = _options(cli)
    for word in rest:
        if not word.startswith("--"):
            continue
        for option in word.split("=", 1)[0].split("/"):
            option = option.rstrip(",.;:)")
            assert option in known, f"{doc}: `{command}`: {option} is not an option of {cli.name}"


def test_a_wrong_verb_or_option_fails_here() -> None:
    with pytest.raises(AssertionError, match="unknown verb 'serach'"):
        test_documented_command_parses("x.md", "splade serach --model M")
    with pytest.raises(AssertionError, match="--top-n is not an option of search"):
        test_documented_command_parses("x.md", "splade search --model M --index I --top-n 5 q")


def test_pyproject_asks_for_the_sentence_transformers_with_sparse_encoder() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^\s*"sentence-transformers>=5",', pyproject, re.M)  # SparseEncoder: docs, model cards
