"""The embedded index: exact top-k against brute force, persistence, segments, tombstones, metadata checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata
from splade.indexer.local import LocalSparseIndex
from splade.indexer.segment import Segment
from splade.sparse import SparseBatch

VOCAB = 500


def random_batch(n: int, active: int, seed: int, vocab: int = VOCAB) -> SparseBatch:
    """Sparse rows with Zipf-like term ids and log-normal weights."""
    rng = np.random.default_rng(seed)
    probs = 1.0 / np.arange(1, vocab + 1)
    probs /= probs.sum()
    rows = []
    for _ in range(n):
        ids = np.unique(rng.choice(vocab, size=active, p=probs))
        rows.append((ids, rng.lognormal(0.0, 0.6, ids.size).astype(np.float32)))
    return SparseBatch.from_rows(rows, vocab)


def brute_force(docs: SparseBatch, queries: SparseBatch, top_k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    scores = queries.to_dense().astype(np.float64) @ docs.to_dense().astype(np.float64).T
    return scores, [np.argsort(-row, kind="stable")[:top_k] for row in scores]


META = IndexMetadata("models/a", "hash-a", VOCAB, top_k=None, threshold=0.0)


@pytest.fixture()
def docs() -> SparseBatch:
    return random_batch(400, 30, seed=1)


@pytest.fixture()
def queries() -> SparseBatch:
    return random_batch(25, 8, seed=2)


def published_manifest(path: Path) -> dict:
    """The manifest `CURRENT` points to."""
    return json.loads((path / (path / "CURRENT").read_text().strip()).read_text())


def ids_for(n: int, start: int = 0) -> list[str]:
    return [f"d{i}" for i in range(start, start + n)]


def assert_exact(hits: list[list[tuple[str, float]]], scores: np.ndarray, top_k: int, ids: list[str]) -> None:
    for q, row in enumerate(hits):
        expected = np.sort(scores[q][scores[q] > 0])[::-1][:top_k]
        got = np.array([s for _, s in row])
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        for doc_id, score in row:  # each hit carries its own exact score
            assert scores[q][ids.index(doc_id)] == pytest.approx(score, rel=1e-5)


def test_search_is_exact_dot_product(tmp_path: Path, docs: SparseBatch, queries: SparseBatch) -> None:
    ids = ids_for(len(docs))
    index = LocalSparseIndex.create(tmp_path / "idx", META)
    index.add(ids, docs)
    scores, _ = brute_force(docs, queries, 10)
    assert_exact(index.search(queries, top_k=10), scores, 10, ids)  # pending documents are searchable
    index.save()
    reopened = LocalSparseIndex.open(tmp_path / "idx", expected=META)
    assert reopened.count() == len(docs)
    postings = reopened._segments[0].docs
    assert isinstance(postings.base, np.memmap) and not postings.flags.owndata  # a view of the file
    assert_exact(reopened.search(queries, top_k=10), scores, 10, ids)


def test_top_k_larger_than_matches_and_empty_query(tmp_path: Path) -> None:
    docs = SparseBatch.from_rows([(np.array([1, 2]), np.array([1.0, 2.0])),
                                  (np.array([3]), np.array([1.0]))], 10)
    index = LocalSparseIndex.create(tmp_path / "i", IndexMetadata("m", "h", 10))
    index.add(["a", "b"], docs)
    queries = SparseBatch.from_rows([(np.array([2]), np.array([0.5])), (np.array([], int), np.array([])),
                                     (np.array([3, 7]), np.array([-1.0, 2.0]))], 10)
    assert index.search(queries, top_k=5) == [[("a", 1.0)], [], []]


def test_incremental_add_delete_replace_and_compact(tmp_path: Path, docs: SparseBatch,
                                                    queries: SparseBatch) -> None:
    path = tmp_path / "idx"
    ids = ids_for(len(docs))
    with LocalSparseIndex.create(path, META) as index:
        index.add(ids[:200], docs.select(range(200)))
    with LocalSparseIndex.open(path, expected=META, for_add=True) as index:
        index.add(ids[200:], docs.select(range(200, 400)))
    manifest = published_manifest(path)
    assert [s["n_docs"] for s in manifest["segments"]] == [200, 200]

    index = LocalSparseIndex.open(path, expected=META)
    assert index.delete(["d5", "d250", "missing"]) == 2
    # re-adding an existing id replaces it: d7 now holds d8's vector
    index.add(["d7"], docs.select([8]))
    index.save()
    index = LocalSparseIndex.open(path)
    assert index.count() == 398
    live = [i for i in range(400) if i not in (5, 250)]
    expected_docs = docs.select([8 if i == 7 else i for i in live])
    live_ids = [f"d{i}" for i in live]
    scores, _ = brute_force(expected_docs, queries, 10)
    hits = index.search(queries, top_k=10)
    assert all(d not in ("d5", "d250") for row in hits for d, _ in row)
    assert_exact(hits, scores, 10, live_ids)

    index.compact()
    assert len(published_manifest(path)["segments"]) == 1
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == [index._segments[0].name]
    compacted = LocalSparseIndex.open(path)
    assert compacted.count() == 398
    assert_exact(compacted.search(queries, top_k=10), scores, 10, live_ids)


def test_failed_save_leaves_previous_index_intact(tmp_path: Path, docs: SparseBatch, queries: SparseBatch,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "idx"
    with LocalSparseIndex.create(path, META) as index:
        index.add(ids_for(100), docs.select(range(100)))
    before = LocalSparseIndex.open(path).search(queries, 5)

    def broken_write(self: Segment, folder: Path) -> None:
        folder.mkdir()
        raise OSError("disk full")

    monkeypatch.setattr(Segment, "write", broken_write)
    index = LocalSparseIndex.open(path)
    index.add(ids_for(100, start=100), docs.select(range(100, 200)))
    with pytest.raises(OSError):
        index.save()
    again = LocalSparseIndex.open(path)
    assert again.count() == 100
    assert again.search(queries, 5) == before


def test_metadata_is_checked_at_open(tmp_path: Path) -> None:
    LocalSparseIndex.create(tmp_path / "idx", META).close()
    with pytest.raises(SpladeError, match="vocabulary hash-a"):
        LocalSparseIndex.open(tmp_path / "idx", expected=IndexMetadata("models/a", "hash-b", VOCAB))
    with pytest.raises(SpladeError, match="built with model 'models/a'"):
        LocalSparseIndex.open(tmp_path / "idx", expected=IndexMetadata("models/b", "hash-a", VOCAB))
    LocalSparseIndex.open(tmp_path / "idx", expected=IndexMetadata("models/b", "hash-a", VOCAB),
                          check_model=False)
    LocalSparseIndex.open(tmp_path / "idx", expected=IndexMetadata("models/a/", "hash-a", VOCAB))
    with pytest.raises(SpladeError, match="top_k"):
        LocalSparseIndex.open(tmp_path / "idx", expected=IndexMetadata("models/a", "hash-a", VOCAB, top_k=64),
                              for_add=True)


def test_bad_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SpladeError, match="index not found"):
        LocalSparseIndex.open(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(SpladeError, match="not a splade index"):
        LocalSparseIndex.open(tmp_path / "junk")
    with pytest.raises(SpladeError, match="already exists"):
        LocalSparseIndex.create(tmp_path / "junk", META)
    LocalSparseIndex.create(tmp_path / "idx", META).close()
    with pytest.raises(SpladeError, match="already exists"):
        LocalSparseIndex.create(tmp_path / "idx", META)
    with pytest.raises(SpladeError, match="vocabulary size"):
        LocalSparseIndex.open(tmp_path / "idx").add(["x"], random_batch(1, 3, 0, vocab=VOCAB + 1))


# -- pipeline and CLI with a real (tiny) encoder ------------------------------------------------------
def write_beir(folder: Path, texts: list[str], bad_line: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"_id": f"doc{i}", "title": "", "text": t} for i, t in enumerate(texts)]
    if bad_line:
        rows.append({"_id": "broken", "title": "x", "text": ""})
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                                         encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path):
    from splade.encoders import load_encoder

    return load_encoder(tiny_model_dir, device="cpu")


def test_index_corpus_and_search_queries_match_brute_force(tmp_path: Path, encoder) -> None:
    from conftest import TINY_TEXTS

    from splade.data.beir import Document
    from splade.indexer.pipeline import index_corpus, metadata_for, search_queries

    texts = sorted(set(TINY_TEXTS))
    documents = [Document(f"doc{i}", "", t) for i, t in enumerate(texts)]
    index = LocalSparseIndex.create(tmp_path / "idx", metadata_for(encoder, top_k=32))
    assert index_corpus(encoder, documents, index, batch_size=4, show_progress=False) == len(texts)
    index.close()
    queries = {"q1": "diabetes treatment", "q2": "한국의 수도"}
    run = search_queries(encoder, queries, LocalSparseIndex.open(tmp_path / "idx", metadata_for(encoder)), 5)
    doc_vectors = encoder.encode(texts, top_k=32).to_dense().astype(np.float64)
    query_vectors = encoder.encode(list(queries.values())).to_dense().astype(np.float64)
    for q, qid in enumerate(queries):
        exact = query_vectors[q] @ doc_vectors.T
        assert list(run[qid].values()) == pytest.approx(sorted(exact[exact > 0], reverse=True)[:5], rel=1e-4)
        best = next(iter(run[qid]))
        assert exact[int(best[3:])] == pytest.approx(exact.max(), rel=1e-4)


def test_cli_index_then_search(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from splade.cli import _register_all, app
    from splade.config.index import IndexConfig
    from splade.indexer.pipeline import build_index

    _register_all()
    corpus = write_beir(tmp_path / "beir", ["당뇨병 치료", "Seoul is the capital of Korea", "coffee is good"])
    out = tmp_path / "idx"
    result = CliRunner().invoke(app, ["index", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                                      "--index", str(out), "--top-k-doc", "64", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    manifest = published_manifest(out)
    assert manifest["metadata"]["top_k"] == 64 and manifest["segments"][0]["n_docs"] == 3
    result = CliRunner().invoke(app, ["search", "capital of Korea", "--model", str(tiny_model_dir),
                                      "--index", str(out), "--top-k", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "doc1" in result.output and "capital of Korea" in result.output

    # a corpus line without text fails before anything is built; the live index is untouched
    bad = write_beir(tmp_path / "bad", ["one", "two"], bad_line=True)
    with pytest.raises(SpladeError, match=r"corpus.jsonl:3: document 'broken' has no text"):
        build_index(IndexConfig(model=tiny_model_dir, corpus=bad, index=str(out)), show_progress=False)
    with pytest.raises(SpladeError, match=r"corpus.jsonl:3"):
        build_index(IndexConfig(model=tiny_model_dir, corpus=bad, index=str(tmp_path / "new")),
                    show_progress=False)
    assert not (tmp_path / "new").exists()
    assert LocalSparseIndex.open(out).count() == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # appending keeps the old documents and adds the new ones
    more = write_beir(tmp_path / "more", ["hypertension prevention"])
    (more / "corpus.jsonl").write_text('{"_id": "doc9", "text": "hypertension prevention"}\n')
    append = IndexConfig(model=tiny_model_dir, corpus=more, index=str(out), top_k_doc=64, append=True)
    build_index(append, show_progress=False)
    assert LocalSparseIndex.open(out).count() == 4
    with pytest.raises(SpladeError, match="top_k"):
        build_index(append.model_copy(update={"top_k_doc": None}), show_progress=False)

    # an append that fails half-way leaves the live index exactly as it was
    before = sorted(p.name for p in out.iterdir())
    calls = {"n": 0}
    real_add = LocalSparseIndex.add

    def failing_add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("disk full")
        return real_add(self, *args, **kwargs)

    many = write_beir(tmp_path / "many", [f"extra document {i}" for i in range(30)])
    monkeypatch.setattr(LocalSparseIndex, "add", failing_add)
    monkeypatch.setattr("splade.indexer.corpus.ENCODE_CHUNK", 10)
    with pytest.raises(OSError, match="disk full"):
        build_index(append.model_copy(update={"corpus": many}), show_progress=False)
    monkeypatch.undo()
    assert calls["n"] == 2  # the first chunk was added before the failure
    assert LocalSparseIndex.open(out).count() == 4
    assert sorted(p.name for p in out.iterdir()) == before


def test_cli_prints_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    import subprocess
    import sys

    bad = write_beir(tmp_path / "bad", ["one"], bad_line=True)
    command = [sys.executable, "-m", "splade", "index", "--model", str(tiny_model_dir), "--corpus", str(bad),
               "--index", str(tmp_path / "idx")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    expected = f"error: {bad / 'corpus.jsonl'}:2: document 'broken' has no text"
    assert proc.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "idx").exists()
