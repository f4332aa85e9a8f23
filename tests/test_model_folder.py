"""A model folder without weights, or with a damaged weight or graph file, is one line naming the folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from splade.errors import SpladeError
from splade.model.folder import check_model_folder


def copy_without_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return dst


def truncated_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    return dst


def starts(folder: Path, text: str) -> str:
    """A pattern for an error that starts with `folder: text`."""
    return "^" + re.escape(f"{folder}: {text}")


def test_a_good_checkpoint_passes(tiny_model_dir: Path) -> None:
    check_model_folder(tiny_model_dir)


def test_missing_and_truncated_weights_name_the_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    empty = copy_without_weights(tiny_model_dir, tmp_path / "empty")
    with pytest.raises(SpladeError, match=starts(empty, "no model weights (model.safetensors or ")):
        check_model_folder(empty)
    cut = truncated_copy(tiny_model_dir, tmp_path / "cut")
    damaged = starts(cut, "model.safetensors is damaged (truncated: ") + r"[\d,]+ bytes, its header needs "
    damaged += r"[\d,]+\)$"
    with pytest.raises(SpladeError, match=damaged):
        check_model_folder(cut)
    (cut / "config.json").unlink()
    with pytest.raises(SpladeError, match=r"not a model folder \(no config.json\)"):
        check_model_folder(cut)
    with pytest.raises(SpladeError, match="model folder not found"):
        check_model_folder(tmp_path / "nothing")


def test_shards_and_pytorch_bin_are_checked(tiny_model_dir: Path, tmp_path: Path) -> None:
    sharded = copy_without_weights(tiny_model_dir, tmp_path / "sharded")
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    shutil.copy(tiny_model_dir / "model.safetensors", sharded / "model-00001-of-00002.safetensors")
    with pytest.raises(SpladeError, match=re.escape("names missing weight files (model-00002-of-00002")):
        check_model_folder(sharded)

    legacy = copy_without_weights(tiny_model_dir, tmp_path / "bin")
    torch.save({"w": torch.zeros(1000)}, legacy / "pytorch_model.bin")
    check_model_folder(legacy)
    data = (legacy / "pytorch_model.bin").read_bytes()
    (legacy / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(SpladeError, match=r"pytorch_model.bin is damaged \(truncated"):
        check_model_folder(legacy)


def test_every_stage_that_loads_a_model_says_so_in_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from splade.cli import _register_all, app
    from splade.encoders import load_encoder
    from splade.evaluation.systems import SpladeSystem
    from splade.model import SpladeModel

    cut = truncated_copy(tiny_model_dir, tmp_path / "cut")
    expected = f"{cut}: model.safetensors is damaged"
    for load in (lambda: load_encoder(cut), lambda: SpladeModel.from_pretrained(cut),  # index, train
                 lambda: SpladeSystem("s", cut)):  # eval
        with pytest.raises(SpladeError, match="^" + re.escape(expected)):
            load()
    _register_all()
    result = CliRunner().invoke(app, ["export", str(cut), "--out", str(tmp_path / "onnx")])
    assert isinstance(result.exception, SpladeError) and str(result.exception).startswith(expected)

    corpus = tmp_path / "beir"
    corpus.mkdir()
    (corpus / "corpus.jsonl").write_text('{"_id": "d1", "text": "one"}\n')
    command = ["index", "--model", str(cut), "--corpus", str(corpus), "--index", str(tmp_path / "idx")]
    proc = subprocess.run([sys.executable, "-m", "splade", *command], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {expected} (truncated")
    assert not (tmp_path / "idx").exists()  # the folder the lock needed is removed again


def test_a_damaged_onnx_graph_names_the_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.encoders import load_encoder

    folder = copy_without_weights(tiny_model_dir, tmp_path / "onnx")
    (folder / "model.onnx").write_bytes(b"not a graph" * 10)
    with pytest.raises(SpladeError, match=starts(folder, "model.onnx is damaged or unreadable (")):
        load_encoder(folder)
