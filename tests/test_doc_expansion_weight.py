"""`model.doc_expansion_weight`: documents are served with their expansion terms at a weight of their own,
queries as trained. Saved with the model; every encoder, the ONNX export, the OpenSearch package and dev
selection serve documents at it."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from pydantic import ValidationError

from splade.config.train import ModelConfig
from splade.encoders import load_encoder
from splade.errors import SpladeError
from splade.model import SpladeModel
from splade.model.artifact import SPLADE_CONFIG_NAME, SpladeArtifact
from splade.trainer.setup import load_model

TEXTS = ["당뇨병 치료 방법", "diabetes treatment and prevention", "서울 커피 coffee"]


def _own_mask(model: SpladeModel, batch: dict[str, torch.Tensor], width: int) -> torch.Tensor:
    own = torch.zeros(len(batch["input_ids"]), width, dtype=torch.bool)
    for row, (ids, mask) in enumerate(zip(batch["input_ids"], batch["attention_mask"], strict=True)):
        own[row, ids[mask.bool()]] = True
    return own


def test_documents_weigh_expansion_at_their_own_weight_and_queries_as_trained(tiny_model_dir: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    model.expansion_weight, model.doc_expansion_weight = 0.5, 0.25
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        trained = model(batch["input_ids"], batch["attention_mask"])
        documents = model.encode_document_ids(batch["input_ids"], batch["attention_mask"])
        queries = model.encode_query_ids(batch["input_ids"], batch["attention_mask"])
    own = _own_mask(model, batch, model.vocab_size)
    assert (trained[~own] > 0).any(), "the tiny model expands: the test needs expansion terms"
    torch.testing.assert_close(documents[own], trained[own])
    torch.testing.assert_close(documents[~own], 0.5 * trained[~own])
    torch.testing.assert_close(queries, trained)


def test_saved_and_served_alike_by_torch_onnx_and_the_opensearch_package(tiny_model_dir: Path,
                                                                         tmp_path: Path) -> None:
    from splade.config.export import ExportConfig
    from splade.export.onnx_export import export_onnx
    from splade.export.opensearch_package import build_ml_commons_package

    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.expansion_weight, model.doc_expansion_weight = 0.5, 0.25
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / SPLADE_CONFIG_NAME).read_text())
    assert saved["doc_expansion_weight"] == 0.25 and saved["model_id"].endswith("-doc-expansion-0.25")
    assert not (tmp_path / "model" / "modules.json").exists()  # sentence-transformers has no such weight
    assert SpladeModel.from_pretrained(tmp_path / "model").doc_expansion_weight == 0.25
    export_onnx(ExportConfig(checkpoint=tmp_path / "model", out=tmp_path / "onnx"))

    torch_encoder = load_encoder(tmp_path / "model", backend="torch", device="cpu")
    onnx_encoder = load_encoder(tmp_path / "onnx", backend="onnx", device="cpu")
    documents = torch_encoder.encode_documents(TEXTS).to_dense()
    queries = torch_encoder.encode_queries(TEXTS).to_dense()
    np.testing.assert_allclose(onnx_encoder.encode_documents(TEXTS).to_dense(), documents, atol=1e-5)
    np.testing.assert_allclose(onnx_encoder.encode_queries(TEXTS).to_dense(), queries, atol=1e-5)
    batch = model.eval().tokenize(TEXTS, model.max_length)
    own = _own_mask(model, batch, model.vocab_size).numpy()
    np.testing.assert_allclose(documents[~own], 0.5 * queries[~own], atol=1e-6)
    np.testing.assert_allclose(documents[own], queries[own], atol=1e-6)

    package = build_ml_commons_package(tmp_path / "model", tmp_path / "opensearch", name="docs")
    traced = torch.jit.load(io.BytesIO(zipfile.ZipFile(package).read("docs.pt")))
    with torch.no_grad():
        out = traced({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})["output"]
    np.testing.assert_allclose(out.numpy(), documents, atol=1e-5)  # ingest encodes documents as served


def test_training_saves_it_and_dev_selection_serves_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.encoders.torch_backend import TorchEncoder

    weights = ("model.expansion_weight=0.5", "model.doc_expansion_weight=0.2")
    cfg = tiny_config(tmp_path, tiny_model_dir, *weights)
    model = load_model(cfg, None, torch.device("cpu"))
    assert model.doc_expansion_weight == 0.2
    assert TorchEncoder.from_model(model).document_expansion_ratio == pytest.approx(0.4)
    model.save_pretrained(tmp_path / "saved")
    assert SpladeArtifact.read(tmp_path / "saved").document_expansion_ratio == pytest.approx(0.4)


def test_an_inference_free_model_serves_its_documents_as_trained(tiny_model_dir: Path,
                                                                 tmp_path: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.expansion_weight, model.doc_expansion_weight = 0.5, 0.25
    assert model.document_expansion_ratio == pytest.approx(0.5)
    model.set_query_weights(torch.ones(model.vocab_size))
    assert model.document_expansion_ratio is None  # its queries do not expand: documents carry it all
    model.save_pretrained(tmp_path / "doc-only")
    assert "doc_expansion_weight" not in json.loads((tmp_path / "doc-only" / SPLADE_CONFIG_NAME).read_text())
    assert load_encoder(tmp_path / "doc-only", backend="torch", device="cpu").document_expansion_ratio is None


def test_bad_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="expansion_weight 0 has no expansion"):
        ModelConfig(name="m", expansion_weight=0.0, doc_expansion_weight=0.5)
    with pytest.raises(ValidationError):
        ModelConfig(name="m", expansion_weight=0.5, doc_expansion_weight=0.0)
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / SPLADE_CONFIG_NAME).read_text())
    (folder / SPLADE_CONFIG_NAME).write_text(json.dumps({**config, "expansion_weight": 0.5,
                                                         "doc_expansion_weight": 1.5}))
    with pytest.raises(SpladeError, match=f"^{folder / SPLADE_CONFIG_NAME}: doc_expansion_weight 1.5 is not"):
        SpladeArtifact.read(folder)
    (folder / SPLADE_CONFIG_NAME).write_text(json.dumps({**config, "expansion_weight": 0.5,
                                                         "doc_expansion_weight": 0.5}))
    assert SpladeArtifact.read(folder).document_expansion_ratio is None  # the same weight: as trained
