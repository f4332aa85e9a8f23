"""Checkpoints (guide 8.1): `checkpoint_N/` with the model (HF format), optimizer, scheduler, scaler,
trainer state (curriculum position, RNG states, position in the epoch) and `checkpoint_info.json`.

Each checkpoint is written into a temporary folder and renamed into place, so a crash while saving
leaves the previous checkpoints valid; only complete folders (with `checkpoint_info.json`) are resumed.
Checkpoint files are read with `torch.load(weights_only=True)`: tensors and plain values only, so a
crafted file cannot run code; anything else is refused with one line.
"""

from __future__ import annotations

import errno
import json
import logging
import pickle
import random
import re
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splade.atomic import atomic_dir, write_json
from splade.config import TrainConfig
from splade.errors import SpladeError, first_line
from splade.fingerprint import json_fingerprint as settings_hash

log = logging.getLogger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")
INFO_NAME = "checkpoint_info.json"
STATE_NAME = "trainer_state.pt"


@dataclass
class TrainerState:
    """Where the run is: resumed exactly from these numbers plus the RNG states."""

    global_step: int = 0  # optimizer steps done
    epoch: int = 1  # current 1-based epoch
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_metric: float | None = None  # the monitored value of the best evaluation (lower is better)
    best_epoch: int | None = None
    best_step: int | None = None
    best_phase: int | None = None
    monitored: str | None = None  # dev/ndcg@10, val/mrr or train/loss
    bad_epochs: int = 0  # evaluations since the best one (an evaluation per epoch unless dev.every_steps)
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # the dev.every_steps evaluations
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_sums: dict[str, float] = field(default_factory=dict)  # running sums for the epoch's averages
    skipped_lines: int = 0
    stopped_early: bool = False  # early stopping fired: a resume has nothing left to train
    planned_steps: int | None = None  # a `training.max_minutes` budget's steps, fixed when it was planned
    out_of_time: bool = False  # the `training.max_minutes` clock ended the run: a resume has nothing left


def rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        # plain values and a tensor, so that loading needs no numpy globals
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                       numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    output_dir: Path,
    model,
    optimizer,
    scheduler,
    scaler,
    state: TrainerState,  # noqa: ANN001
    info: dict[str, Any],
) -> Path:
    """Write `output_dir/checkpoint_<step>/` atomically and return its path."""
    target = output_dir / f"checkpoint_{state.global_step}"
    try:
        _write_checkpoint(target, model, optimizer, scheduler, scaler, state, info)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        kept = latest_checkpoint(output_dir)
        raise SpladeError(f"saving checkpoint {target} failed: {exc.strerror or first_line(exc)}; "
                          + (f"the last complete checkpoint is {kept}" if kept else "no checkpoint was saved")
                          ) from None
    return target


def _write_checkpoint(target: Path, model, optimizer, scheduler, scaler, state: TrainerState,  # noqa: ANN001
                      info: dict[str, Any]) -> None:
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        torch.save({"state": asdict(state), "rng": rng_states()}, tmp / STATE_NAME)
        write_json(
            tmp / INFO_NAME,
            {
                "global_step": state.global_step,
                "epoch": state.epoch,
                "batch_in_epoch": state.batch_in_epoch,
                **info,
            },
        )


def resume_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings an exact resume depends on (the epoch order and the micro-batch boundaries)."""
    data, training = config.data, config.training
    settings = {
        "data.batch_size": data.batch_size,
        "data.epoch_size": data.epoch_size,
        "data.max_length": data.max_length,
        "data.query_max_length": data.query_max_length,
        "data.document_window": data.document_window,
        "training.max_steps": training.max_steps,  # a budget shapes the schedule (it shrinks to fit)
        "data.train_files": [str(path) for path in data.train_files],
        "training.gradient_accumulation_steps": training.gradient_accumulation_steps,
        "training.seed": training.seed,
    }
    if data.neighbour_groups.size > 1:  # absent when off, so checkpoints from before it still match
        settings["data.neighbour_groups"] = data.neighbour_groups.model_dump()
    return settings


def warn_if_settings_changed(path: Path, settings: dict[str, Any]) -> str | None:
    """Log (and return) one warning line when checkpoint `path` was saved with other resume settings."""
    info = read_info(path)
    if info.get("resume_settings_hash", settings_hash(settings)) == settings_hash(settings):
        return None  # unchanged, or a checkpoint written before the hash existed
    saved = info.get("resume_settings") or {}
    changed = [f"{k} {saved.get(k)!r} -> {new!r}" for k, new in settings.items() if saved.get(k) != new]
    message = (
        f"resuming from {path} with settings that differ from the checkpoint's "
        f"({', '.join(changed) or 'settings hash differs'}): training continues but will not match an "
        "uninterrupted run"
    )
    log.warning(message)
    return message


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and (child / INFO_NAME).is_file() and (child / STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def rotate_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints."""
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def check_checkpoint(path: Path) -> Path:
    """`path` if it is a complete checkpoint, else a clear error."""
    if not (path / INFO_NAME).is_file() or not (path / STATE_NAME).is_file() or not (path / "model").is_dir():
        raise SpladeError(
            f"--resume-from {path}: not a complete checkpoint folder (needs model/, {INFO_NAME})"
        )
    return path


def _numpy_rng_globals() -> list[Any]:
    """What the numpy RNG state of checkpoints written before its plain form needs (an array of uint32)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def safe_load(file: Path, **kwargs: Any) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain values only (a pickled object that would run code
    is refused); a refused, truncated or damaged file is one line naming it."""
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            return torch.load(file, weights_only=True, **kwargs)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise SpladeError(f"{file}: refused to load: it holds an object other than tensors and plain "
                          f"values{what}, which could run code; it was not written by splade") from None
    except FileNotFoundError:
        raise SpladeError(f"{file}: missing (the checkpoint is incomplete)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise SpladeError(f"{file}: cannot be read, it is truncated or damaged ({first_line(exc)[:120]}); "
                          "resume from an earlier checkpoint") from None


def load_trainer_state(path: Path) -> TrainerState:
    """Read the trainer state and restore the RNG states saved with it."""
    payload = safe_load(path / STATE_NAME)
    try:
        state = TrainerState(**payload["state"])
        rng = payload["rng"]
    except (KeyError, TypeError) as exc:
        raise SpladeError(f"{path / STATE_NAME}: not a splade trainer state ({first_line(exc)})") from None
    restore_rng_states(rng)
    return state


def load_optim_states(path: Path, optimizer, scheduler, scaler, device: torch.device) -> None:  # noqa: ANN001
    optimizer.load_state_dict(safe_load(path / "optimizer.pt", map_location=device))
    scheduler.load_state_dict(safe_load(path / "scheduler.pt"))
    if scaler is not None and (path / "scaler.pt").is_file():
        scaler.load_state_dict(safe_load(path / "scaler.pt"))


def read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads((path / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpladeError(f"{path / INFO_NAME}: cannot be read ({first_line(exc)})") from None
    if not isinstance(info, dict):
        raise SpladeError(f"{path / INFO_NAME}: not a checkpoint description")
    return info
