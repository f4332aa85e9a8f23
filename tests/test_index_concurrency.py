"""Readers in other processes search one embedded index while a writer rebuilds, appends, deletes and
compacts it: no reader ever fails, and every answer is exactly what the generation it reports holds."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_index_local import random_batch

from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata
from splade.indexer.local import LocalSparseIndex
from splade.indexer.lock import WriterLock
from splade.sparse import SparseBatch

VOCAB = 300
META = IndexMetadata("models/a", "hash-a", VOCAB)
TOP_K = 5
Content = dict[str, tuple[np.ndarray, np.ndarray, str]]  # doc id -> (term ids, weights, text)


def queries() -> SparseBatch:
    return random_batch(6, 8, seed=99, vocab=VOCAB)


def operations(rounds: int) -> list[tuple[str, int]]:
    """The writer's script: each step publishes one generation."""
    steps: list[tuple[str, int]] = []
    for r in range(rounds):
        steps += [("rebuild", r), ("append", r), ("replace-and-delete", r)]
        if r % 2:
            steps.append(("compact", r))
    return steps


def docs_for(step: str, r: int) -> tuple[list[str], SparseBatch]:
    """The documents a step adds: fresh ones for a rebuild or an append, new vectors for old ids."""
    if step == "rebuild":
        return [f"r{r}-{i}" for i in range(120)], random_batch(120, 20, seed=1000 + r, vocab=VOCAB)
    if step == "append":
        return [f"r{r}-a{i}" for i in range(40)], random_batch(40, 20, seed=2000 + r, vocab=VOCAB)
    return [f"r{r}-{i}" for i in range(0, 30, 3)], random_batch(10, 20, seed=3000 + r, vocab=VOCAB)


def deleted_by(step: str, r: int) -> list[str]:
    return [f"r{r}-{i}" for i in range(1, 30, 3)] + [f"r{r}-a{i}" for i in range(5)] \
        if step == "replace-and-delete" else []


def apply(content: Content, step: str, r: int) -> Content:
    """What the index holds after `step` (the model the readers' answers are checked against)."""
    if step == "compact":
        return content
    content = {} if step == "rebuild" else dict(content)
    for doc_id in deleted_by(step, r):
        content.pop(doc_id, None)
    ids, vectors = docs_for(step, r)
    for row, doc_id in enumerate(ids):
        terms, weights = vectors.row(row)
        content[doc_id] = (terms, weights, f"{doc_id} written by {step} {r}")
    return content


def run_step(path: Path, step: str, r: int) -> int:
    """Perform one step on the index; returns the generation it published."""
    if step == "compact":
        index = LocalSparseIndex.open(path)
        index.compact()
        index.close()
        return index.generation
    index = LocalSparseIndex.create(path, META, overwrite=True) if step == "rebuild" \
        else LocalSparseIndex.open(path, expected=META, for_add=True)
    index.delete(deleted_by(step, r))
    ids, vectors = docs_for(step, r)
    index.add(ids, vectors, [f"{doc_id} written by {step} {r}" for doc_id in ids])
    index.close()
    return index.generation


def expected_answers(content: Content) -> list[list[tuple[str, float]]]:
    """Brute-force top-k (doc id, score) per query over `content`."""
    ids = list(content)
    docs = SparseBatch.from_rows([(t, w) for t, w, _ in content.values()], VOCAB)
    scores = queries().to_dense().astype(np.float64) @ docs.to_dense().astype(np.float64).T
    answers = []
    for row in scores:
        order = [i for i in np.argsort(-row, kind="stable") if row[i] > 0][:TOP_K]
        answers.append([(ids[i], float(row[i])) for i in order])
    return answers


def reader(path: str, mode: str, ready: Any, done: Any, out: Any) -> None:
    """Search in a loop until the writer is done (then once more); report what each generation answered.

    `fresh`: open the index anew for every search; `reload`: one index, `reload()` before each search;
    `pinned`: one index opened before the writer started, never reloaded.
    """
    seen: dict[tuple[int, tuple], int] = {}  # (generation, answer) -> how often
    errors: list[str] = []
    generations: list[int] = []
    pinned = LocalSparseIndex.open(path) if mode != "fresh" else None
    batch = queries()
    ready.set()
    last_round = False
    while not last_round:
        last_round = done.is_set()
        try:
            if mode == "fresh":
                index = LocalSparseIndex.open(path)
            else:
                index = pinned
                if mode == "reload":
                    index.reload()
            hits = index.search(batch, TOP_K)
            texts = [index.fetch_texts([d for d, _ in row]) for row in hits]
            answer = tuple(tuple((d, s, t) for (d, s), t in zip(row, text, strict=True))
                           for row, text in zip(hits, texts, strict=True))
            seen[(index.generation, answer)] = seen.get((index.generation, answer), 0) + 1
            if generations and index.generation < generations[-1]:
                errors.append(f"generation went back from {generations[-1]} to {index.generation}")
            generations.append(index.generation)
        except Exception:
            errors.append(traceback.format_exc())
    out.put((mode, seen, errors, len(generations)))


def test_readers_only_ever_see_whole_published_generations(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    steps = operations(rounds=5)
    context = multiprocessing.get_context("spawn")
    published = {run_step(path, "rebuild", 99): apply({}, "rebuild", 99)}
    done, out = context.Event(), context.Queue()
    modes = ("fresh", "reload", "pinned")
    ready = [context.Event() for _ in modes]
    workers = [context.Process(target=reader, args=(str(path), mode, event, done, out))
               for mode, event in zip(modes, ready, strict=True)]
    for worker in workers:
        worker.start()
    for event in ready:
        assert event.wait(timeout=120), "a reader did not start"
    content = published[min(published)]
    for step, r in steps:  # the writer: every step publishes a generation while the readers search
        content = apply(content, step, r)
        published[run_step(path, step, r)] = content
    done.set()
    reports = [out.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert len(published) == len(steps) + 1

    answers = {generation: expected_answers(content) for generation, content in published.items()}
    texts = {generation: {d: t for d, (_, _, t) in content.items()}
             for generation, content in published.items()}
    for mode, seen, errors, searches in reports:
        assert errors == [], f"{mode} reader: {errors[:3]}"
        observed = {generation for generation, _ in seen}
        assert observed <= set(published), mode
        for generation, answer in seen:
            for query, (row, want) in enumerate(zip(answer, answers[generation], strict=True)):
                assert [d for d, _, _ in row] == [d for d, _ in want], (mode, generation, query)
                assert [s for _, s, _ in row] == pytest.approx([s for _, s in want], rel=1e-5)
                assert [t for d, _, t in row] == [texts[generation][d] for d, _, _ in row]
        if mode == "pinned":  # opened before the first rebuild, it keeps answering from that generation
            assert observed == {min(published)} and searches > 1
        else:  # each saw the first and the last generation at least
            assert {min(published), max(published)} <= observed, mode


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    import os

    path = tmp_path / "idx"
    run_step(path, "rebuild", 0)
    writer = LocalSparseIndex.open(path)
    writer.delete(["r0-1"])  # the first change takes the lock
    other = LocalSparseIndex.open(path)
    assert other.count() == 120  # readers never wait for the lock
    message = f"index {path} is being written by pid {os.getpid()}"
    with pytest.raises(SpladeError, match=f"^{message}$"):
        other.add(["x"], random_batch(1, 3, seed=1, vocab=VOCAB))
    with pytest.raises(SpladeError, match=message):
        LocalSparseIndex.create(path, META, overwrite=True)
    writer.close()  # publishes and releases
    other = LocalSparseIndex.open(path)
    assert other.count() == 119
    other.add(["x"], random_batch(1, 3, seed=1, vocab=VOCAB))
    other.close()
    assert LocalSparseIndex.open(path).count() == 120


def test_a_killed_lock_holder_does_not_block_the_next_writer(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    script = ("import os, signal, sys; from splade.indexer.lock import WriterLock; "
              "WriterLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "idx")], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "idx" / "LOCK").read_text().strip().isdigit()  # the dead writer's pid is still written
    with WriterLock(tmp_path / "idx") as lock:  # but the kernel released its lock
        assert lock.held
