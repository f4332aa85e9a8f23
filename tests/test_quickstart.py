"""The README's main job: every stage on the bundled sample, end to end (kept small)."""

from __future__ import annotations

import json

import numpy as np

from splade.encoders import load_encoder
from splade.indexer.local import LocalSparseIndex
from splade.quickstart import run_quickstart


def test_quickstart_runs_every_stage_on_the_bundled_sample(tmp_path):
    out = tmp_path / "qs"
    lines: list[str] = []
    result = run_quickstart(out, overrides=["data.epoch_size=32", "data.batch_size=16"], vocab_size=1500,
                            say=lines.append)

    assert [line[:5] for line in lines if line.startswith("[")] == [f"[{i}/6]" for i in range(1, 7)]
    history = json.loads((out / "train" / "training_history.json").read_text())
    assert [epoch["phase"] for epoch in history["epochs"]] == [1, 2, 3]  # the 3-phase curriculum
    assert (result.model_dir / "splade_config.json").is_file()

    encoder = load_encoder(result.onnx_dir)
    assert encoder.backend == "onnx"
    index = LocalSparseIndex.open(result.index_dir, expected=None)
    assert index.count() == 2126
    # the ONNX export is the same model as its checkpoint: the index accepts both
    assert load_encoder(result.model_dir).model_name == encoder.model_name == index.metadata.model_name
    # the trained folder and its export load in sentence-transformers, which computes the same vectors
    from sentence_transformers import SparseEncoder

    texts = ["당뇨병 치료 방법", "coffee is good for health"]
    for folder in (result.model_dir, result.onnx_dir):
        theirs = SparseEncoder(str(folder), device="cpu").encode(texts, convert_to_tensor=True).to_dense()
        assert np.allclose(theirs.numpy(), load_encoder(folder).encode(texts).to_dense(), atol=1e-3)

    names = [row["name"] for row in result.systems]
    assert names == ["bm25", "splade-quickstart"]
    for row in result.systems:
        assert 0.0 <= row["ndcg@10"] <= 1.0 and row["avg_query_terms"] > 0
    assert result.report.is_file() and (result.report.parent / "report.md").is_file()
