"""The output folder of a run: one run's files only, and a resume that keeps the run's settings.

- A new run into a folder holding another run's checkpoints or `best_model/` is refused unless
  `--overwrite` (which first removes that run's files), so two runs' files never mix.
- A resume honours the overrides in `RESUME_HONOURS` (how long to run, logging, evaluation cadence, device,
  threads, saving); `checkpoints.resume_settings` may change with a warning (the batches then differ from
  an uninterrupted run); any other setting that differs from the run's `train_config.json` is refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from splade.config import TrainConfig
from splade.errors import SpladeError, at_option, first_line
from splade.trainer import checkpoints as ckpt

log = logging.getLogger(__name__)
CONFIG_NAME = "train_config.json"
RUN_FILES = ("best_model", "training_history.json", CONFIG_NAME, "data_mix.json", "tensorboard")
_RUN_DIR = re.compile(r"^\.?checkpoint_\d+")  # complete checkpoints and the temporary folders of a save
RESUME_HONOURS = (
    "version", "output.", "training.max_steps", "training.logging_steps", "training.device",
    "training.num_threads", "training.save_steps", "training.save_total_limit", "training.compile",
    "dev.every_steps", "dev.batch_size", "data.skip_invalid", "data.cache_dir",
)


def run_files(out: Path) -> list[Path]:
    """The files and folders a run wrote into `out` (checkpoints, `best_model/`, history, ...)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name in RUN_FILES or _RUN_DIR.match(p.name))


def prepare_output_dir(out: Path, resume: bool, resume_from: Path | None, overwrite: bool) -> None:
    """Refuse a folder that would mix two runs' files; with `overwrite`, remove the old run's files first."""
    if out.exists() and not out.is_dir():
        raise at_option("--output-dir", f"{out} is a file, not a folder")
    if int(os.environ.get("RANK", "0")) != 0:
        return  # rank 0 checks (and clears) the folder for every process of a run
    own = resume_from is not None and out.resolve() in Path(resume_from).resolve().parents
    if overwrite and (resume or own):
        raise at_option("--overwrite", "removes the run in the output dir, so it cannot be combined with "
                                       "--resume or a --resume-from checkpoint inside it")
    found = run_files(out)
    if not found or own or (resume and ckpt.latest_checkpoint(out) is not None):
        return
    if overwrite:
        for path in found:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        log.warning("--overwrite: removed the previous run's files in %s", out)
        return
    names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
    why = "holds a previous run with no complete checkpoint" if resume else "holds a previous run"
    raise at_option("--output-dir", f"{out} {why} ({names}); continue it with --resume, replace it with "
                                    "--overwrite, or choose another --output-dir")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _honoured(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in RESUME_HONOURS)


def check_resume(checkpoint: Path, config: TrainConfig) -> None:
    """Before any work: the checkpoint's trainer state loads safely, and the config differs from the run's
    only in what a resume honours (one line naming the other keys)."""
    ckpt.safe_load(checkpoint / ckpt.STATE_NAME)
    saved_file = checkpoint.parent / CONFIG_NAME
    if not saved_file.is_file():
        return  # a checkpoint copied without its run's config: nothing to compare with
    try:
        saved = _flat(json.loads(saved_file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpladeError(f"{saved_file}: cannot be read ({first_line(exc)})") from None
    new = _flat(config.model_dump(mode="json"))
    warned = set(ckpt.resume_settings(config))  # changed with a warning (see warn_if_settings_changed)
    changed = [key for key in sorted(set(saved) | set(new))
               if saved.get(key) != new.get(key) and not _honoured(key) and key not in warned]
    if changed:
        shown = ", ".join(f"{k} {saved.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
        raise SpladeError(
            f"resuming from {checkpoint}: a resume keeps the run's settings, but these differ from "
            f"{saved_file.name}: {shown}{more}; drop those overrides, or start a new run (--overwrite or "
            "another --output-dir). A resume honours: max_steps, logging_steps, device, num_threads, "
            "save_steps, save_total_limit, dev.every_steps and the output settings")
