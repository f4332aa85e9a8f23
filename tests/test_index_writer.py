"""`SparseIndex.writer`: publish on a clean exit, keep the previous version serving on an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_index_local import META, random_batch

from splade.config.index import IndexTarget
from splade.errors import SpladeError
from splade.indexer.local import LocalSparseIndex
from splade.indexer.opensearch import Layout, OpenSearchSettings, OpenSearchSparseIndex
from splade.indexer.pipeline import backend_of


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_backend_is_chosen_in_one_place() -> None:
    assert backend_of(IndexTarget(index="x")) is LocalSparseIndex
    assert backend_of("opensearch") is OpenSearchSparseIndex
    with pytest.raises(SpladeError):
        backend_of("elastic")


def test_local_writer_publishes_on_exit_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    with LocalSparseIndex.writer(path, META) as index:
        index.add(_ids("a", 5), random_batch(5, 10, seed=1))
    with LocalSparseIndex.writer(IndexTarget(index=str(path)), META, append=True) as index:
        index.add(_ids("b", 3), random_batch(3, 10, seed=2))
    reader = LocalSparseIndex.open(path, expected=META)
    assert reader.count() == 8 and reader.generation == 2


def test_local_writer_publishes_nothing_on_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    with LocalSparseIndex.writer(path, META) as index:
        index.add(_ids("a", 5), random_batch(5, 10, seed=1))
    with pytest.raises(RuntimeError), LocalSparseIndex.writer(path, META) as index:
        index.add(_ids("b", 3), random_batch(3, 10, seed=2))
        raise RuntimeError("stop")
    with pytest.raises(RuntimeError), LocalSparseIndex.writer(path, META, append=True) as index:
        index.add(_ids("c", 3), random_batch(3, 10, seed=3))
        index.delete(["a0"])
        raise RuntimeError("stop")
    reader = LocalSparseIndex.open(path, expected=META)
    assert reader.count() == 5 and reader.generation == 1
    with LocalSparseIndex.writer(path, META, append=True) as index:  # the lock was given back
        index.add(_ids("d", 1), random_batch(1, 10, seed=4))
    assert LocalSparseIndex.open(path).count() == 6


def test_local_writer_refuses_an_opensearch_layout(tmp_path: Path) -> None:
    with pytest.raises(SpladeError, match="--backend opensearch"):
        LocalSparseIndex.writer(tmp_path / "idx", META, layout=Layout()).__enter__()


def test_opensearch_writer_moves_the_alias_on_exit_only(opensearch_url: str) -> None:
    target = IndexTarget(backend="opensearch", index="writer-test",
                         opensearch=OpenSearchSettings(hosts=[opensearch_url], timeout=30))
    options = {"id_to_token": [f"tok{i}" for i in range(META.vocab_size)]}
    with OpenSearchSparseIndex.writer(target, META, **options) as index:
        index.add(_ids("a", 5), random_batch(5, 10, seed=1))
    with pytest.raises(RuntimeError), OpenSearchSparseIndex.writer(target, META, **options) as index:
        index.add(_ids("b", 3), random_batch(3, 10, seed=2))
        raise RuntimeError("stop")
    with OpenSearchSparseIndex.writer(target, META, append=True, keep_open=True, **options) as index:
        index.add(_ids("c", 2), random_batch(2, 10, seed=3))
    with index:
        assert index.count() == 7 and len(index.concrete_indices()) == 1
        assert index.write_notes() == []
