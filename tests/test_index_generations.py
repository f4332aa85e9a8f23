"""Generations of the embedded index: `reload` for long-lived readers, the previous layout read and upgraded,
and `drop`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_index_local import random_batch

from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata
from splade.indexer.local import LocalSparseIndex

VOCAB = 200
META = IndexMetadata("models/a", "hash-a", VOCAB)


def build(path: Path, n: int, seed: int, meta: IndexMetadata = META) -> None:
    with LocalSparseIndex.create(path, meta, overwrite=True) as index:
        index.add([f"d{seed}-{i}" for i in range(n)], random_batch(n, 10, seed=seed, vocab=meta.vocab_size))


def test_reload_moves_a_reader_to_the_latest_generation(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build(path, 30, seed=1)
    reader = LocalSparseIndex.open(path, expected=META)
    first = reader.generation
    assert reader.reload() is False  # nothing new
    build(path, 20, seed=2)
    assert reader.count() == 30 and reader.generation == first  # still its own generation
    assert reader.reload() is True
    assert reader.count() == 20 and reader.generation > first

    build(path, 5, seed=3, meta=IndexMetadata("models/b", "hash-a", VOCAB))
    with pytest.raises(SpladeError, match="built with model 'models/b'"):
        reader.reload()
    build(path, 5, seed=4, meta=IndexMetadata("models/c", "hash-c", VOCAB))
    plain = LocalSparseIndex.open(path)
    with pytest.raises(SpladeError, match="vocabulary hash-c"):
        LocalSparseIndex.open(path, expected=META).close()
    build(path, 6, seed=5, meta=IndexMetadata("models/d", "hash-d", VOCAB))
    with pytest.raises(SpladeError, match="vocabulary hash-d"):
        plain.reload()  # without `expected`: still the same vocabulary only
    assert reader.count() == 20 and plain.count() == 5  # both keep serving what they had


def test_an_index_of_the_previous_layout_is_read_and_upgraded(tmp_path: Path) -> None:
    """Version 1 kept one `manifest.json`, rewritten in place, and no pointer."""
    path = tmp_path / "idx"
    build(path, 30, seed=1)
    with LocalSparseIndex.open(path) as index:
        index.delete(["d1-0", "d1-1"])
    manifest_file = path / (path / "CURRENT").read_text().strip()
    manifest = json.loads(manifest_file.read_text())
    [entry] = manifest["segments"]
    (path / entry["deleted"]).rename(path / entry["name"] / "deleted-2.npy")
    entry["deleted"] = f"{entry['name']}/deleted-2.npy"
    del entry["texts"]
    manifest["version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    manifest_file.unlink()
    (path / "CURRENT").unlink()

    old = LocalSparseIndex.open(path)
    assert old.count() == 28 and old.generation == 2
    with LocalSparseIndex.open(path, for_add=True) as index:
        index.add(["new"], random_batch(1, 10, seed=9, vocab=VOCAB))
    assert index.recovered == []
    upgraded = LocalSparseIndex.open(path)
    assert upgraded.count() == 29 and upgraded.generation == 3
    assert not (path / "manifest.json").exists()
    assert (path / "CURRENT").read_text().strip() == "manifest-000003.json"
    assert json.loads((path / "manifest-000003.json").read_text())["version"] == 2


def test_drop_removes_the_index_while_open_readers_keep_their_generation(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build(path, 30, seed=1)
    queries = random_batch(4, 5, seed=2, vocab=VOCAB)
    reader = LocalSparseIndex.open(path)
    answers = reader.search(queries, 5)
    LocalSparseIndex.open(path).drop()
    assert list(tmp_path.iterdir()) == []
    assert reader.search(queries, 5) == answers
    with pytest.raises(SpladeError, match="index not found"):
        reader.reload()
