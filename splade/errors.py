"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

from pathlib import Path


class SpladeError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits with code 2."""


def at_line(path: str | Path, line: int, message: str) -> SpladeError:
    """Build an error that names the file and the 1-based line number."""
    return SpladeError(f"{path}:{line}: {message}")


def at_option(option: str, message: str) -> SpladeError:
    """Build an error that names the command-line option or config key."""
    return SpladeError(f"{option}: {message}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
