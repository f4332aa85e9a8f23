"""Every input path of a training or data-build config, checked before any work starts.

A missing file found after minutes of tokenizing is a dead end; here all missing inputs are named at
once, each with its config key and the option that overrides it (`--set KEY=...`, or the verb's own
option). A model name counts as a path when it looks like one (starts with `/`, `.` or `~`, or has two
or more `/`); `org/name` is a hub id and is left to the loader.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from splade.errors import SpladeError


def looks_local(name: str) -> bool:
    """Whether a model name is a local path rather than a hub id (`org/name`)."""
    return name.startswith(("/", ".", "~")) or name.count("/") >= 2 or Path(name).exists()


def _missing(items: Iterable[tuple[str, str | Path | None, str]]) -> list[str]:
    return [f"{key}: {path} not found ({how})" for key, path, how in items
            if path is not None and not Path(path).expanduser().exists()]


def train_inputs(cfg: Any) -> list[tuple[str, str | Path | None, str]]:
    """`(config key, path, how to override it)` of every input a `TrainConfig` names."""
    def files(key: str, paths: list[Path]) -> list[tuple[str, Path, str]]:
        return [(f"{key}[{i}]" if len(paths) > 1 else key, p, f"--set {key}=[...]")
                for i, p in enumerate(paths)]

    items: list[tuple[str, str | Path | None, str]] = []
    if looks_local(cfg.model.name):
        items.append(("model.name", cfg.model.name, "--set model.name=PATH_OR_HUB_ID"))
    items += files("data.train_files", cfg.data.train_files) + files("data.val_files", cfg.data.val_files)
    items += files("dev.sets", cfg.dev.sets)
    items.append(("loss.idf_corpus", cfg.loss.idf_corpus, "--set loss.idf_corpus=PATH or null"))
    teacher = cfg.loss.teacher
    if teacher is not None and cfg.loss.lambda_kd and looks_local(teacher.name):
        items.append(("loss.teacher.name", teacher.name, "--set loss.teacher.name=PATH_OR_HUB_ID"))
    return items


def build_inputs(cfg: Any) -> list[tuple[str, str | Path | None, str]]:
    """`(config key, path, how to override it)` of every input a data `BuildConfig` names."""
    items: list[tuple[str, str | Path | None, str]] = []
    for i, source in enumerate(cfg.sources):
        if source.type != "hub":
            how = f"--{source.type} PATH, or a --config whose sources exist"
            items.append((f"sources[{i}] ({source.label})", source.path, how))
    if cfg.mining.model is not None:
        items.append(("mining.model", cfg.mining.model, "--mine-with FOLDER"))
    return items


def check_inputs(items: Iterable[tuple[str, str | Path | None, str]], source: str) -> None:
    """Raise one `SpladeError` naming every missing input, or return."""
    missing = _missing(items)
    if missing:
        more = f" (and {len(missing) - 1} more: {'; '.join(missing[1:])})" if len(missing) > 1 else ""
        raise SpladeError(f"{source}: {missing[0]}{more}")
