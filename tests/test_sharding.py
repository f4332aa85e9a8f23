"""Sharded encoding: `--shard i/n` and torchrun give the index an unsharded build gives, published once, by
the last shard to finish (embedded index and OpenSearch alike)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TINY_TEXTS
from test_index_local import write_beir

from splade.config.index import IndexConfig, IndexTarget
from splade.config.opensearch import OpenSearchSettings
from splade.errors import SpladeError
from splade.indexer.local import LocalSparseIndex
from splade.indexer.pipeline import build_index, open_index
from splade.indexer.sharding import FINISH, FINISHED, WAIT, FolderLedger, Shard, resolve_shard
from splade.windows import ENCODE_WINDOW


def local(model: Path, corpus: Path, out: Path, **settings) -> IndexConfig:  # noqa: ANN003
    return IndexConfig(model=model, corpus=corpus, index=str(out), **settings)


def corpus_texts(n: int, seed: int) -> list[str]:
    """`n` distinct texts of 2-12 words (distinct, so that no two documents tie on every query)."""
    rnd = random.Random(seed)
    words = " ".join(TINY_TEXTS).split()
    texts: dict[str, None] = {}
    while len(texts) < n:
        texts[" ".join(rnd.choice(words) for _ in range(rnd.randint(2, 12)))] = None
    return list(texts)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,500 documents: three encoder windows, split 1,024 + 1,476 over two shards."""
    return write_beir(tmp_path_factory.mktemp("big") / "beir", corpus_texts(2500, seed=0))


@pytest.fixture(scope="module")
def whole_index(big_corpus: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "idx"
    build_index(local(tiny_model_dir, big_corpus, out), show_progress=False)
    return out


@pytest.fixture(scope="module")
def queries(tiny_model_dir: Path):
    from splade.encoders import load_encoder

    encoder = load_encoder(tiny_model_dir, device="cpu")
    return encoder, encoder.encode(corpus_texts(60, seed=9))


def same_answers(expected: LocalSparseIndex | object, got: LocalSparseIndex | object, queries) -> None:
    """Identical hits, scores and order for every query, and the same stored texts."""
    hits = expected.search(queries, 20)
    assert got.search(queries, 20) == hits
    top = [doc for row in hits for doc, _ in row[:2]]
    assert got.fetch_texts(top) == expected.fetch_texts(top)
    assert got.count() == expected.count()


# -- which share a process encodes --------------------------------------------------------------------------

def test_shards_split_a_corpus_into_contiguous_whole_windows() -> None:
    for n_items, count in [(2500, 2), (2500, 3), (5000, 4), (10, 2), (0, 3)]:
        ranges = [Shard(i, count).positions(n_items, ENCODE_WINDOW) for i in range(count)]
        assert [p for r in ranges for p in r] == list(range(n_items))
        assert all(r.start % ENCODE_WINDOW == 0 for r in ranges if len(r))
    assert Shard(0, 2).positions(10, ENCODE_WINDOW) == range(0, 0)  # one window: the last shard takes it


def test_shard_from_option_or_torchrun_and_their_disagreement() -> None:
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert resolve_shard("1/3", {}) == Shard(1, 3)
    assert resolve_shard(None, torchrun) == Shard(1, 2, local_rank=1)
    assert resolve_shard("1/2", torchrun) == Shard(1, 2, local_rank=1)
    assert resolve_shard(None, {"WORLD_SIZE": "1"}) is None and resolve_shard("0/1", {}) is None
    with pytest.raises(SpladeError, match="--shard: 0/2 disagrees with torchrun"):
        resolve_shard("0/2", torchrun)
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(SpladeError, match="--shard: expected I/N"):
            Shard.parse(bad)


def test_exactly_one_of_two_shards_finishing_at_once_finishes(tmp_path: Path) -> None:
    ledgers = [FolderLedger(tmp_path / "job", "key", Shard(i, 2)) for i in range(2)]
    for ledger in ledgers:
        ledger.mark_done({"documents": 1})
    states: list[str] = []
    start = threading.Barrier(2)

    def finish(ledger: FolderLedger) -> None:
        start.wait()
        with ledger.finishing() as (state, _):
            states.append(state)

    threads = [threading.Thread(target=finish, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(states) == [FINISH, FINISHED]
    assert not (tmp_path / "job").exists()


def test_markers_of_another_job_do_not_count(tmp_path: Path) -> None:
    FolderLedger(tmp_path / "job", "old-corpus", Shard(1, 2)).mark_done({"documents": 5})
    ledger = FolderLedger(tmp_path / "job", "new-corpus", Shard(0, 2))
    ledger.mark_done({"documents": 3})
    with ledger.finishing() as (state, missing):
        assert (state, missing) == (WAIT, [1])


# -- the embedded index --------------------------------------------------------------------------------

def test_two_shard_commands_publish_the_index_an_unsharded_build_does(
        big_corpus: Path, whole_index: Path, tiny_model_dir: Path, tmp_path: Path, queries) -> None:
    from typer.testing import CliRunner

    from splade.cli import _register_all, app

    _register_all()
    out = tmp_path / "idx"
    earlier = write_beir(tmp_path / "old", ["an earlier corpus"])
    build_index(local(tiny_model_dir, earlier, out), show_progress=False)
    command = ["index", "--model", str(tiny_model_dir), "--corpus", str(big_corpus), "--index", str(out)]
    first = CliRunner().invoke(app, [*command, "--shard", "0/2"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "shard 0/2: encoded 1024 documents; waiting for shard(s) 1" in first.output
    assert LocalSparseIndex.open(out).count() == 1  # the earlier index serves until the last shard is done
    # run again: its part is recorded, so it only looks for the others
    again = build_index(local(tiny_model_dir, big_corpus, out, shard="0/2"), show_progress=False)
    assert again["state"] == WAIT and again["message"].startswith("shard 0/2: encoded 0 documents")

    second = CliRunner().invoke(app, [*command, "--shard", "1/2"], env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "shard 1/2: encoded 1476 documents; published the local index" in second.output
    assert "with 2500 documents from 2 shards" in second.output
    same_answers(LocalSparseIndex.open(whole_index), LocalSparseIndex.open(out), queries[1])
    assert not (tmp_path / "idx.parts").exists()


def test_sharded_append_replaces_documents_by_id(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    first = write_beir(tmp_path / "a", ["first text", "second text", "third text"])
    build_index(local(tiny_model_dir, first, out), show_progress=False)
    update = write_beir(tmp_path / "b", ["first text rewritten", "a new second text"])  # doc0, doc1 again
    for i in (1, 0):  # one window: shard 0 has nothing to encode, an empty part
        summary = build_index(local(tiny_model_dir, update, out, append=True, shard=f"{i}/2"),
                              show_progress=False)
    assert summary["state"] == FINISH
    index = LocalSparseIndex.open(out)
    assert index.count() == 3
    assert index.fetch_texts(["doc0", "doc1", "doc2"]) == ["first text rewritten", "a new second text",
                                                           "third text"]


def test_torchrun_on_two_processes_builds_the_same_index(
        big_corpus: Path, whole_index: Path, tiny_model_dir: Path, tmp_path: Path, queries) -> None:
    """`torchrun --nproc_per_node 2 -m splade index` on the CPU: each process encodes its share (RANK of
    WORLD_SIZE), and the result answers exactly like the unsharded build."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "splade", "index",
               "--model", str(tiny_model_dir), "--corpus", str(big_corpus), "--index", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "published the local index" in proc.stderr and "waiting for shard(s)" in proc.stderr
    same_answers(LocalSparseIndex.open(whole_index), LocalSparseIndex.open(out), queries[1])


# -- OpenSearch: one build index, the alias moved once --------------------------------------------------

def test_opensearch_shards_load_one_build_index_and_the_last_moves_the_alias(
        opensearch_url: str, tiny_model_dir: Path, tmp_path: Path, queries) -> None:
    encoder, vectors = queries
    corpus = write_beir(tmp_path / "beir", corpus_texts(1100, seed=1))  # shards of 1,024 and 76 documents
    settings = OpenSearchSettings(hosts=[opensearch_url], timeout=120)

    def remote(name: str, documents: Path, **extra) -> IndexConfig:  # noqa: ANN003
        return IndexConfig(model=tiny_model_dir, corpus=documents, index=name, backend="opensearch",
                           opensearch=settings, **extra)

    build_index(remote("os-whole", corpus), show_progress=False)
    earlier = write_beir(tmp_path / "old", ["an earlier corpus"])
    build_index(remote("os-sharded", earlier), show_progress=False)
    target = IndexTarget(backend="opensearch", index="os-sharded", opensearch=settings)

    first = build_index(remote("os-sharded", corpus, shard="1/2"), show_progress=False)
    assert first["state"] == WAIT
    sharded = open_index(target, encoder)
    assert sharded.count() == 1  # the alias still serves the earlier index
    indices = sharded.client.indices.get(index="os-sharded-shards-*")
    [build] = [name for name in indices if not name.endswith("-ledger")]
    ledger = sharded.client.get(index=f"{build}-ledger", id="shard-00001-of-00002")["_source"]
    assert ledger == {"shard": 1, "documents": 76}

    last = build_index(remote("os-sharded", corpus, shard="0/2"), show_progress=False)
    assert last["state"] == FINISH and "with 1100 documents from 2 shards" in last["message"]
    sharded = open_index(target, encoder)
    assert sharded.concrete_indices() == [build]
    assert not sharded.client.indices.exists(index=f"{build}-ledger")
    whole = IndexTarget(backend="opensearch", index="os-whole", opensearch=settings)
    same_answers(open_index(whole, encoder), sharded,
                 vectors.select(range(8)))

    rerun = build_index(remote("os-sharded", corpus, shard="1/2"), show_progress=False)
    assert rerun["state"] == FINISHED and "already serves this build" in rerun["notes"][0]


def test_cli_help_names_the_scale_out_options() -> None:
    proc = subprocess.run([sys.executable, "-m", "splade", "index", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    for option in ("--shard", "--mapping", "--two-phase", "--seismic"):
        assert option in proc.stdout
