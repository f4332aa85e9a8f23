"""A table of damaged embedded index files: every row is a one-line error naming the file, or a correct
result; never a wrong ranking or a traceback. `splade index --verify-files` finds every damage."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_index_local import META, VOCAB, published_manifest, random_batch

from splade.errors import SpladeError
from splade.indexer.local import LocalSparseIndex
from splade.sparse import SparseBatch

pytestmark = pytest.mark.faults


def build(path: Path) -> None:
    """Two segments with texts and tombstones."""
    docs = random_batch(100, 20, seed=5)
    ids = [f"d{i}" for i in range(100)]
    with LocalSparseIndex.create(path, META) as index:
        index.add(ids[:60], docs.select(range(60)), [f"text {i}" for i in ids[:60]])
    with LocalSparseIndex.open(path) as index:
        index.add(ids[60:], docs.select(range(60, 100)), [f"text {i}" for i in ids[60:]])
    with LocalSparseIndex.open(path) as index:
        index.delete(["d1", "d2", "d70"])


def queries() -> SparseBatch:
    """Random queries and one with every term, so that every posting list is read."""
    every = (np.arange(VOCAB), np.ones(VOCAB, dtype=np.float32))
    return SparseBatch.concat([random_batch(10, 8, seed=6), SparseBatch.from_rows([every], VOCAB)])


def answers(path: Path) -> tuple[list, list]:
    with LocalSparseIndex.open(path) as index:
        hits = index.search(queries(), 10)
        return hits, index.fetch_texts([d for d, _ in hits[-1]])


def segment(path: Path, n: int = 0) -> Path:
    return path / published_manifest(path)["segments"][n]["name"]


def edit_npy(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], str]:
    def damage(path: Path) -> str:
        file = segment(path) / name
        np.save(file, change(np.load(file)))
        return name
    return damage


def truncate(name: str) -> Callable[[Path], str]:
    def damage(path: Path) -> str:
        file = segment(path) / name if "/" not in name else path / name
        data = file.read_bytes()
        file.write_bytes(data[: len(data) // 2])
        return file.name
    return damage


def truncate_tombstones(path: Path) -> str:
    file = path / published_manifest(path)["segments"][0]["deleted"]
    file.write_bytes(file.read_bytes()[:-3])
    return file.name


def edit_doc_ids(change: Callable[[list], list]) -> Callable[[Path], str]:
    def damage(path: Path) -> str:
        file = segment(path) / "doc_ids.json"
        file.write_text(json.dumps(change(json.loads(file.read_text()))))
        return "doc_ids.json"
    return damage


def edit_manifest(key: str, value: str) -> Callable[[Path], str]:
    def damage(path: Path) -> str:
        name = (path / "CURRENT").read_text().strip()
        manifest = json.loads((path / name).read_text())
        manifest["segments"][0][key] = value
        (path / name).write_text(json.dumps(manifest))
        return name
    return damage


def remove(name: str) -> Callable[[Path], str]:
    def damage(path: Path) -> str:
        (segment(path) / name).unlink()
        return name
    return damage


def shuffled(a: np.ndarray) -> np.ndarray:
    return np.random.default_rng(0).permutation(a)


def set_at(index: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[index] = value
        return a
    return change


def reverse_longest_list(path: Path) -> str:
    folder = segment(path)
    ptr = np.load(folder / "postings_ptr.npy")
    t = int(np.argmax(np.diff(ptr)))
    for name in ("postings_docs.npy", "postings_weights.npy"):
        a = np.load(folder / name)
        a[ptr[t]:ptr[t + 1]] = a[ptr[t]:ptr[t + 1]][::-1].copy()
        np.save(folder / name, a)
    return "postings_docs.npy"


def nan_every_7th(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[::7] = np.nan
    return a


def reverse_slice(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[5:40] = a[5:40][::-1].copy()
    return a


# name: (damage, found without checksums too)
DAMAGES: dict[str, tuple[Callable[[Path], str], bool]] = {
    "truncated postings_docs": (truncate("postings_docs.npy"), True),
    "truncated postings_weights": (truncate("postings_weights.npy"), True),
    "truncated postings_ptr": (truncate("postings_ptr.npy"), True),
    "truncated doc_ids": (truncate("doc_ids.json"), True),
    "truncated texts": (truncate("texts.json"), True),
    "truncated postings_crc": (truncate("postings_crc.npy"), False),
    "truncated tombstones": (truncate_tombstones, True),
    "shuffled rows": (edit_npy("postings_docs.npy", shuffled), True),
    "negative row": (edit_npy("postings_docs.npy", set_at(0, -1)), True),
    "row out of range": (edit_npy("postings_docs.npy", set_at(-1, 10**6)), True),
    "postings out of order": (reverse_longest_list, True),
    "NaN weights": (edit_npy("postings_weights.npy", nan_every_7th), True),
    "zero weight": (edit_npy("postings_weights.npy", set_at(3, 0.0)), True),
    "weights x100": (edit_npy("postings_weights.npy", lambda a: a * 100), False),
    "one weight x100": (edit_npy("postings_weights.npy", set_at(11, 250.0)), False),
    "postings_ptr out of order": (edit_npy("postings_ptr.npy", reverse_slice), True),
    "postings_ptr as floats": (edit_npy("postings_ptr.npy", lambda a: a.astype(np.float64)), True),
    "reversed doc_ids": (edit_doc_ids(lambda ids: ids[::-1]), False),
    "duplicate doc_id": (edit_doc_ids(lambda ids: [ids[1], *ids[1:]]), True),
    "doc_ids not ids": (edit_doc_ids(lambda ids: [{"id": i} for i in ids]), True),
    "missing postings_weights": (remove("postings_weights.npy"), True),
    "segment name ../../x": (edit_manifest("name", "../../x"), True),
    "tombstones outside": (edit_manifest("deleted", "../../x/deleted-000009.npy"), True),
}


def strip_checksums(path: Path) -> None:
    """Make the index look written before checksums existed."""
    name = (path / "CURRENT").read_text().strip()
    manifest = json.loads((path / name).read_text())
    for entry in manifest["segments"]:
        entry.pop("checksums")
        entry.pop("deleted_checksum", None)
        (path / entry["name"] / "postings_crc.npy").unlink()
    (path / name).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[list, list]]:
    path = tmp_path_factory.mktemp("clean") / "idx"
    build(path)
    return path, answers(path)


def outcome(path: Path) -> tuple[list, list] | str:
    """The answers, or the one-line error; anything else (a traceback) fails the test."""
    try:
        return answers(path)
    except SpladeError as err:
        message = str(err)
        assert "\n" not in message
        return message


@pytest.mark.parametrize("old", [False, True], ids=["checksums", "before-checksums"])
@pytest.mark.parametrize("name", list(DAMAGES))
def test_every_damage_is_one_line_naming_the_file_or_a_correct_result(
        name: str, old: bool, tmp_path: Path, clean: tuple[Path, tuple[list, list]]) -> None:
    damage, structural = DAMAGES[name]
    if old and not structural:
        pytest.skip("without checksums this damage keeps a valid structure: only a rebuild adds checksums")
    path = tmp_path / "idx"
    build(path)
    if old:
        strip_checksums(path)
        assert answers(path) == clean[1]  # an index written before checksums still opens and answers
    damaged_file = damage(path)
    result = outcome(path)
    assert isinstance(result, str), f"{name}: wrong answers were served" if result != clean[1] else name
    assert damaged_file in result, result
    assert not (tmp_path.parent / "x").exists()  # nothing escaped the index folder
    if not old:
        with pytest.raises(SpladeError, match=damaged_file.replace(".", r"\.")):
            LocalSparseIndex.verify(path)


def test_verify_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build(path)
    command = [sys.executable, "-m", "splade", "index", "--verify-files", "--index", str(path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "97 documents in 2 segments verified" in proc.stdout, proc.stderr
    edit_npy("postings_weights.npy", lambda a: a * 100)(path)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    [line] = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and line.startswith("error: ") and "postings_weights.npy" in line
    old = tmp_path / "old"
    build(old)
    strip_checksums(old)
    proc = subprocess.run([*command[:-1], str(old)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "structure checked only; rebuild it" in proc.stdout


def test_fully_deleted_segments_are_reclaimed_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build(path)
    first = published_manifest(path)["segments"][0]["name"]
    with LocalSparseIndex.open(path) as index:
        index.delete([f"d{i}" for i in range(60)])
    names = [entry["name"] for entry in published_manifest(path)["segments"]]
    assert first not in names and not (path / first).exists()
    with LocalSparseIndex.open(path) as index:
        assert index.count() == 39
        index.add(["new"], random_batch(1, 5, seed=8))
        index.delete(["d61"])
    with LocalSparseIndex.open(path) as index:
        assert index.count() == 39 and index.fetch_texts(["d62", "d61", "new"]) == ["text d62", None, None]


def test_a_manifest_naming_a_folder_outside_never_lets_a_write_touch_it(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build(path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("user data")
    edit_manifest("name", "../victim")(path)
    with pytest.raises(SpladeError, match="damaged manifest"):
        LocalSparseIndex.open(path, for_add=True)
    with LocalSparseIndex.create(path, META, overwrite=True) as index:  # a rebuild replaces the damage
        index.add(["a"], random_batch(1, 5, seed=9))
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert LocalSparseIndex.verify(path)["documents"] == 1
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("seg-")) == ["seg-000004"]
