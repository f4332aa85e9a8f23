"""The model card: training writes `best_model/README.md` with the run's settings and best evaluation, an
export carries it over and adds the graphs, and the card shows how to use the model in splade,
sentence-transformers and OpenSearch."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config

from splade.model.card import CARD_NAME, read_card_facts, write_model_card


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from splade.trainer.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny_config(tmp_path_factory.mktemp("card"), tiny_model_dir, "training.num_epochs=1",
                          "curriculum_phases=[]")
        return train(cfg).best_model_dir
    finally:
        torch.set_num_threads(threads)


def test_training_writes_a_card_with_settings_and_best_evaluation(trained: Path) -> None:
    card = (trained / CARD_NAME).read_text(encoding="utf-8")
    facts = read_card_facts(trained)
    training = facts["training"]
    assert training["steps_done"] == 6 and training["max_length"] == 16 and training["batch_size"] == 4
    assert training["train_files"][0].endswith("train.jsonl")
    assert facts["dev"]["step"] == 6 and "val/mrr" in facts["dev"]  # validation MRR selected the model
    assert 0.0 <= facts["dev"]["val/mrr"] <= 1.0
    assert facts["model_id"].startswith("splade-")
    for needle in ("library_name: sentence-transformers", "## Training", "## Dev figures",
                   "| max sequence length | 16 |", "SparseEncoder(\"MODEL_FOLDER\")",
                   "splade search --model MODEL_FOLDER", "--format opensearch", "query_tokens"):
        assert needle in card, needle


def test_export_carries_the_card_over_and_adds_the_graphs(trained: Path, tmp_path: Path) -> None:
    from splade.config.export import ExportConfig
    from splade.export.onnx_export import export_onnx

    export_onnx(ExportConfig(checkpoint=trained, out=tmp_path / "export"))
    facts = read_card_facts(tmp_path / "export")
    assert facts["training"] == read_card_facts(trained)["training"]
    assert facts["dev"] == read_card_facts(trained)["dev"]
    assert facts["export"]["graphs"] == ["model.onnx"] and facts["export"]["parity_max_abs_diff"] < 1e-3
    card = (tmp_path / "export" / CARD_NAME).read_text(encoding="utf-8")
    assert "# export" in card and "## Export" in card and "ONNX | exported from" in card
    assert "--out MODEL_FOLDER-onnx" not in card  # already exported


def test_a_model_without_a_training_record_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    write_model_card(folder)
    card = (folder / CARD_NAME).read_text(encoding="utf-8")
    assert "Not recorded" in card and "Not measured during training" in card
    assert read_card_facts(folder) == {"model_id": read_card_facts(folder)["model_id"]}
    (folder / CARD_NAME).write_text("no front matter\n", encoding="utf-8")
    assert read_card_facts(folder) == {}


def test_sentence_transformers_loads_a_folder_with_a_card(trained: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    if not hasattr(sentence_transformers, "SparseEncoder"):
        pytest.skip("SparseEncoder needs sentence-transformers 5")
    model = sentence_transformers.SparseEncoder(str(trained), device="cpu")
    assert model.encode(["당뇨병 치료"]).shape[-1] > 0
