"""The guide's v22 and v23 configurations run as written (only model, data and output paths swapped)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from splade.config import load_config
from splade.data.sample import sample_dir
from splade.trainer.loop import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _sample_slice(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "train.jsonl"
    with (sample_dir() / "train.jsonl").open(encoding="utf-8") as src:
        path.write_text("".join(itertools.islice(src, rows)), encoding="utf-8")
    return path


@pytest.mark.parametrize("version", ["v22", "v23"])
def test_guide_config_trains_as_written(version, tiny_model_dir, tmp_path, request):
    overrides = []
    if version == "v23":  # knowledge distillation needs its dense teacher
        me5 = request.getfixturevalue("me5_dir")
        overrides += [f"loss.teacher.name={me5}", "loss.teacher.max_length=32"]
    train_file = _sample_slice(tmp_path, 48)
    cfg = load_config(CONFIGS / f"train_{version}.yaml", [
        f"model.name={tiny_model_dir}",
        f"data.train_files=[{train_file}]",
        f"data.val_files=[{train_file}]",
        "data.batch_size=8",
        "training.max_steps=3",
        f"output.dir={tmp_path / 'out'}",
        *overrides,
    ])
    written = load_config(CONFIGS / f"train_{version}.yaml")
    assert cfg.loss == written.loss.model_copy(update={"teacher": cfg.loss.teacher})  # the guide's weights
    assert cfg.curriculum_phases == written.curriculum_phases

    result = train(cfg)

    assert result.global_step == 3
    history = json.loads((tmp_path / "out" / "training_history.json").read_text())
    assert history["epochs"][0]["temperature"] == written.curriculum_phases[0].temperature
    components = {k for k in history["epochs"][0]["train"] if k.startswith("loss_")}
    expected = {"loss_infonce", "loss_self", "loss_positive", "loss_margin", "loss_flops", "loss_min_act"}
    assert expected <= components
    if version == "v23":
        assert "loss_kd" in components
    assert (result.best_model_dir / "splade_config.json").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize("version", ["v22", "v23"])
def test_make_targets_of_the_guide_run_the_trainer(version: str) -> None:
    """`make train-vXX`, `-bg`, `logs-` and `tensorboard-` resolve to the right commands (dry run)."""
    targets = [f"train-{version}", f"train-{version}-bg", f"logs-{version}", f"tensorboard-{version}"]
    dry = subprocess.run(["make", "-n", "-W", "pyproject.toml", *targets], cwd=CONFIGS.parent,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"splade train {version} --config configs/train_{version}.yaml" in dry.stdout
    assert f"nohup .venv/bin/splade train {version}" in dry.stdout
    assert f"tail -f outputs/train_{version}.log" in dry.stdout
    assert f"tensorboard --logdir outputs/train_{version}/tensorboard" in dry.stdout
