"""No dead ends: `splade train quickstart` runs from an empty folder (packaged sample, base model built), and
every input path of a training or data-build config is checked before any work starts, each missing one
named with the option that overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from splade.cli import _register_all, app
from splade.errors import SpladeError

_register_all()


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_train_quickstart_from_an_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               one_torch_thread: None) -> None:
    from splade.data.sample import sample_dir

    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in sample_dir().iterdir())
    result = invoke("train", "quickstart", "--max-steps", "2", "--set", "data.epoch_size=32")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "building the quickstart base model" in result.output
    assert (tmp_path / "outputs" / "quickstart" / "base_model" / "config.json").is_file()
    assert (tmp_path / "outputs" / "quickstart" / "train" / "best_model" / "README.md").is_file()
    assert (tmp_path / "outputs" / "quickstart" / "cache").is_dir()
    assert sorted(p.name for p in sample_dir().iterdir()) == before  # nothing written into the package


def test_a_missing_model_folder_says_which_option_to_set(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "quickstart", "--set", "model.name=./my_model")
    assert isinstance(result.exception, SpladeError)
    assert "model.name: ./my_model not found (--set model.name=PATH_OR_HUB_ID)" in str(result.exception)


def test_v23_outside_a_checkout_names_every_missing_input_at_once(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "v23", "--set", "model.name=skt/A.X-Encoder-base")
    message = str(result.exception)
    assert isinstance(result.exception, SpladeError), result.output
    assert "train_v23.yaml: data.train_files" in message
    assert "not found (--set data.train_files=[...])" in message
    assert "dev.sets" in message and "more" in message
    assert "skt/A.X-Encoder-base" not in message  # a hub id is not a path


def test_data_build_checks_its_sources_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("data", "build", "--config", "data_ko.yaml", "--out", str(tmp_path / "data"))
    assert isinstance(result.exception, SpladeError)
    assert "data_ko.yaml: sources[0]" in str(result.exception) and "not found (--" in str(result.exception)
    assert not (tmp_path / "data").exists()
    result = invoke("data", "sample", "--out", str(tmp_path / "sample"))
    assert isinstance(result.exception, SpladeError)
    assert "The installed sample needs no rebuild" in str(result.exception)


def test_export_says_each_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = invoke("export", str(tiny_model_dir), "--out", str(tmp_path / "onnx"), "--int8")
    assert result.exit_code == 0, (result.output, result.exception)
    steps = ["loading", "tracing the ONNX graph", "parity check of the fp32 graph",
             "writing and checking the int8 graph", "saving the weights, tokenizer and model card"]
    positions = [result.output.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), result.output
