"""Resume: a run killed mid-epoch and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from splade.config import load_config
from splade.errors import SpladeError
from splade.quickstart import QUICKSTART_CONFIG
from splade.trainer import checkpoints as ckpt
from splade.trainer.budget import Budget
from splade.trainer.loop import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PAIRS = [
    ("당뇨병 치료", "diabetes mellitus treatment"),
    ("고혈압 예방", "hypertension prevention"),
    ("서울 수도", "Seoul is the capital of Korea"),
    ("커피 건강", "coffee is good for health"),
]


class Killed(Exception):
    """Stands in for the process being killed."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path: Path, model_dir: Path, out: str, *extra: str):
    data = tmp_path / "train.jsonl"
    if not data.exists():
        rnd = random.Random(0)
        lines = []
        for i in range(12):
            query, positive = PAIRS[i % 4]
            negative = rnd.choice([p for _, p in PAIRS if p != positive])
            lines.append(
                json.dumps(
                    {
                        "query": query,
                        "positive": positive,
                        "negative": negative,
                        "pair_type": ["single_term", "multi_term"][i % 2],
                        "difficulty": ["easy", "hard", "easy"][i % 3],
                    },
                    ensure_ascii=False,
                )
            )
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(
        QUICKSTART_CONFIG,
        [
            f"model.name={model_dir}",
            "model.dropout=0.1",
            f"data.train_files=[{data}]",
            f"data.val_files=[{data}]",
            "data.batch_size=3",
            "data.epoch_size=null",
            "data.max_length=12",
            "training.num_epochs=2",
            "training.save_steps=3",
            "training.save_total_limit=10",
            "training.learning_rate=1e-3",
            "output.tensorboard=false",
            f"output.dir={tmp_path / out}",
            *extra,
        ],
    )


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model" / "model.safetensors"))


def _kill_at(step: int):
    def callback(global_step: int) -> None:
        if global_step == step:
            raise Killed

    return callback


def test_killed_mid_epoch_and_resumed_matches_uninterrupted(tiny_model_dir: Path, tmp_path: Path) -> None:
    full = train(_config(tmp_path, tiny_model_dir, "full"))
    assert full.global_step == 8  # 2 epochs x 4 batches

    cfg = _config(tmp_path, tiny_model_dir, "killed")
    with pytest.raises(Killed):
        train(cfg, step_callback=_kill_at(7))
    latest = ckpt.latest_checkpoint(cfg.output.dir)
    info = ckpt.read_info(latest)
    assert latest.name == "checkpoint_6" and info["epoch"] == 2 and info["batch_in_epoch"] == 2  # mid-epoch
    resumed = train(cfg, resume=True)
    assert resumed.global_step == 8

    expected, got = _weights(full.output_dir / "checkpoint_8"), _weights(resumed.output_dir / "checkpoint_8")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    assert [h["train"]["loss"] for h in resumed.history] == pytest.approx(
        [h["train"]["loss"] for h in full.history]
    )
    assert [h["val"]["loss"] for h in resumed.history] == pytest.approx(
        [h["val"]["loss"] for h in full.history]
    )

    # resuming from an explicit earlier checkpoint (mid-epoch 1) replays to the same end
    again = train(cfg, resume_from=cfg.output.dir / "checkpoint_3")
    for name, value in _weights(again.output_dir / "checkpoint_8").items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_crash_while_saving_keeps_the_previous_checkpoint(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "crash", "training.num_epochs=1")
    real_save = torch.save
    calls = {"optimizer": 0}

    def failing_save(obj, path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if Path(path).name == "optimizer.pt":
            calls["optimizer"] += 1
            if calls["optimizer"] == 2:
                raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(cfg)
    out = cfg.output.dir
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint_3"]
    assert not [p for p in out.iterdir() if p.name.startswith(".checkpoint")]  # no half-written folder
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert train(cfg, resume=True).global_step == 4


def test_resume_errors_and_fresh_start(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "fresh", "training.max_steps=1")
    with pytest.raises(SpladeError, match="not a complete checkpoint"):
        train(cfg, resume_from=tmp_path)
    assert train(cfg, resume=True).global_step == 1  # nothing to resume: starts from scratch


def test_a_step_budget_shrinks_the_whole_schedule_and_resumes_exactly(tiny_model_dir: Path, tmp_path: Path):
    """`max_steps` is a budget: every epoch shrinks alike, so all epochs (and their phases) fit in it, and a
    run killed inside it resumes to the same weights."""
    full = train(_config(tmp_path, tiny_model_dir, "budget", "training.max_steps=4"))
    assert full.global_step == 4 and [h["epoch"] for h in full.history] == [1, 2]  # 2 epochs of 2 steps
    cfg = _config(tmp_path, tiny_model_dir, "killed-budget", "training.max_steps=4")
    with pytest.raises(Killed):
        train(cfg, step_callback=_kill_at(3))
    info = ckpt.read_info(ckpt.latest_checkpoint(cfg.output.dir))
    assert (info["global_step"], info["epoch"], info["batch_in_epoch"]) == (3, 2, 1)  # mid-epoch 2
    resumed = train(cfg, resume=True)
    assert resumed.global_step == 4
    expected, got = _weights(full.output_dir / "checkpoint_4"), _weights(resumed.output_dir / "checkpoint_4")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    odd = train(_config(tmp_path, tiny_model_dir, "odd", "training.max_steps=3"))  # stops inside epoch 2
    assert odd.global_step == 3 and odd.history[-1]["partial"]


def test_no_budget_trains_nothing_and_keeps_the_start(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = train(_config(tmp_path, tiny_model_dir, "start", "training.max_steps=0"))
    assert result.global_step == 0 and (result.best_model_dir / "splade_config.json").is_file()


def test_early_stop_is_saved_and_a_resume_does_not_train_again(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(
        tmp_path,
        tiny_model_dir,
        "stop",
        "training.num_epochs=3",
        "training.early_stopping_patience=1",
        "training.early_stopping_min_delta=1e9",  # no epoch after the first can improve
    )
    first = train(cfg)
    assert first.stopped_early and first.global_step == 8 and len(first.history) == 2
    assert ckpt.read_info(first.last_checkpoint)["stopped_early"] is True
    with caplog.at_level("WARNING"):
        again = train(cfg, resume=True)
    assert again.stopped_early and again.global_step == 8 and len(again.history) == 2
    assert not (cfg.output.dir / "checkpoint_12").exists()
    assert any("already stopped early after epoch 2" in r.getMessage() for r in caplog.records)


def test_a_run_the_clock_ended_is_finished_on_resume(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `max_minutes` run whose plan was too hopeful is stopped by the clock; a resume does not train on
    to the planned steps (the budget is spent), but a resume that sets `max_steps` may."""
    monkeypatch.setattr(Budget, "plan", lambda *args: 100_000)  # far more steps than 3 seconds allow
    cfg = _config(tmp_path, tiny_model_dir, "clock", "training.max_minutes=0.05", "training.num_epochs=5000",
                  "training.save_steps=1")  # every step checkpointed before the clock is read
    first = train(cfg)
    assert 0 < first.global_step < 5000 * 4  # the clock ended it, not the epochs
    state = ckpt.load_trainer_state(first.last_checkpoint)
    assert state.out_of_time and state.planned_steps == 100_000
    with caplog.at_level("WARNING"):
        again = train(cfg, resume=True)
    assert again.global_step == first.global_step
    assert any("already spent its training.max_minutes budget" in r.getMessage() for r in caplog.records)
    more = _config(tmp_path, tiny_model_dir, "clock", "training.max_minutes=0.05", "training.num_epochs=5000",
                   f"training.max_steps={first.global_step + 1}")
    assert train(more, resume=True).global_step == first.global_step + 1


def test_resume_with_other_batching_settings_warns(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(Killed):
        train(_config(tmp_path, tiny_model_dir, "changed", "training.max_steps=4"), step_callback=_kill_at(3))
    first = ckpt.latest_checkpoint(tmp_path / "changed")
    info = ckpt.read_info(first)
    assert info["resume_settings"]["data.batch_size"] == 3 and len(info["resume_settings_hash"]) == 16
    with caplog.at_level("WARNING"):
        same = _config(tmp_path, tiny_model_dir, "changed", "training.max_steps=4")
        train(same, resume=True)
    assert not [r for r in caplog.records if "differ from the checkpoint" in r.getMessage()]
    with caplog.at_level("WARNING"):
        other = _config(tmp_path, tiny_model_dir, "changed", "training.max_steps=4", "data.batch_size=4")
        train(other, resume=True)
    warned = [r.getMessage() for r in caplog.records if "differ from the checkpoint" in r.getMessage()]
    assert len(warned) == 1 and "data.batch_size 3 -> 4" in warned[0] and "\n" not in warned[0]
