"""OpenSearch ML Commons packages: SPARSE_ENCODING (TorchScript) and SPARSE_TOKENIZE (tokenizer + idf)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from splade.errors import SpladeError
from splade.export.opensearch_package import (
    build_ml_commons_package,
    build_sparse_tokenize_package,
    compute_idf,
)
from splade.model import SpladeModel


@pytest.fixture(scope="module")
def package(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "opensearch"
    return build_ml_commons_package(tiny_model_dir, out, name="splade-ko-test", url="https://example.org/m.zip")


def test_zip_holds_one_model_file_and_tokenizer(package):
    names = zipfile.ZipFile(package).namelist()
    assert sorted(names) == ["splade-ko-test.pt", "tokenizer.json"]
    tokenizer = json.loads(zipfile.ZipFile(package).read("tokenizer.json"))
    assert tokenizer["truncation"]["max_length"] == 128  # long documents cannot overrun positions


def test_register_body_matches_the_zip(package):
    body = json.loads((package.parent / "register_model.json").read_text())
    assert body["function_name"] == "SPARSE_ENCODING"
    assert body["model_format"] == "TORCH_SCRIPT"
    assert body["model_content_hash_value"] == hashlib.sha256(package.read_bytes()).hexdigest()
    assert body["model_content_size_in_bytes"] == package.stat().st_size
    assert body["name"] == "splade-ko-test" and body["url"] == "https://example.org/m.zip"
    assert json.loads((package.parent / "parity.json").read_text())["passed"] is True


def test_torchscript_takes_input_ids_and_mask_and_returns_output(package, tiny_model_dir):
    traced = torch.jit.load(io.BytesIO(zipfile.ZipFile(package).read("splade-ko-test.pt")))
    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    for texts in (["당뇨병 치료 방법과 예방 " * 4, "x", "coffee"], ["서울은 한국의 수도이다"]):
        batch = model.tokenize(texts)
        with torch.no_grad():
            out = traced({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
            reference = model(batch["input_ids"], batch["attention_mask"])
        assert set(out) == {"output"}
        assert out["output"].shape == (len(texts), model.vocab_size)
        np.testing.assert_allclose(out["output"].numpy(), reference.numpy(), atol=1e-5)


def test_idf_weights_rare_tokens_higher(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    idf = compute_idf(tokenizer, ["서울 커피", "서울 감기", "서울 당뇨병", "coffee"])
    assert idf["서울"] < idf["커피"]
    assert "[CLS]" not in idf and "[SEP]" not in idf
    assert all(w > 0 for w in idf.values())


def test_sparse_tokenize_package(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    texts = ["서울 커피", "서울 감기", "hypertension"]
    rows = [{"_id": str(i), "title": "", "text": t} for i, t in enumerate(texts)]
    corpus.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows), encoding="utf-8")
    path = build_sparse_tokenize_package(tiny_model_dir, tmp_path / "tok", corpus)
    archive = zipfile.ZipFile(path)
    assert sorted(archive.namelist()) == ["idf.json", "tokenizer.json"]
    idf = json.loads(archive.read("idf.json"))
    assert idf["서울"] < idf["감기"]
    body = json.loads((path.parent / "register_model.json").read_text())
    assert body["function_name"] == "SPARSE_TOKENIZE"
    assert body["model_content_hash_value"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_idf_corpus_names_file_and_line(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(SpladeError, match=r"corpus.jsonl:2: invalid JSON"):
        build_sparse_tokenize_package(tiny_model_dir, tmp_path / "tok", corpus)
    with pytest.raises(SpladeError, match="--idf-corpus"):
        build_sparse_tokenize_package(tiny_model_dir, tmp_path / "tok", tmp_path / "missing.jsonl")
    assert not (tmp_path / "tok").exists()


def test_export_with_packages_is_whole_or_nothing(tiny_model_dir, tmp_path):
    from splade.config.export import ExportConfig
    from splade.export.stage import run_export

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "당뇨병 치료"}\n{"_id": "2", "text": "coffee"}\n',
                      encoding="utf-8")
    out = tmp_path / "export"
    config = ExportConfig(checkpoint=tiny_model_dir, out=out, opensearch_package=True, sparse_tokenize=True,
                          idf_corpus=corpus, name="tiny")
    result = run_export(config)
    assert (out / "model.onnx").is_file() and (out / "export_report.json").is_file()
    assert [p.relative_to(out).as_posix() for p in result.packages] == [
        "opensearch/tiny.zip", "opensearch-tokenizer/tiny-tokenizer.zip"]
    assert all(p.is_file() for p in result.packages)

    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    corpus.write_text('{"_id": "1", "text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(SpladeError, match=r"corpus.jsonl:2"):
        run_export(config.model_copy(update={"name": None}))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before  # the old export stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "export"]  # no scratch left
