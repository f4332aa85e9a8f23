"""Models travel both ways between splade and sentence-transformers' `SparseEncoder`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TEXTS
from test_index_local import write_beir
from typer.testing import CliRunner

from splade.cli import _register_all, app
from splade.config.export import ExportConfig
from splade.encoders import load_encoder
from splade.errors import SpladeError
from splade.export.onnx_export import export_onnx
from splade.model import SpladeModel
from splade.model.st_format import read_module_files
from splade.tiny import build_tiny_model

sentence_transformers = pytest.importorskip("sentence_transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")  # torch, inside it
_register_all()
TEXTS = ["당뇨병 치료 방법", "coffee is good for health",
         "서울은 한국의 수도이다 " * 6 + "coffee is good for health"]  # longer than the max length
ENGLISH = ["Seoul is the capital of Korea", "coffee is good for health",
           "the common cold is a viral infection"]


def _sparse_encoder(folder: Path):
    return sentence_transformers.SparseEncoder(str(folder), device="cpu")


def _st_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    return _sparse_encoder(folder).encode(texts, convert_to_tensor=True).to_dense().float().numpy()


@pytest.fixture(scope="module")
def short_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small splade model trained for 12 tokens (sentence-transformers' default would be 512)."""
    out = tmp_path_factory.mktemp("short") / "model"
    build_tiny_model(TINY_TEXTS, out, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                     max_length=12, lexical_bias=-2.0)
    return out


# -- splade -> sentence-transformers ----------------------------------------------------------------------

def test_sparse_encoder_gives_the_vectors_of_splade_encode(short_model: Path) -> None:
    st_model = _sparse_encoder(short_model)
    assert st_model.max_seq_length == 12
    theirs = _st_vectors(short_model, TEXTS)
    ours = load_encoder(short_model, backend="torch", device="cpu").encode(TEXTS).to_dense()
    assert np.allclose(theirs, ours, atol=1e-5)
    tokenizer = SpladeModel.from_pretrained(short_model).tokenizer
    assert (theirs[:, tokenizer.all_special_ids] == 0).all()  # [CLS] / [SEP] are never active
    # both cut after 12 tokens, before "coffee": the trained max length, not 512
    assert np.allclose(theirs[2], _st_vectors(short_model, ["서울은 한국의 수도이다 " * 12])[0], atol=1e-6)
    coffee = tokenizer.convert_tokens_to_ids("coffee")
    assert theirs[2, coffee] == 0 < theirs[1, coffee]

    # the CLI's top terms, as printed, are sentence-transformers' top terms
    result = CliRunner().invoke(app, ["encode", str(short_model), TEXTS[1], "--top-k", "5", "--backend",
                                      "torch"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    printed = re.findall(r"(\S+):(\d+\.\d\d)", result.output.splitlines()[-1])
    decoded = st_model.decode(st_model.encode([TEXTS[1]], convert_to_tensor=True), top_k=5)[0]
    assert [(token, float(weight)) for token, weight in printed] == [(t, round(w, 2)) for t, w in decoded]


def test_an_export_loads_in_sentence_transformers_too(short_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    export_onnx(ExportConfig(checkpoint=short_model, out=out))
    onnx = load_encoder(out, device="cpu")
    assert onnx.backend == "onnx"
    assert np.allclose(_st_vectors(out, TEXTS), onnx.encode(TEXTS).to_dense(), atol=1e-3)


def test_cosine_models_are_normalised_and_bag_of_token_models_get_no_module_files(short_model: Path,
                                                                                  tmp_path: Path) -> None:
    cosine = SpladeModel.from_pretrained(short_model)
    cosine.similarity = "cosine"
    cosine.save_pretrained(tmp_path / "cosine")
    theirs = _st_vectors(tmp_path / "cosine", TEXTS)
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)
    ours = load_encoder(tmp_path / "cosine", device="cpu").encode(TEXTS).to_dense()
    assert np.allclose(theirs, ours, atol=1e-5)

    bag = SpladeModel.from_pretrained(short_model)
    bag.expansion_weight = 0.0
    (tmp_path / "bag").mkdir()
    shutil.copytree(tmp_path / "cosine", tmp_path / "bag", dirs_exist_ok=True)  # stale module files
    bag.save_pretrained(tmp_path / "bag")
    assert not (tmp_path / "bag" / "modules.json").exists()  # its vectors are not sentence-transformers'
    assert not (tmp_path / "bag" / "1_SpladePooling").exists()


def test_saved_tokenizers_name_a_class_every_transformers_version_has(short_model: Path) -> None:
    config = json.loads((short_model / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # transformers 4 has no TokenizersBackend


# -- sentence-transformers -> splade ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def st_folders(splade_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """splade-tiny saved by sentence-transformers itself: the masked LM at the folder's root (max length in
    the tokenizer), and the older layout with the masked LM in a subfolder (max length in its
    `sentence_bert_config.json`)."""
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    root = tmp_path_factory.mktemp("st") / "root"
    mlm = Transformer(str(splade_tiny_dir), transformer_task="fill-mask",
                      processor_kwargs={"model_max_length": 32})
    encoder = sentence_transformers.SparseEncoder(modules=[mlm, SpladePooling("max", "relu")], device="cpu")
    encoder.save(str(root))
    sub = root.parent / "subfolder"
    (sub / "0_MLMTransformer").mkdir(parents=True)
    for item in root.iterdir():
        top = item.name in ("modules.json", "config_sentence_transformers.json", "1_SpladePooling")
        target = sub if top else sub / "0_MLMTransformer"
        (shutil.copytree if item.is_dir() else shutil.copy)(item, target / item.name)
    modules = json.loads((sub / "modules.json").read_text())
    modules[0].update(path="0_MLMTransformer", type=MLM["type"])
    (sub / "modules.json").write_text(json.dumps(modules))
    (sub / "0_MLMTransformer" / "sentence_bert_config.json").write_text('{"max_seq_length": 24}')
    return {"root": root, "subfolder": sub}


@pytest.mark.parametrize(("layout", "max_length"), [("root", 32), ("subfolder", 24)])
def test_a_sentence_transformers_folder_encodes_as_it_says(st_folders: dict[str, Path], layout: str,
                                                           max_length: int) -> None:
    folder = st_folders[layout]
    assert _sparse_encoder(folder).max_seq_length == max_length  # sentence-transformers reads it so too
    model = SpladeModel.from_pretrained(folder)
    assert model.max_length == max_length
    texts = ENGLISH + ["seoul korea capital city " * 12]  # the last is cut at the max length
    theirs = _st_vectors(folder, texts)
    ours = load_encoder(folder, backend="torch", device="cpu").encode(texts).to_dense()
    special = model.tokenizer.all_special_ids
    assert (ours[:, special] == 0).all()  # splade never activates them, whatever the model says
    theirs[:, special] = 0
    assert np.allclose(theirs, ours, atol=1e-5)


def test_a_sentence_transformers_folder_indexes_evaluates_and_exports(st_folders: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    folder = st_folders["subfolder"]
    corpus = write_beir(tmp_path / "beir", ENGLISH)
    result = CliRunner().invoke(app, ["index", "--model", str(folder), "--corpus", str(corpus),
                                      "--index", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["search", "capital of Korea", "--model", str(folder), "--index",
                                      str(tmp_path / "idx"), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hits"][0]["doc_id"] == "doc0"

    queries = tmp_path / "beir" / "queries.jsonl"
    queries.write_text('{"_id": "q1", "text": "capital of Korea"}\n{"_id": "q2", "text": "viral cold"}\n')
    (tmp_path / "beir" / "qrels").mkdir()
    (tmp_path / "beir" / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tdoc0\t1\nq2\tdoc2\t1\n")
    result = CliRunner().invoke(app, ["eval", "--dataset", str(tmp_path / "beir"), "--splade", f"st={folder}",
                                      "--no-bm25", "--trials", "20", "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert report["datasets"][0]["systems"][0]["metrics"]["mrr@10"] == 1.0

    from splade.export.stage import run_export

    exported = run_export(ExportConfig(checkpoint=folder, out=tmp_path / "onnx", opensearch_package=True,
                                       sparse_tokenize=True, idf_corpus=corpus))
    assert exported.report.parity["fp32"].passed and all(package.is_file() for package in exported.packages)
    exported = load_encoder(tmp_path / "onnx", device="cpu")
    torch_encoder = load_encoder(folder, backend="torch")
    assert exported.max_length == 24 and exported.model_name == torch_encoder.model_name
    assert np.allclose(exported.encode(ENGLISH).to_dense(), torch_encoder.encode(ENGLISH).to_dense(),
                       atol=1e-3)


def _write_modules(folder: Path, modules: list[dict], pooling: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "config_sentence_transformers.json").write_text('{"model_type": "SparseEncoder"}')
    if pooling is not None:
        (folder / "1_SpladePooling").mkdir()
        (folder / "1_SpladePooling" / "config.json").write_text(json.dumps(pooling))
    return folder


MLM = {"idx": 0, "name": "0", "path": "",
       "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"}
POOL = {"idx": 1, "name": "1", "path": "1_SpladePooling",
        "type": "sentence_transformers.sparse_encoder.models.SpladePooling"}


@pytest.mark.parametrize(("modules", "pooling", "message"), [
    ([MLM, POOL], {"pooling_strategy": "sum"}, r"1_SpladePooling/config\.json: pooling_strategy 'sum'"),
    ([MLM, POOL], {"activation_function": "log1p_relu"}, r"config\.json: activation_function 'log1p_relu'"),
    ([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.router.Router"}, POOL],
     {}, r"modules\.json: module sentence_transformers\.base\.modules\.router\.Router"),
    ([MLM], None, r"modules\.json: not a SPLADE model"),
])
def test_what_splade_cannot_compute_alike_is_one_line(tmp_path: Path, modules, pooling, message: str) -> None:
    folder = _write_modules(tmp_path / "st", modules, pooling)
    with pytest.raises(SpladeError, match=message) as err:
        read_module_files(folder)
    assert "\n" not in str(err.value)


def test_a_dense_sentence_transformers_folder_is_a_plain_backbone(me5_dir: Path) -> None:
    assert (me5_dir / "modules.json").is_file() and read_module_files(me5_dir) is None
    model = SpladeModel.from_pretrained(me5_dir)
    assert model.max_length == 128 and isinstance(model.encode(["당뇨병"]), torch.Tensor)
