"""ONNX export: the whole SPLADE representation in the graph, dynamic axes, parity gate, variants, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path

from splade.config.export import ExportConfig
from splade.errors import SpladeError
from splade.export.onnx_export import export_onnx, load_for_export
from splade.export.parity import PARITY_TEXTS, Tolerance, topk_overlap
from splade.model import ExportGraph, SpladeModel

LONG_TEXTS = [
    "서울은 대한민국의 수도이다 " * 9,  # longer than the two-text example the graph was traced with
    "x",
    "neural sparse retrieval model for Korean and English search engines",
    "당뇨병",
    "coffee is good for health and 커피는 건강에 좋다",
]


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    report = export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=out, fp16=True, int8=True))
    return out, report


def _ort(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input_ids": ids, "attention_mask": mask})[0]


def test_export_writes_graphs_tokenizer_and_report(exported):
    out, report = exported
    for name in ("model.onnx", "model_fp16.onnx", "model_int8.onnx", "tokenizer.json", "splade_config.json",
                 "export_report.json"):
        assert (out / name).is_file(), name
    assert set(report.parity) == {"fp32", "fp16", "int8"}
    assert all(result.passed for result in report.parity.values())
    assert report.max_abs_diff < 1e-4 and report.topk_overlap == 1.0
    assert report.providers[0] == "CPUExecutionProvider"
    assert report.fusions.get("Attention", 0) >= 1  # the transformer optimizer fused the attention
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["parity"]["fp32"]["passed"] is True
    assert json.loads((out / "splade_config.json").read_text())["onnx"]["output_name"] == "output"


def test_graph_outputs_pooled_representation_for_new_batch_and_length(exported, tiny_model_dir):
    out, _ = exported
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    batch = model.tokenize(LONG_TEXTS)
    assert batch["input_ids"].shape[0] == 5 and batch["input_ids"].shape[1] > 12
    with torch.no_grad():
        reference = model(batch["input_ids"], batch["attention_mask"]).numpy()
    got = _ort(out / "model.onnx", batch["input_ids"].numpy(), batch["attention_mask"].numpy())
    assert got.shape == (5, model.vocab_size)  # [batch, vocab], not [batch, seq, vocab] logits
    assert np.abs(got - reference).max() < 1e-4
    assert (got >= 0).all()
    special = model.tokenizer.all_special_ids
    assert np.all(got[:, special] == 0)
    # padding must not leak into the pool: a text alone equals the same text padded in a batch
    alone = model.tokenize(["x"])
    single = _ort(out / "model.onnx", alone["input_ids"].numpy(), alone["attention_mask"].numpy())
    np.testing.assert_allclose(single[0], got[1], atol=1e-5)


def test_fp16_and_int8_graphs_stay_close(exported, tiny_model_dir):
    out, report = exported
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    batch = model.tokenize(LONG_TEXTS)
    with torch.no_grad():
        reference = model(batch["input_ids"], batch["attention_mask"]).numpy()
    ids, mask = batch["input_ids"].numpy(), batch["attention_mask"].numpy()
    half = _ort(out / "model_fp16.onnx", ids, mask)
    assert half.dtype == np.float32  # io types kept: int64 in, fp32 out
    assert np.abs(half - reference).max() < 0.1
    quant = _ort(out / "model_int8.onnx", ids, mask)
    assert topk_overlap(reference, quant, 16) >= 0.7
    assert report.parity["int8"].max_abs_diff > report.parity["fp32"].max_abs_diff  # really quantized


def test_export_graph_equals_model_forward(tiny_model_dir):
    model = load_for_export(tiny_model_dir)
    graph = ExportGraph(model).eval()
    assert model.decoder is not None  # the export pooling (one MatMul + ReduceMax) is the one traced
    batch = model.tokenize(list(PARITY_TEXTS))
    with torch.no_grad():
        np.testing.assert_allclose(graph(batch["input_ids"], batch["attention_mask"]).numpy(),
                                   model(batch["input_ids"], batch["attention_mask"]).numpy(), atol=1e-5)


def test_parity_failure_writes_nothing_and_keeps_old_export(exported, tiny_model_dir, tmp_path):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "export_report.json").write_text("{}")  # an earlier export
    with pytest.raises(SpladeError, match=r"parity.*max\|diff\|"):
        export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=out),
                    tolerances={"fp32": Tolerance(1e-12, 1.0)})
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json"]


@pytest.mark.parametrize(("kwargs", "option"), [
    ({"exporter": "tracer"}, "--exporter"), ({"opset": 7}, "--opset"), ({"tolerance": -1.0}, "--tolerance"),
])
def test_bad_options_are_user_errors(tiny_model_dir, tmp_path, kwargs, option):
    with pytest.raises(SpladeError, match=option):
        export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=tmp_path / "out", **kwargs))


def test_export_never_replaces_a_folder_it_did_not_write(tiny_model_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SpladeError, match="--out: .* is not an earlier export"):
        export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_dynamo_exporter_also_exports_a_correct_graph(tiny_model_dir, tmp_path):
    report = export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=tmp_path / "dyn", exporter="dynamo"))
    assert report.exporter == "dynamo" and report.parity["fp32"].passed
    assert report.max_abs_diff < 1e-4


def test_cli_export_and_encode(exported, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from splade.cli import main

    out = tmp_path / "cli"
    monkeypatch.setattr(sys, "argv", ["splade", "export", str(tiny_model_dir), "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    assert (out / "model.onnx").is_file()
    assert "fp32" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["splade", "encode", str(out), "당뇨병 치료", "--top-k", "3"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "onnxruntime CPU" in printed and "(3 terms)" in printed


def test_cli_bad_checkpoint_is_one_line_error(tmp_path, monkeypatch, capsys):
    from splade.cli import main

    argv = ["splade", "export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CHECKPOINT") and "\n" not in err


@pytest.mark.shared
def test_real_splade_tiny_parity_on_korean_and_english(splade_tiny_dir, tmp_path):
    texts = shared_path("data", "beir", "msmarco-koen", "corpus.jsonl")
    sample = tmp_path / "sample.jsonl"
    with texts.open(encoding="utf-8") as handle:
        sample.write_text("".join(line for line, _ in zip(handle, range(6), strict=False)), encoding="utf-8")
    report = export_onnx(ExportConfig(checkpoint=splade_tiny_dir, out=tmp_path / "onnx", parity_texts=sample))
    assert report.parity["fp32"].n_texts >= 20
    assert report.max_abs_diff < 1e-3 and report.topk_overlap >= 0.99
