"""Writers killed with SIGKILL at each step of a save leave the previous generation serving; the next append
and rebuild succeed and remove what the killed writer left (embedded folders and OpenSearch build indices)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_index_local import random_batch

from splade.indexer.base import IndexMetadata
from splade.indexer.local import LocalSparseIndex
from splade.indexer.lock import WriterLock

VOCAB = 300
META = IndexMetadata("models/a", "hash-a", VOCAB)
TESTS = Path(__file__).resolve().parent

# Runs one write in a child process and kills it (SIGKILL, no cleanup of any kind) at the chosen point.
WRITER = """
import os, signal, sys
sys.path.insert(0, sys.argv[4])
from test_index_local import random_batch
from splade.indexer.local import generations, segment
from splade.indexer.local import index as local
from splade.indexer.base import IndexMetadata

path, op, point = sys.argv[1:4]

def kill_at(owner, name, nth, after=False):
    real, calls = getattr(owner, name), []
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if len(calls) == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, wrapper)

if point == "writing-segment":
    kill_at(segment.np, "save", 3)  # segment files half written (after the tombstones, if any)
elif point == "segment-written":
    kill_at(local, "publish", 1)  # segment complete, no manifest names it
elif point == "manifest-written":
    kill_at(generations, "atomic_file", 1)  # manifest written, CURRENT not yet pointed at it
elif point == "published":
    kill_at(local, "publish", 1, after=True)  # CURRENT swapped, superseded files not yet removed

meta = IndexMetadata("models/a", "hash-a", VOCAB)
ids = [f"n{i}" for i in range(50)]
if op == "append":
    index = local.LocalSparseIndex.open(path, expected=meta, for_add=True)
    index.delete(["d1", "d2", "a3"])
else:
    index = local.LocalSparseIndex.create(path, meta, overwrite=True)
index.add(ids, random_batch(50, 20, seed=7, vocab=VOCAB), [f"text {i}" for i in ids])
index.close()
sys.exit(3)
""".replace("VOCAB", str(VOCAB))

POINTS = ("writing-segment", "segment-written", "manifest-written", "published")


def two_segment_index(path: Path) -> LocalSparseIndex:
    with LocalSparseIndex.create(path, META) as index:
        index.add([f"d{i}" for i in range(100)], random_batch(100, 20, seed=1, vocab=VOCAB))
    with LocalSparseIndex.open(path, for_add=True) as index:
        index.add([f"a{i}" for i in range(20)], random_batch(20, 20, seed=2, vocab=VOCAB))
    return LocalSparseIndex.open(path)


def killed_writer(path: Path, op: str, point: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, str(path), op, point, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def assert_only_one_clean_generation(path: Path) -> None:
    manifest_name = (path / "CURRENT").read_text().strip()
    [segment] = json.loads((path / manifest_name).read_text())["segments"]
    expected = ["CURRENT", "LOCK", manifest_name, segment["name"]]
    assert sorted(p.name for p in path.iterdir()) == sorted(expected)
    files = sorted(p.name for p in (path / segment["name"]).iterdir())
    assert files == [
        "doc_ids.json",
        "postings_crc.npy",
        "postings_docs.npy",
        "postings_ptr.npy",
        "postings_weights.npy",
        "texts.json",
    ]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing left beside the folder


@pytest.mark.parametrize("op", ["append", "rebuild"])
@pytest.mark.parametrize("point", POINTS)
def test_a_writer_killed_at_any_point_is_recovered(tmp_path: Path, op: str, point: str) -> None:
    path = tmp_path / "idx"
    before = two_segment_index(path)
    queries = random_batch(5, 8, seed=3, vocab=VOCAB)
    answers = before.search(queries, 10)
    killed_writer(path, op, point)

    after = LocalSparseIndex.open(path)
    if point == "published":  # the new generation was published whole
        assert after.generation > before.generation
        assert after.count() == (167 if op == "append" else 50)
    else:  # the previous generation still serves, unchanged
        assert after.generation == before.generation
        assert after.count() == 120 and after.search(queries, 10) == answers

    with LocalSparseIndex.open(path, expected=META, for_add=True) as index:
        index.add(["z"], random_batch(1, 20, seed=9, vocab=VOCAB), ["z text"])
    assert index.recovered, "the killed writer's files were not found"
    assert LocalSparseIndex.open(path).count() == after.count() + 1

    with LocalSparseIndex.create(path, META, overwrite=True) as index:
        index.add(
            [f"r{i}" for i in range(10)],
            random_batch(10, 20, seed=4, vocab=VOCAB),
            [f"r{i}" for i in range(10)],
        )
    rebuilt = LocalSparseIndex.open(path)
    assert rebuilt.count() == 10 and rebuilt.fetch_texts(["r3"]) == ["r3"]
    assert_only_one_clean_generation(path)
    assert before.search(queries, 10) == answers  # a reader opened before it all answers as it did


def test_a_first_build_killed_before_publishing_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    killed_writer(path, "rebuild", "segment-written")
    assert not (path / "CURRENT").exists() and any(p.name.startswith("seg-") for p in path.iterdir())
    with LocalSparseIndex.create(path, META) as index:  # not "already exists": nothing was published
        index.add(["a"], random_batch(1, 20, seed=4, vocab=VOCAB), ["a"])
    assert [s for s in index.recovered if s.startswith("seg-")]
    assert LocalSparseIndex.open(path).count() == 1
    assert_only_one_clean_generation(path)


def test_leftovers_of_older_folder_swaps_are_removed(tmp_path: Path) -> None:
    """Earlier versions rebuilt into `.NAME.*.tmp` beside the index; the next writer removes those."""
    path = tmp_path / "idx"
    two_segment_index(path).close()
    (tmp_path / ".idx.abc123.tmp" / "seg-000001").mkdir(parents=True)
    with LocalSparseIndex.open(path, for_add=True) as index:
        index.add(["z"], random_batch(1, 20, seed=9, vocab=VOCAB))
    assert ".idx.abc123.tmp" in index.recovered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


# -- the command line -----------------------------------------------------------------------------
def write_corpus(folder: Path, prefix: str, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        json.dumps({"_id": f"{prefix}{i}", "text": f"document {prefix} number {i} about seoul"})
        for i in range(n)
    ]
    (folder / "corpus.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def splade_cli(*args: str, kill_before_publish: bool = False) -> subprocess.CompletedProcess:
    code = "import sys; from splade.cli import main; sys.argv = ['splade', *sys.argv[1:]]; "
    if kill_before_publish:  # just after encoding: the new segment is on disk, unpublished
        code += (
            "import os, signal; from splade.indexer.local import index as local; "
            "local.publish = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
        )
    return subprocess.run(
        [sys.executable, "-c", code + "main()", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_append_after_a_killed_append_and_a_second_writer(tmp_path: Path, tiny_model_dir: Path) -> None:
    from splade.config.index import IndexConfig
    from splade.indexer.pipeline import build_index

    path = tmp_path / "idx"
    model = ["--model", str(tiny_model_dir), "--index", str(path)]
    build_index(
        IndexConfig(model=tiny_model_dir, corpus=write_corpus(tmp_path / "c1", "a", 5), index=str(path)),
        show_progress=False,
    )
    more = write_corpus(tmp_path / "c2", "b", 3)
    killed = splade_cli("index", *model, "--corpus", str(more), "--append", kill_before_publish=True)
    assert killed.returncode == -signal.SIGKILL
    assert LocalSparseIndex.open(path).count() == 5

    again = splade_cli("index", *model, "--corpus", str(more), "--append")
    assert again.returncode == 0, again.stderr
    assert f"removed 1 unpublished files an interrupted write left in {path} (seg-" in again.stderr
    assert LocalSparseIndex.open(path).count() == 8

    with WriterLock(path):  # another writer holds the index: rebuilds and appends are refused at once
        for extra in ([], ["--append"]):
            refused = splade_cli("index", *model, "--corpus", str(more), *extra)
            assert refused.returncode == 2
            assert refused.stderr.strip().splitlines() == [
                f"error: index {path} is being written by pid {os.getpid()}"
            ]
    assert LocalSparseIndex.open(path).count() == 8


# -- OpenSearch -----------------------------------------------------------------------------------
def test_a_killed_opensearch_rebuild_leaves_a_build_index_the_next_run_removes(
    opensearch_url: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    from splade.config.index import IndexConfig
    from splade.config.opensearch import OpenSearchSettings
    from splade.indexer.connection import make_client
    from splade.indexer.pipeline import build_index

    settings = OpenSearchSettings(hosts=[opensearch_url])
    corpus = write_corpus(tmp_path / "c", "d", 6)
    target = IndexConfig(
        model=tiny_model_dir,
        corpus=corpus,
        index="killed",
        backend="opensearch",
        opensearch=settings,
        query_mode="rank_feature",
    )
    first = build_index(target, show_progress=False)
    assert first["documents"] == 6 and first["notes"] == []
    script = (
        "import os, signal, sys; from splade.indexer import opensearch as o; "
        "from splade.indexer.pipeline import build_index; "
        "from splade.config.index import IndexConfig; "
        "from splade.config.opensearch import OpenSearchSettings; "
        "real = o.OpenSearchSparseIndex.add\n"
        "def add(self, *a, **k):\n    real(self, *a, **k); os.kill(os.getpid(), signal.SIGKILL)\n"
        "o.OpenSearchSparseIndex.add = add\n"
        "build_index(IndexConfig(model=sys.argv[1], corpus=sys.argv[2], index='killed', "
        "backend='opensearch', opensearch=OpenSearchSettings(hosts=[sys.argv[3]]), "
        "query_mode='rank_feature'), show_progress=False)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_model_dir), str(corpus), opensearch_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    client = make_client(settings)
    indices = client.indices.get_alias(index="killed-*")
    stale = [name for name, body in indices.items() if not body["aliases"]]
    assert len(stale) == 1 and len(indices) == 2  # the killed build's index, beside the live one
    client.indices.create(index="killed-other-20260101000000000000")  # another alias's: not to remove

    second = build_index(
        target.model_copy(update={"corpus": write_corpus(tmp_path / "c2", "e", 4)}), show_progress=False
    )
    assert second["notes"] == [f"removed stale build index {stale[0]!r} (left by an interrupted rebuild)"]
    assert second["documents"] == 4
    other = "killed-other-20260101000000000000"
    left = client.indices.get_alias(index="killed-*")
    assert sorted(left) == sorted([other, *client.indices.get_alias(name="killed")])
    assert all(body["aliases"] for name, body in left.items() if name != other)
