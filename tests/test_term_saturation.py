"""`model.bm25`: every term of a text is multiplied by BM25's term-frequency part (an own token by its
count's, an expansion term by one occurrence's times the expansion weight). Saved with the model, served
the same by torch and ONNX, and set by training from its documents' average length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import served_alike_everywhere, tiny_config

from splade.errors import SpladeError
from splade.model import SpladeModel, TermSaturation
from splade.model.artifact import SPLADE_CONFIG_NAME, SpladeArtifact
from splade.model.card import CARD_NAME
from splade.model.term_weights import term_scales

TEXTS = ["당뇨병 치료 방법 치료 치료", "diabetes treatment and prevention", "서울 커피 coffee"]


def test_scales_are_bm25s_term_frequency_part_by_hand() -> None:
    ids = torch.tensor([[0, 5, 5, 6, 1], [0, 7, 1, 2, 2]])  # 0 CLS, 1 SEP, 2 PAD: special
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    keep = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    k1, b, average = 1.2, 0.75, 2.0
    scales = term_scales(ids, mask, keep, 0.5, TermSaturation(k1, b, average))
    big_k = k1 * (1 - b + b * 3 / average)  # row 0 holds 3 own tokens: 5, 5, 6
    assert scales[0, 5].item() == pytest.approx(2 * (k1 + 1) / (2 + big_k))
    assert scales[0, 6].item() == pytest.approx((k1 + 1) / (1 + big_k))
    assert scales[0, 4].item() == pytest.approx(0.5 * (k1 + 1) / (1 + big_k))  # expansion: half of tf 1
    short_k = k1 * (1 - b + b * 1 / average)
    assert scales[1, 7].item() == pytest.approx((k1 + 1) / (1 + short_k))
    assert scales[1, 7] > scales[0, 6]  # the shorter text weighs a single occurrence more
    at_average = term_scales(ids[1:], mask[1:], keep, 0.5, TermSaturation(k1, b, 1.0))
    assert at_average[0, 7].item() == pytest.approx(1.0)  # tf 1 at the average length: unchanged
    assert term_scales(ids, mask, keep, 1.0, None) is None  # plain SPLADE: nothing multiplies


def test_saved_and_served_by_torch_onnx_and_opensearch_without_sentence_transformers_files(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    model = SpladeModel.from_pretrained(tiny_model_dir)
    model.expansion_weight = 0.5
    model.term_saturation = TermSaturation(1.2, 0.75, 4.0)
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / SPLADE_CONFIG_NAME).read_text())
    assert saved["bm25"] == {"k1": 1.2, "b": 0.75, "average_length": 4.0}
    assert not (tmp_path / "model" / "modules.json").exists()  # sentence-transformers cannot compute it
    assert SpladeModel.from_pretrained(tmp_path / "model").term_saturation == model.term_saturation
    served = served_alike_everywhere(tmp_path / "model", tmp_path, TEXTS)
    model.term_saturation = None
    with torch.no_grad():
        gated = model.encode(TEXTS).numpy()
    assert not np.allclose(served, gated, atol=1e-3)


def test_a_bad_saved_bm25_object_is_one_line_naming_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / SPLADE_CONFIG_NAME).read_text())
    (folder / SPLADE_CONFIG_NAME).write_text(json.dumps({**config, "bm25": {"k1": 1.2, "b": 2.0,
                                                                             "average_length": 90}}))
    with pytest.raises(SpladeError, match=f"^{folder / SPLADE_CONFIG_NAME}: bm25 .*0 <= b <= 1"):
        SpladeArtifact.read(folder)


def test_training_sets_the_average_length_from_its_documents_and_saves_it(
        tiny_model_dir: Path, tmp_path: Path, one_torch_thread: None) -> None:
    from splade.trainer.loop import train

    config = tiny_config(tmp_path, tiny_model_dir, "model.bm25={k1: 0.9, b: 0.4}",
                         "model.expansion_weight=0.5", "training.max_steps=2", "output.tensorboard=false")
    result = train(config)
    model = SpladeModel.from_pretrained(result.output_dir / "best_model")
    saturation = model.term_saturation
    assert saturation is not None and (saturation.k1, saturation.b) == (0.9, 0.4)
    # the tiny triplets' documents are a few tokens long, and never more than the served length
    assert 1.0 <= saturation.average_length <= model.max_length
    card = (result.output_dir / "best_model" / CARD_NAME).read_text(encoding="utf-8")
    assert "| term weighting | BM25's term-frequency part: k1 0.9, b 0.4" in card


def test_the_average_length_is_measured_on_the_passages_qa_triplets_retrieve() -> None:
    """Lexicon and sentence pairs are far shorter than passages: only QA triplets' documents count,
    unless the files hold none."""
    from types import SimpleNamespace

    from splade.trainer.batches import TripletRows
    from splade.trainer.training_data import TrainingData

    rows = TripletRows(query=np.array([0, 1, 2]), positive=np.array([3, 4, 5]), negative=np.array([6, 7, 8]))
    kinds = ["monolingual_qa", "single_term", "cross_lingual_qa"]
    data = SimpleNamespace(rows=rows, dataset=SimpleNamespace(values=lambda field: kinds))
    assert TrainingData.passage_rows(data).tolist() == [3, 5, 6, 8]  # type: ignore[arg-type]
    kinds[:] = ["single_term", "cross_lingual", "paraphrase"]
    assert TrainingData.passage_rows(data).tolist() == [3, 4, 5, 6, 7, 8]  # type: ignore[arg-type]
