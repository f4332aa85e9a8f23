"""The loop's events: what a listener hears, in which order, and the best fields every run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config

import splade.trainer.loop as loop_module
from splade.model.card import read_card_facts
from splade.trainer.events import Listener, Listeners
from splade.trainer.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recorder(Listener):
    """Writes down each event it hears."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_train_begin(self, state, begin) -> None:  # noqa: ANN001
        self.events.append(("begin", (begin.total_batches, begin.done_batches)))

    def on_batch_end(self, state, phase) -> None:  # noqa: ANN001
        self.events.append(("batch", phase.index))

    def on_step_end(self, state, step) -> None:  # noqa: ANN001
        self.events.append(("step", (state.global_step, step.scalars is not None)))

    def on_evaluate(self, state, evaluation) -> None:  # noqa: ANN001
        self.events.append(("evaluate", (evaluation.kind, evaluation.record["best"])))

    def on_save(self, state, path) -> None:  # noqa: ANN001
        self.events.append(("save", path.name))

    def on_train_end(self, state) -> None:  # noqa: ANN001
        self.events.append(("end", state.global_step))

    def close(self) -> None:
        self.events.append(("close", None))


def _recording(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    real = loop_module.build_listeners

    def build(*args, **kwargs) -> Listeners:  # noqa: ANN002, ANN003
        listeners = real(*args, **kwargs)
        listeners.listeners.append(recorder)  # after the selection: the entry is complete
        return listeners

    monkeypatch.setattr(loop_module, "build_listeners", build)
    return recorder


def test_a_listener_hears_the_run_in_order(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    recorder = _recording(monkeypatch)
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.num_epochs=2",
        "curriculum_phases=[]",
        "training.logging_steps=2",
        "training.save_steps=4",
        "output.tensorboard=false",
    )
    result = train(cfg)
    names = [name for name, _ in recorder.events]
    assert names[0] == "begin" and names[-2:] == ["end", "close"]
    assert recorder.events[0] == ("begin", (12, 0))  # 2 epochs of 6 micro-batches
    assert names.count("batch") == 12 and names.count("step") == 12 == result.global_step
    logged = [value[0] for name, value in recorder.events if name == "step" and value[1]]
    assert logged == [1, 2, 4, 6, 8, 10, 12]
    evaluations = [v for n, v in recorder.events if n == "evaluate"]
    assert [kind for kind, _ in evaluations] == ["epoch", "epoch"] and evaluations[0][1] is True
    saves = [v for n, v in recorder.events if n == "save"]
    # step 12 is a save step and the epoch's end: both save (the second rewrites the first)
    assert saves == ["checkpoint_4", "checkpoint_6", "checkpoint_8", "checkpoint_12", "checkpoint_12"]
    # the epoch's evaluation comes before its checkpoint, and the step's checkpoint before its step event
    assert names.index("evaluate") < names.index("save", names.index("save") + 1)
    assert recorder.events.index(("save", "checkpoint_4")) < recorder.events.index(("step", (4, True)))
    assert "validate" in capfd.readouterr().err  # validation shows its own progress bar


def test_a_run_that_selected_nothing_records_the_last_weights_as_best(tiny_model_dir: Path, tmp_path: Path):
    cfg = tiny_config(tmp_path, tiny_model_dir, "training.max_steps=0", "output.tensorboard=false")
    result = train(cfg)
    assert result.summary["monitored"] == "last" and result.summary["best_step"] == 0
    assert result.summary["best_value"] is None
    history = json.loads((result.output_dir / "training_history.json").read_text())
    assert (history["monitored"], history["best_step"], history["best_epoch"]) == ("last", 0, 1)
    facts = read_card_facts(result.best_model_dir)
    assert facts["training"]["weights"].startswith("the last ones, step 0") and not facts.get("dev")


def test_the_result_reports_the_best_value_as_measured(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path, tiny_model_dir, "training.num_epochs=3", "curriculum_phases=[]", "output.tensorboard=false"
    )
    result = train(cfg)
    summary = result.summary
    assert summary["monitored"] == "val/mrr" and summary["higher_is_better"] is True
    best = [h for h in result.history if h["best"]][-1]
    assert summary["best_value"] == pytest.approx(best["val"]["mrr"])
    assert summary["best_value"] == pytest.approx(max(h["val"]["mrr"] for h in result.history))
    history = json.loads((result.output_dir / "training_history.json").read_text())
    assert history["best_value"] == pytest.approx(summary["best_value"])
    assert history["best_step"] == summary["best_step"] == best["global_step"]
