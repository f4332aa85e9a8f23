"""`model.expansion_weight`: terms a text does not contain weigh a fixed share of what they would in plain
SPLADE; the text's own tokens keep their weight. Saved with the model and served the same by every
encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from splade.encoders import load_encoder
from splade.errors import SpladeError
from splade.model import SpladeModel
from splade.model.artifact import SPLADE_CONFIG_NAME, SpladeArtifact

TEXTS = ["당뇨병 치료 방법", "diabetes treatment and prevention", "서울 커피 coffee"]


def test_expansion_terms_weigh_the_share_and_own_tokens_keep_theirs(tiny_model_dir: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        plain = model(batch["input_ids"], batch["attention_mask"])
        model.expansion_weight = 0.5
        gated = model(batch["input_ids"], batch["attention_mask"])
    own = torch.zeros_like(plain, dtype=torch.bool)
    for row, (ids, mask) in enumerate(zip(batch["input_ids"], batch["attention_mask"], strict=True)):
        own[row, ids[mask.bool()]] = True
    assert (plain[~own] > 0).any(), "the tiny model expands: the test needs expansion terms"
    torch.testing.assert_close(gated[own], plain[own])
    torch.testing.assert_close(gated[~own], 0.5 * plain[~own])


def test_the_weight_is_saved_served_by_torch_and_onnx_and_not_offered_to_sentence_transformers(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.config.export import ExportConfig
    from splade.export.onnx_export import export_onnx

    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.expansion_weight = 0.5
    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / SPLADE_CONFIG_NAME).read_text())["expansion_weight"] == 0.5
    assert not (tmp_path / "model" / "modules.json").exists()  # sentence-transformers has no such weight
    assert SpladeModel.from_pretrained(tmp_path / "model").expansion_weight == 0.5
    export_onnx(ExportConfig(checkpoint=tmp_path / "model", out=tmp_path / "onnx"))
    served = load_encoder(tmp_path / "model", device="cpu").encode(TEXTS).to_dense()
    exported = load_encoder(tmp_path / "onnx", device="cpu").encode(TEXTS).to_dense()
    plain = load_encoder(tiny_model_dir, device="cpu").encode(TEXTS).to_dense()
    np.testing.assert_allclose(exported, served, atol=1e-5)
    assert not np.allclose(served, plain, atol=1e-5)


def test_older_folders_and_bad_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / SPLADE_CONFIG_NAME).read_text())
    config.pop("expansion_weight", None)
    (folder / SPLADE_CONFIG_NAME).write_text(json.dumps({**config, "use_expansion": False}))
    assert SpladeArtifact.read(folder).expansion_weight == 0.0  # written before the weight: own tokens only
    (folder / SPLADE_CONFIG_NAME).write_text(json.dumps({**config, "expansion_weight": 2}))
    with pytest.raises(SpladeError, match=f"^{folder / SPLADE_CONFIG_NAME}: expansion_weight 2 is not in"):
        SpladeArtifact.read(folder)
