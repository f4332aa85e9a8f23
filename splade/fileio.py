"""Reading the project's text formats with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from splade.errors import SpladeError, at_line


class UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML would keep the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is `{}`)."""
    path = Path(path)
    if not path.is_file():
        raise SpladeError(f"{path}: config file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpladeError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpladeError(f"{path}: cannot read ({exc})") from None
    if not isinstance(raw, dict):
        raise SpladeError(f"{path}: expected a mapping at the top level")
    return raw


def decode_line(path: Path, number: int, raw: bytes) -> str:
    """One line of a UTF-8 file as text (a leading byte-order mark dropped); an error names file and line."""
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start : exc.start + 1].hex()
        raise at_line(path, number, f"not valid UTF-8 (byte 0x{byte} at offset {exc.start})") from None
    return line.lstrip("\ufeff") if number == 1 else line


def iter_raw_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """`(line number, bytes)` of every line; a missing or unreadable file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise SpladeError(f"{path}: file not found")
    try:
        with path.open("rb") as handle:
            yield from enumerate(handle, start=1)
    except OSError as exc:
        raise SpladeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """`(line number, text)` of every non-blank line of a UTF-8 file, numbered from 1."""
    path = Path(path)
    for number, raw in iter_raw_lines(path):
        line = decode_line(path, number, raw)
        if line.strip():
            yield number, line


def parse_json_object(path: Path, number: int, line: str) -> dict[str, Any]:
    """One JSONL line as an object; an error names file and line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")  # "Unterminated string starting at": no "at at column"
        raise at_line(path, number, f"invalid JSON ({message} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise at_line(path, number, "expected a JSON object")
    return row


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, object)` for every non-blank line of a JSONL file."""
    path = Path(path)
    for number, line in iter_lines(path):
        yield number, parse_json_object(path, number, line)


def iter_texts(path: str | Path) -> Iterator[str]:
    """Texts of a file: `.jsonl` objects with `text` (and optional `title`, prepended), else one a line."""
    path = Path(path)
    if path.suffix != ".jsonl":
        yield from (line.strip() for _, line in iter_lines(path))
        return
    for number, row in iter_json_objects(path):
        if not isinstance(row.get("text"), str):
            raise at_line(path, number, "expected an object with a 'text' field")
        yield f"{row.get('title') or ''} {row['text']}".strip()
