"""One way to read every stage's config: a strict pydantic model, a YAML file, dotted `key=value` overrides
and one-line errors that name the source and the key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from splade.errors import SpladeError
from splade.fileio import read_yaml_mapping


class StrictModel(BaseModel):
    """Unknown keys are an error; NaN/inf floats are rejected; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Model = TypeVar("Model", bound=BaseModel)


def _parse_value(text: str) -> Any:
    """A command-line value: YAML scalar/list syntax (`1e-5`, `true`, `[a.jsonl, b.jsonl]`, `null`)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string; accept it as a number
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in the raw mapping (list items by index: `curriculum_phases.0.temperature`)."""
    if "=" not in override:
        raise SpladeError(f"--set {override!r}: expected key=value, e.g. training.learning_rate=1e-5")
    key, _, text = override.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SpladeError(f"--set {override!r}: empty key")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpladeError(f"--set {key}: {where} is not a valid list index")
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
            if node is None:
                node = {}
        else:
            raise SpladeError(f"--set {key}: {where} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise SpladeError(f"--set {key}: {last} is not a valid list index")
        node[int(last)] = _parse_value(text)
    elif isinstance(node, dict):
        node[last] = _parse_value(text)
    else:
        raise SpladeError(f"--set {key}: {'.'.join(parts[:-1])} is not a section")


def _format_error(path: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {key}: {first['msg']}{more}"


def validate(model: type[Model], raw: dict[str, Any], source: str = "config") -> Model:
    """Validate a raw mapping into `model`; an error names the source and the offending key."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SpladeError(_format_error(source, exc)) from None


def load_yaml_model(model: type[Model], path: str | Path, overrides: Sequence[str] = ()) -> Model:
    """Read a YAML file, apply `key=value` overrides and validate it into `model`."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    for override in overrides:
        apply_override(raw, override)
    return validate(model, raw, str(path))
