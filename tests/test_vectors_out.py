"""Vectors out: `splade encode --model M --input FILE --output FILE` writes pyserini JsonVectorCollection
lines or OpenSearch JSON that equal the encoder's vectors; the older positional form still prints terms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splade.cli import _register_all, app

_register_all()

DOCS = {"d1": ("당뇨병", "당뇨병 치료 방법"), "d2": ("", "Seoul is the capital of Korea"),
        "d3": ("", "coffee is good for health")}


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"_id": i, "title": title, "text": text} for i, (title, text) in DOCS.items()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    return folder


def encode(*args: str):
    return CliRunner().invoke(app, ["encode", *args], env={"COLUMNS": "200"})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_corpus_vectors_are_a_json_vector_collection(tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.encoders import load_encoder

    corpus = write_corpus(tmp_path / "beir")
    out = tmp_path / "vectors.jsonl"
    result = encode("--model", str(tiny_model_dir), "--input", str(corpus), "--output", str(out))
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [row["id"] for row in rows] == list(DOCS) and set(rows[0]) == {"id", "contents", "vector"}
    assert rows[0]["contents"] == "당뇨병 당뇨병 치료 방법"  # title + text, as splade index encodes it
    encoder = load_encoder(tiny_model_dir, device="cpu")
    expected = encoder.encode([row["contents"] for row in rows]).to_token_dicts(encoder.id_to_token)
    for row, want in zip(rows, expected, strict=True):
        assert row["vector"] and set(row["vector"]) == set(want)
        assert all(row["vector"][t] == pytest.approx(w, abs=1e-5) for t, w in want.items())

    quantized = tmp_path / "impacts.jsonl"
    assert encode("--model", str(tiny_model_dir), "--input", str(corpus / "corpus.jsonl"), "--output",
                  str(quantized), "--quantize", "100").exit_code == 0
    for row, want in zip(read_jsonl(quantized), expected, strict=True):
        assert all(isinstance(w, int) and w > 0 for w in row["vector"].values())
        assert row["vector"] == {t: round(w * 100) for t, w in want.items() if round(w * 100) > 0}


def test_query_vectors_as_opensearch_query_tokens(tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.indexer.queries import MAX_QUERY_WEIGHT, escape_token

    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tdiabetes treatment\nq2\t한국의 수도\n", encoding="utf-8")
    plain, opensearch = tmp_path / "q.jsonl", tmp_path / "q.os.jsonl"
    model = ["--model", str(tiny_model_dir), "--input", str(queries), "--queries"]
    assert encode(*model, "--output", str(plain)).exit_code == 0
    result = encode(*model, "--output", str(opensearch), "--format", "opensearch")
    assert result.exit_code == 0, result.output
    assert "wrote 2 query vectors" in result.output
    rows = read_jsonl(opensearch)
    assert [set(row) for row in rows] == [{"id", "query_tokens"}] * 2
    for row, vector in zip(rows, read_jsonl(plain), strict=True):
        assert row["query_tokens"] == {escape_token(t): min(w, MAX_QUERY_WEIGHT)
                                       for t, w in vector["vector"].items()}
    corpus = write_corpus(tmp_path / "beir")
    docs = tmp_path / "docs.os.jsonl"
    assert encode("--model", str(tiny_model_dir), "--input", str(corpus), "--output", str(docs),
                  "--format", "opensearch").exit_code == 0
    assert set(read_jsonl(docs)[0]) == {"doc_id", "text", "sparse_embedding"}


def test_printing_terms_with_model_option_and_the_older_positional_form(tiny_model_dir: Path) -> None:
    new = encode("--model", str(tiny_model_dir), "당뇨병 치료", "--top-k", "3")
    old = encode(str(tiny_model_dir), "당뇨병 치료", "--top-k", "3")
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert "당뇨병 치료 (3 terms)" in new.output and new.output == old.output


def test_vectors_out_mistakes_are_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "beir")
    cases = [(["--input", str(corpus), "--output", "x"], "--model: name the model folder"),
             (["--model", str(tiny_model_dir), "--input", str(corpus)], "--output: --input writes"),
             (["--model", str(tiny_model_dir), "text", "--input", str(corpus), "--output", "x"], "--input:"),
             (["--model", str(tiny_model_dir), "--input", str(corpus), "--output", str(tmp_path / "o"),
               "--format", "parquet"], "--format: choose one of jsonl, opensearch"),
             (["--model", str(tmp_path / "nope"), "text"], "--model: model folder not found")]
    for args, message in cases:
        result = encode(*args)
        assert result.exit_code != 0 and message in str(result.exception), (args, result.exception)
    assert not (tmp_path / "o").exists()
