"""Inference-free ("doc-only") models between splade, sentence-transformers and OpenSearch: the Router
layout both write and read, the ONNX export that keeps the query table, and the SPARSE_TOKENIZE package
built from the trained table."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TEXTS
from test_index_local import write_beir
from typer.testing import CliRunner

from splade.cli import _register_all, app, main
from splade.config.export import ExportConfig
from splade.encoders import load_encoder
from splade.encoders.base import weigh_tokens
from splade.errors import SpladeError
from splade.export.onnx_export import export_onnx
from splade.export.opensearch_package import ZERO_QUERY_WEIGHT, build_sparse_tokenize_package
from splade.model import SpladeModel
from splade.model.st_format import DOCUMENT_DIR, QUERY_DIR
from splade.tiny import build_tiny_model
from splade.tokens import token_names

sentence_transformers = pytest.importorskip("sentence_transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support:UserWarning")
_register_all()
QUERIES = ["당뇨병 치료 방법", "coffee is good for health", "서울은 한국의 수도이다 " * 4 + "coffee"]
DOCS = ["Seoul is the capital of Korea", "coffee is good for health", "감기 증상과 치료", "당뇨병 치료 방법"]
QUERY_LENGTH = 8  # splade's count, [CLS] and [SEP] included: the long query loses "coffee"


def _doc_only(folder: Path, similarity: str = "dot", seed: int = 0) -> Path:
    """A tiny inference-free model: documents by a 16-token model, queries by a random table."""
    model = build_tiny_model(TINY_TEXTS, None, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                             max_length=16, lexical_bias=-2.0)
    model.query_max_length = QUERY_LENGTH
    model.similarity = similarity
    generator = torch.Generator().manual_seed(seed)
    table = torch.rand(model.vocab_size, generator=generator) * 4.0
    table[torch.rand(model.vocab_size, generator=generator) < 0.2] = 0.0  # tokens the table never weighs
    table[model.tokenizer.convert_tokens_to_ids("coffee")] = 2.5
    model.set_query_weights(table)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def doc_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _doc_only(tmp_path_factory.mktemp("doc_only") / "model")


def _st(folder: Path):
    return sentence_transformers.SparseEncoder(str(folder), device="cpu")


def _dense(batch) -> np.ndarray:  # noqa: ANN001 - a torch sparse tensor
    return batch.to_dense().float().numpy()


# -- splade -> sentence-transformers ----------------------------------------------------------------------

@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_sparse_encoder_encodes_a_doc_only_folder_as_splade(tmp_path: Path, similarity: str) -> None:
    folder = _doc_only(tmp_path / "model", similarity)
    st_model = _st(folder)
    ours = load_encoder(folder, backend="torch", device="cpu")
    assert ours.query_weights is not None and ours.query_max_length == QUERY_LENGTH and ours.max_length == 16
    queries, docs = ours.encode_queries(QUERIES).to_dense(), ours.encode_documents(DOCS).to_dense()
    their_queries = _dense(st_model.encode_query(QUERIES, convert_to_tensor=True))
    their_docs = _dense(st_model.encode_document(DOCS, convert_to_tensor=True))
    assert np.abs(their_queries - queries).max() <= 1e-4
    assert np.abs(their_docs - docs).max() <= 1e-4
    # both cut the long query after 6 tokens of its own: "coffee" is not in it, though the table weighs it
    coffee = ours.tokenizer.convert_tokens_to_ids("coffee")
    assert queries[1, coffee] > 0 and queries[2, coffee] == 0 == their_queries[2, coffee]
    assert (queries > 0).sum(axis=1)[2] <= QUERY_LENGTH - 2
    if similarity == "cosine":
        assert np.allclose(np.linalg.norm(their_queries, axis=1), 1.0, atol=1e-5)


def test_the_masked_lm_is_stored_once_in_the_routers_document_folder(doc_only: Path) -> None:
    weights = sorted(p.relative_to(doc_only).as_posix() for p in doc_only.rglob("*.safetensors"))
    assert weights == [f"{DOCUMENT_DIR}/model.safetensors", f"{QUERY_DIR}/model.safetensors"]
    assert (doc_only / QUERY_DIR / "model.safetensors").stat().st_size < 4096  # only the [vocab] table
    config = json.loads((doc_only / "splade_config.json").read_text())
    assert config["query_encoder"] == "idf" and config["backbone_path"] == DOCUMENT_DIR
    assert (doc_only / "idf.json").is_file() and (doc_only / "tokenizer.json").is_file()
    modules = json.loads((doc_only / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Router"]


def test_resaving_a_folder_switches_layouts_without_leftovers(doc_only: Path, short_siamese: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(short_siamese, folder)
    model = SpladeModel.from_pretrained(doc_only)
    model.save_pretrained(folder)  # doc-only over a siamese folder: its root weights go
    assert not (folder / "model.safetensors").exists() and not (folder / "config.json").exists()
    assert SpladeModel.from_pretrained(folder).inference_free
    model.query_weights = None
    model.save_pretrained(folder)  # and back: the router and its subfolders go
    assert (folder / "model.safetensors").is_file()
    for name in (DOCUMENT_DIR, QUERY_DIR, "router_config.json"):
        assert not (folder / name).exists(), name
    siamese = SpladeModel.from_pretrained(folder)
    assert not siamese.inference_free
    ours = load_encoder(folder, backend="torch", device="cpu").encode(DOCS).to_dense()
    assert np.allclose(_dense(_st(folder).encode(DOCS, convert_to_tensor=True)), ours, atol=1e-5)


@pytest.fixture(scope="module")
def short_siamese(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("siamese") / "model"
    build_tiny_model(TINY_TEXTS, out, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                     max_length=16, lexical_bias=-2.0)
    return out


def test_an_onnx_export_keeps_the_query_table_and_graphs_the_documents(doc_only: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    export_onnx(ExportConfig(checkpoint=doc_only, out=out))
    assert (out / "idf.json").is_file() and (out / "model.onnx").is_file()
    assert not (out / "model.safetensors").exists()  # the masked LM is in the router's folder, once
    onnx = load_encoder(out, device="cpu")
    torch_encoder = load_encoder(doc_only, backend="torch", device="cpu")
    assert onnx.backend == "onnx" and onnx.query_weights is not None
    assert np.array_equal(onnx.query_weights, torch_encoder.query_weights)
    queries = torch_encoder.encode_queries(QUERIES).to_dense()
    assert np.array_equal(onnx.encode_queries(QUERIES).to_dense(), queries)
    # the graph is the document encoder (16 tokens), not the query table
    docs = torch_encoder.encode_documents(DOCS).to_dense()
    assert np.abs(onnx.encode_documents(DOCS).to_dense() - docs).max() < 1e-3
    assert onnx.model_name == torch_encoder.model_name
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| queries | inference-free" in card and "| backbone max positions | 512 |" in card
    st_model = _st(out)  # the export loads in sentence-transformers too
    assert np.abs(_dense(st_model.encode_query(QUERIES, convert_to_tensor=True)) - queries).max() <= 1e-4


# -- OpenSearch SPARSE_TOKENIZE ---------------------------------------------------------------------------

def _ml_commons_query(package: Path, text: str) -> dict[str, float]:
    """What ML Commons' SPARSE_TOKENIZE model returns for `text`: the zip's tokenizer.json encodes it, each
    distinct id decodes (special tokens skipped) to a token, which weighs its idf.json entry or 1.0."""
    from tokenizers import Tokenizer

    archive = zipfile.ZipFile(package)
    tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
    idf = json.loads(archive.read("idf.json"))
    ids = list(dict.fromkeys(tokenizer.encode(text).ids))
    tokens = [tokenizer.decode([i], skip_special_tokens=True) for i in ids]
    return {token: idf.get(token, 1.0) for token in tokens if token}


def test_sparse_tokenize_package_carries_the_trained_table(doc_only: Path, tmp_path: Path) -> None:
    path = build_sparse_tokenize_package(doc_only, tmp_path / "tok")
    archive = zipfile.ZipFile(path)
    assert sorted(archive.namelist()) == ["idf.json", "tokenizer.json"]
    assert json.loads(archive.read("tokenizer.json"))["truncation"]["max_length"] == QUERY_LENGTH
    encoder = load_encoder(doc_only, backend="torch", device="cpu")
    idf = json.loads(archive.read("idf.json"))
    named = [name for name in token_names(encoder.tokenizer, encoder.vocab_size) if name]
    assert set(idf) == set(named)  # every token ML Commons can name: none falls back to 1.0
    assert min(idf.values()) == ZERO_QUERY_WEIGHT
    ours = encoder.encode_queries(QUERIES).to_token_dicts(encoder.id_to_token)
    for text, expected in zip(QUERIES, ours, strict=True):
        theirs = _ml_commons_query(path, text)
        assert {t: w for t, w in theirs.items() if w > ZERO_QUERY_WEIGHT} == pytest.approx(expected, abs=1e-6)
        assert set(expected) <= set(theirs)
    body = json.loads((path.parent / "register_model.json").read_text())
    assert body["function_name"] == "SPARSE_TOKENIZE" and "trained query weights" in body["description"]


def test_query_tokens_written_for_opensearch_are_the_tables(doc_only: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps({"_id": f"q{i}", "text": t}, ensure_ascii=False)
                                 for i, t in enumerate(QUERIES)) + "\n", encoding="utf-8")
    out = tmp_path / "tokens.jsonl"
    result = CliRunner().invoke(app, ["encode", "--model", str(doc_only), "--input", str(queries),
                                      "--queries",
                                      "--format", "opensearch", "--output", str(out), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    encoder = load_encoder(doc_only, backend="torch", device="cpu")
    expected = encoder.encode_queries(QUERIES).to_token_dicts(encoder.id_to_token)
    assert [row["query_tokens"] for row in rows] == [pytest.approx(e, abs=1e-6) for e in expected]


def test_idf_corpus_is_for_siamese_models_only(doc_only: Path, short_siamese: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_beir(tmp_path / "beir", DOCS)
    with pytest.raises(SpladeError, match=r"^--idf-corpus: .* is inference-free"):
        build_sparse_tokenize_package(doc_only, tmp_path / "tok", corpus)
    with pytest.raises(SpladeError, match=r"^--idf-corpus: .* encodes its queries with the model"):
        build_sparse_tokenize_package(short_siamese, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()
    assert ExportConfig(checkpoint=doc_only, out=tmp_path / "o", sparse_tokenize=True).idf_corpus is None
    for checkpoint, corpus_option in ((doc_only, corpus), (short_siamese, None)):
        argv = ["splade", "export", str(checkpoint), "--out", str(tmp_path / "o"), "--sparse-tokenize",
                *(["--idf-corpus", str(corpus_option)] if corpus_option else [])]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.startswith("error: --idf-corpus: ") and "\n" not in err
    assert not (tmp_path / "o").exists()


# -- sentence-transformers -> splade ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def st_router(short_siamese: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An inference-free model as sentence-transformers builds and saves it: a Router of a
    SparseStaticEmbedding (queries) and the masked LM + SpladePooling (documents)."""
    from sentence_transformers.sparse_encoder.modules import (
        Router,
        SparseStaticEmbedding,
        SpladePooling,
        Transformer,
    )

    mlm = Transformer(str(short_siamese), transformer_task="fill-mask", max_seq_length=16)
    weight = torch.rand(len(mlm.tokenizer), generator=torch.Generator().manual_seed(3)) * 2.0
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight, frozen=True)],
        document_modules=[mlm, SpladePooling("max", "relu")])
    folder = tmp_path_factory.mktemp("st_router") / "model"
    model = sentence_transformers.SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu")
    model.save(str(folder))
    return folder


def test_a_sentence_transformers_router_loads_as_an_inference_free_model(st_router: Path) -> None:
    model = SpladeModel.from_pretrained(st_router)
    assert model.inference_free and model.max_length == 16
    st_model = _st(st_router)
    static = st_model[0].sub_modules["query"][0].weight.detach()
    special = model.tokenizer.all_special_ids
    expected = static.clone()
    expected[special] = 0.0  # splade never weighs special tokens
    assert torch.equal(model.query_weights.detach(), expected)
    ours = load_encoder(st_router, backend="torch", device="cpu")
    theirs = _dense(st_model.encode_query(QUERIES, convert_to_tensor=True))
    theirs[:, special] = 0.0  # [UNK] is the only special token a query tokenized without them can hold
    assert np.abs(ours.encode_queries(QUERIES).to_dense() - theirs).max() <= 1e-4
    assert np.abs(ours.encode_documents(DOCS).to_dense()
                  - _dense(st_model.encode_document(DOCS, convert_to_tensor=True))).max() <= 1e-4


def test_a_sentence_transformers_router_indexes_searches_evaluates_and_exports(st_router: Path,
                                                                                tmp_path: Path) -> None:
    corpus = write_beir(tmp_path / "beir", DOCS)
    result = CliRunner().invoke(app, ["index", "--model", str(st_router), "--corpus", str(corpus),
                                      "--index", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["search", "coffee health", "--model", str(st_router), "--index",
                                      str(tmp_path / "idx"), "--format", "json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    encoder = load_encoder(st_router, backend="torch", device="cpu")
    query = encoder.encode_queries(["coffee health"])
    scores = query.to_dense() @ encoder.encode_documents(DOCS).to_dense().T
    assert hits[0]["doc_id"] == f"doc{int(scores.argmax())}"
    assert hits[0]["score"] == pytest.approx(float(scores.max()), rel=1e-4)

    (corpus / "queries.jsonl").write_text('{"_id": "q1", "text": "coffee health"}\n')
    (corpus / "qrels").mkdir()
    (corpus / "qrels" / "dev.tsv").write_text(f"query-id\tcorpus-id\tscore\nq1\t{hits[0]['doc_id']}\t1\n")
    result = CliRunner().invoke(app, ["eval", "--dataset", str(corpus), "--splade", f"st={st_router}",
                                      "--no-bm25", "--trials", "20", "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert report["datasets"][0]["systems"][0]["metrics"]["mrr@10"] == 1.0

    out = tmp_path / "onnx"
    result = CliRunner().invoke(app, ["export", str(st_router), "--out", str(out), "--opensearch-package",
                                      "--sparse-tokenize"])
    assert result.exit_code == 0, result.output
    package = next((out / "opensearch-tokenizer").glob("*.zip"))
    assert _ml_commons_query(package, "coffee health") == pytest.approx(
        encoder.encode_queries(["coffee health"]).to_token_dicts(encoder.id_to_token)[0], abs=1e-6)
    assert next((out / "opensearch").glob("*.zip")).is_file()  # the documents' SPARSE_ENCODING model
    onnx = load_encoder(out, device="cpu")
    assert onnx.query_weights is not None and onnx.model_name == encoder.model_name
    assert np.array_equal(onnx.encode_queries(QUERIES).to_dense(), encoder.encode_queries(QUERIES).to_dense())


# -- the query table's fast path --------------------------------------------------------------------------

@pytest.mark.parametrize("many", [False, True])  # a few queries are weighed row by row, many at once
@pytest.mark.parametrize(("top_k", "threshold", "cosine"), [(None, 0.0, False), (3, 0.0, False),
                                                             (None, 0.5, True), (2, 0.1, True)])
def test_query_rows_from_token_ids_equal_dense_rows(top_k: int | None, threshold: float, cosine: bool,
                                                    many: bool) -> None:
    rng = np.random.default_rng(0)
    table = (rng.random(50) * 3).astype(np.float32)
    table[rng.random(50) < 0.3] = 0.0
    sizes = [0, 1, 7, 12, 30] + ([5, 9, 0, 20] * 10 if many else [])
    encoded = [rng.integers(0, 50, size=n).astype(np.int32) for n in sizes]
    encoded.append(np.array([4, 4, 4, 9], dtype=np.int32))  # repeated tokens count once
    dense = np.zeros((len(encoded), 50), dtype=np.float32)
    for row, ids in enumerate(encoded):
        dense[row, ids] = table[ids]
    if cosine:
        dense = dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    got = weigh_tokens(encoded, table, top_k, threshold, cosine)
    assert got.vocab_size == 50 and len(got) == len(encoded)
    expected = np.where(dense > threshold, dense, 0.0)
    if top_k is not None:
        for row in expected:
            row[np.argsort(-row, kind="stable")[top_k:]] = 0.0
    assert np.allclose(got.to_dense(), expected, atol=1e-6)
    assert all(np.all(np.diff(ids) > 0) for ids, _ in got.rows())  # ids ascending within each row


ROUTER_TYPES = {"q": "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding",
                "m": "sentence_transformers.sparse_encoder.models.MLMTransformer",
                "p": "sentence_transformers.sparse_encoder.models.SpladePooling"}


@pytest.mark.parametrize(("structure", "message"), [
    ({"query": ["m", "p"], "document": ["m", "p"]}, r"router_config\.json: the query route must be one "
                                                    r"SparseStaticEmbedding"),
    ({"text": ["m", "p"]}, r"router_config\.json: splade reads a router of a query and a document route"),
    ({"query": ["q"], "document": ["q"]}, r"router_config\.json: module .*SparseStaticEmbedding \('q'\) is "
                                          r"not supported"),
])
def test_a_router_splade_cannot_serve_is_one_line(tmp_path: Path, structure: dict, message: str) -> None:
    from splade.model.st_format import read_module_files

    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                        "type": "sentence_transformers.models.Router"}]))
    (tmp_path / "config_sentence_transformers.json").write_text('{"model_type": "SparseEncoder"}')
    (tmp_path / "router_config.json").write_text(json.dumps({"types": ROUTER_TYPES, "structure": structure}))
    with pytest.raises(SpladeError, match=message) as err:
        read_module_files(tmp_path)
    assert "\n" not in str(err.value)
