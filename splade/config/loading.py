"""One way to read every stage's config: a strict pydantic model, a YAML file, dotted `key=value` overrides
and one-line errors that name the source and the key (or, for settings built from options, the option)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from splade.errors import SpladeError
from splade.fileio import read_yaml_mapping


class StrictModel(BaseModel):
    """Unknown keys are an error; NaN/inf floats are rejected; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Model = TypeVar("Model", bound=BaseModel)
BUNDLED_CONFIGS = Path(__file__).resolve().parent.parent / "resources" / "configs"


def format_error(exc: ValidationError, source: str | None = None,
                 options: dict[str, str] | None = None, model: type[BaseModel] | None = None,
                 overridden: Sequence[str] = ()) -> str:
    """The first problem on one line: `SOURCE: a.b.c: message` for a file, `--option: message` for
    settings built from command-line options (`options` renames a field's option, e.g. `datasets`).

    An unknown key gets a "did you mean" from `model`'s fields; a key set by `--set` (in `overridden`) is
    blamed on `--set`, not on the file."""
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if source is not None:
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden" and model is not None:
            message += did_you_mean(model, [str(p) for p in first["loc"]])
        if any(o == key or o.startswith(f"{key}.") for o in overridden):
            source = "--set"
        return f"{source}: {key}: {message}{more}"
    fields = [str(p) for p in first["loc"] if isinstance(p, str)]
    if not fields:  # a check across fields: its message names the options itself
        return f"{message}{more}"
    option = (options or {}).get(fields[-1], "--" + fields[-1].replace("_", "-"))
    return f"{option}: {message}{more}"


def did_you_mean(model: type[BaseModel], loc: Sequence[str]) -> str:
    """` (did you mean a.b.x?)` for the field of `model` nearest the unknown key at `loc`, or ""."""
    import difflib

    node: Any = model
    for part in loc[:-1]:
        node = _field_model(node, part)
        if node is None:
            return ""
    close = difflib.get_close_matches(loc[-1], list(node.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {'.'.join([*loc[:-1], close[0]])}?)" if close else ""


def _field_model(model: Any, part: str) -> Any:
    """The pydantic model a field (or a list item, `part` a digit) of `model` holds, or None."""
    from typing import get_args

    if part.isdigit():
        return model
    field = getattr(model, "model_fields", {}).get(part)
    if field is None:
        return None
    pending = [field.annotation]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        pending += list(get_args(annotation))
    return None


class OptionsModel(StrictModel):
    """A stage's settings, one field per command-line option of the same name (`top_k_doc` is
    `--top-k-doc`). Building one with a bad value raises a one-line `SpladeError` naming the option,
    from the CLI and from library code alike; each field's default is the option's default."""

    option_names: ClassVar[dict[str, str]] = {}  # field -> option where they differ

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise SpladeError(format_error(exc, options=self.option_names)) from None

    @classmethod
    def default(cls, field: str) -> Any:
        """The field's default: what the CLI option shows and uses when not given."""
        return cls.model_fields[field].get_default(call_default_factory=True)


def find_config(path: str | Path) -> Path:
    """A config file by path; a name alone (`data_ko.yaml`, `configs/train_v23.yaml`) that is not
    found in the working folder is the copy bundled with the package."""
    path = Path(path)
    if path.is_file() or path.parent not in (Path(), Path("configs")):
        return path
    for name in (path.name, f"{path.name}.yaml"):
        if (BUNDLED_CONFIGS / name).is_file():
            return BUNDLED_CONFIGS / name
    return path


def read_config(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The file `find_config` picks and its YAML mapping (a missing file lists the bundled ones)."""
    path = find_config(path)
    if not path.is_file():
        raise SpladeError(f"{path}: config file not found (bundled: {', '.join(bundled_config_names())})")
    return path, read_yaml_mapping(path)


def bundled_config_names() -> list[str]:
    """The config files that ship with the package."""
    return sorted(p.name for p in BUNDLED_CONFIGS.glob("*.yaml"))


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


def validate(model: type[Model], raw: dict[str, Any], source: str = "config",
             overrides: Sequence[str] = ()) -> Model:
    """Validate a raw mapping into `model`; an error names the source (`--set` for a key an override
    set) and the offending key, with a "did you mean" for an unknown one."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        overridden = [o.partition("=")[0].strip() for o in overrides]
        raise SpladeError(format_error(exc, source, model=model, overridden=overridden)) from None


def load_yaml_model(model: type[Model], path: str | Path, overrides: Sequence[str] = ()) -> Model:
    """Read a YAML file (see `find_config`), apply `key=value` overrides and validate it into `model`."""
    path, raw = read_config(path)
    for override in overrides:
        apply_override(raw, override)
    return validate(model, raw, str(path), overrides)
