"""Training against bad checkpoints and folders: no code runs from a checkpoint, a new run never mixes
with an old one, a resume refuses overrides it cannot honour, and disk full / damage are one line."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch
from conftest import cli, error_line
from test_resume import _config

from splade.errors import SpladeError
from splade.trainer import checkpoints as ckpt
from splade.trainer.loop import train

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("one_torch_thread")]


class RunsCode:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def one_line(err: pytest.ExceptionInfo[SpladeError]) -> str:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def md5(folder: Path) -> str:
    return hashlib.md5((folder / "model.safetensors").read_bytes()).hexdigest()


def test_a_crafted_trainer_state_is_refused_and_runs_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "crafted", "training.max_steps=1")
    first = train(cfg)
    state = first.last_checkpoint / ckpt.STATE_NAME
    marker = tmp_path / "ran"
    torch.save({"state": {}, "rng": RunsCode(marker)}, state)
    for kwargs in ({"resume": True}, {"resume_from": first.last_checkpoint}):
        with pytest.raises(SpladeError, match="refused to load") as err:
            train(_config(tmp_path, tiny_model_dir, "crafted", "training.max_steps=2"), **kwargs)
        assert "trainer_state.pt" in one_line(err) and "posix.system" in one_line(err)
    assert not marker.exists()
    with pytest.raises(SpladeError, match="refused to load"):
        ckpt.load_trainer_state(first.last_checkpoint)
    assert not marker.exists()


def test_a_truncated_trainer_state_is_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "truncated", "training.max_steps=1")
    state = train(cfg).last_checkpoint / ckpt.STATE_NAME
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(SpladeError, match="truncated or damaged") as err:
        train(_config(tmp_path, tiny_model_dir, "truncated", "training.max_steps=2"), resume=True)
    assert str(state) in one_line(err)


def test_a_new_run_into_an_old_runs_folder_is_refused_or_overwritten(tiny_model_dir: Path,
                                                                     tmp_path: Path) -> None:
    old = train(_config(tmp_path, tiny_model_dir, "reused", "training.max_steps=2"))
    old_best = md5(old.best_model_dir)
    old_checkpoints = [p.name for p in ckpt.list_checkpoints(old.output_dir)]
    with pytest.raises(SpladeError, match="--resume.*--overwrite") as err:
        train(_config(tmp_path, tiny_model_dir, "reused", "training.max_steps=1"))
    assert "previous run" in one_line(err)
    assert [p.name for p in ckpt.list_checkpoints(old.output_dir)] == old_checkpoints  # untouched
    with pytest.raises(SpladeError, match="--overwrite: .*cannot be combined"):
        train(_config(tmp_path, tiny_model_dir, "reused"), resume=True, overwrite=True)
    new = train(_config(tmp_path, tiny_model_dir, "reused", "training.max_steps=1",
                        "training.learning_rate=5e-2"), overwrite=True)
    assert [p.name for p in ckpt.list_checkpoints(new.output_dir)] == ["checkpoint_1"]
    assert md5(new.best_model_dir) != old_best
    assert ckpt.read_info(new.last_checkpoint)["global_step"] == 1


def test_a_resume_refuses_overrides_it_cannot_honour(tiny_model_dir: Path, tmp_path: Path) -> None:
    train(_config(tmp_path, tiny_model_dir, "overrides", "training.max_steps=1"))
    changed = _config(tmp_path, tiny_model_dir, "overrides", "training.max_steps=2",
                      "training.learning_rate=1e30")
    with pytest.raises(SpladeError, match=r"training.learning_rate 0.001 -> 1e\+30") as err:
        train(changed, resume=True)
    assert "max_steps" not in one_line(err).split("honours")[0]  # max_steps is honoured, not refused
    resumed = train(_config(tmp_path, tiny_model_dir, "overrides", "training.max_steps=2",
                            "training.logging_steps=1"), resume=True)
    assert resumed.global_step == 2


def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_last(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "full-disk", "training.num_epochs=1")
    real_save = torch.save
    calls = {"optimizer": 0}

    def filling_save(obj, path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if Path(path).name == "optimizer.pt":
            calls["optimizer"] += 1
            if calls["optimizer"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", filling_save)
    with pytest.raises(SpladeError, match="No space left on device") as err:
        train(cfg)
    assert "the last complete checkpoint is" in one_line(err) and "checkpoint_3" in one_line(err)
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert [p.name for p in ckpt.list_checkpoints(cfg.output.dir)] == ["checkpoint_3"]
    assert train(cfg, resume=True).global_step == 4



def test_cli_output_dir_naming_a_file_and_a_reused_folder_are_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("user data")
    assert "is a file, not a folder" in error_line(cli("train", "quickstart", "--output-dir", str(a_file)))
    run = tmp_path / "run"
    (run / "checkpoint_40").mkdir(parents=True)
    (run / "best_model").mkdir()
    line = error_line(cli("train", "quickstart", "--output-dir", str(run)))
    assert "--resume" in line and "--overwrite" in line and (run / "best_model").is_dir()


def test_cli_resume_with_a_learning_rate_override_is_one_line_naming_it(tmp_path: Path) -> None:
    from splade.atomic import write_json
    from splade.cli.train import default_config
    from splade.config import load_config

    run = tmp_path / "run"
    cfg = load_config(default_config("quickstart"), [f"output.dir={run}"])
    cfg = cfg.model_copy(update={"version": "quickstart"})
    checkpoint = run / "checkpoint_1"
    (checkpoint / "model").mkdir(parents=True)
    write_json(run / "train_config.json", cfg.model_dump(mode="json"))
    write_json(checkpoint / ckpt.INFO_NAME, {"global_step": 1})
    torch.save({"state": {}, "rng": {}}, checkpoint / ckpt.STATE_NAME)
    line = error_line(cli("train", "quickstart", "--output-dir", str(run), "--resume",
                          "--set", "training.learning_rate=1e30", "--max-steps", "5"))
    refused = line.split("honours")[0]
    assert "training.learning_rate" in refused and "1e+30" in refused and "max_steps" not in refused
