"""Embedded index vs brute force (and pyseismic-lsr where it installs) on synthetic SPLADE-like vectors.

Documents and queries share ONE vocabulary: a Zipf-like term popularity over a 30,522-term (BERT)
vocabulary under one random permutation, so a query's frequent terms are frequent in the documents
too, as with real SPLADE vectors. Documents have 100-130 distinct active terms, queries 20-30, both
drawn from that popularity without replacement; weights are positive and log-normal. The header
prints the average fraction of all postings a query touches, to judge how realistic the load is
(separate term distributions for documents and queries make that ~0.1% and flatter the index).

Prints build time, index size, p50/p99 single-query latency, QPS (one thread, queries one at a time)
and recall@10 against the exact top 10, side by side with ratios against brute force (a scipy.sparse
CSR matrix-vector product and `argpartition` per query), then the embedded index searched by 1 and by
N reader processes at once (each opens the index itself and runs every query; total QPS over the
wall time of all of them, p99 over all their latencies), then p50 latency as the corpus grows.

    python benchmarks/bench_index.py [--docs 100000] [--queries 500] [--zipf 1.0] [--readers 4]
                                     [--no-seismic] [--no-scaling]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table

from splade.indexer.base import IndexMetadata
from splade.indexer.local import LocalSparseIndex
from splade.sparse import SparseBatch

VOCAB = 30_522  # bert-base-uncased, as SPLADE models use
TOP_K = 10


class TermPopularity:
    """One Zipf-like term popularity (`p(rank) ~ 1 / rank**zipf`) over a shuffled vocabulary.

    Documents and queries must be drawn from the same instance: the shuffle is what makes frequent
    terms not simply the low ids, and sharing it is what makes queries hit the long posting lists.
    """

    def __init__(self, rng: np.random.Generator, zipf: float = 1.0) -> None:
        self.cdf = np.cumsum(1.0 / np.arange(1, VOCAB + 1) ** zipf)
        self.cdf /= self.cdf[-1]
        self.permutation = rng.permutation(VOCAB)  # rank -> term id

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        ranks = np.minimum(np.searchsorted(self.cdf, rng.random(size)), VOCAB - 1)
        return self.permutation[ranks]

    def sample(self, n: int, low: int, high: int, rng: np.random.Generator,
               chunk: int = 10_000) -> SparseBatch:
        """`n` rows with `low..high` distinct terms each (popularity-weighted, without replacement)."""
        parts = [self._sample_chunk(min(chunk, n - s), low, high, rng) for s in range(0, n, chunk)]
        return SparseBatch.concat(parts)

    def _sample_chunk(self, n: int, low: int, high: int, rng: np.random.Generator) -> SparseBatch:
        target = rng.integers(low, high + 1, size=n)
        rows = np.empty(0, dtype=np.int64)
        terms = np.empty(0, dtype=np.int64)
        missing = target.copy()
        while missing.any():  # oversample with replacement, keep first occurrences, top up the short rows
            extra = np.repeat(np.arange(n, dtype=np.int64), 3 * missing)
            rows = np.concatenate([rows, extra])
            terms = np.concatenate([terms, self.draw(extra.size, rng)])
            _, first = np.unique(rows * VOCAB + terms, return_index=True)
            first.sort()  # draw order; rows were appended in blocks, so order rows stably
            first = first[np.argsort(rows[first], kind="stable")]
            rows, terms = rows[first], terms[first]
            counts = np.bincount(rows, minlength=n)
            rank = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
            keep = rank < target[rows]
            rows, terms = rows[keep], terms[keep]
            missing = target - np.bincount(rows, minlength=n)
        keys = np.sort(rows * VOCAB + terms)  # sorted by row, then term id
        rows, terms = keys // VOCAB, keys % VOCAB
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        weights = rng.lognormal(mean=-0.5, sigma=0.7, size=keys.size).astype(np.float32)
        return SparseBatch(indptr, terms.astype(np.int32), weights, VOCAB)


def postings_touched(docs: SparseBatch, queries: SparseBatch) -> float:
    """Average over queries of (postings on the query's terms) / (all postings)."""
    df = np.bincount(docs.indices, minlength=VOCAB)
    per_query = np.add.reduceat(df[queries.indices], queries.indptr[:-1]) if queries.nnz else np.zeros(1)
    return float(per_query.mean() / max(1, docs.nnz))


def timed(search: Callable[[int], list[int]], n: int) -> tuple[np.ndarray, list[list[int]]]:
    """Per-query latencies (seconds) and the returned doc rows."""
    latencies, results = np.empty(n), []
    for q in range(n):
        start = time.perf_counter()
        results.append(search(q))
        latencies[q] = time.perf_counter() - start
    return latencies, results


def recall(results: list[list[int]], exact: list[list[int]]) -> float:
    pairs = zip(results, exact, strict=True)
    return float(np.mean([len(set(r) & set(e)) / max(1, len(e)) for r, e in pairs]))


def brute_force(docs: SparseBatch, queries: SparseBatch):
    matrix = sp.csr_matrix((docs.values, docs.indices, docs.indptr), shape=(len(docs), VOCAB))
    dense_queries = queries.to_dense()

    def search(q: int) -> list[int]:
        scores = matrix @ dense_queries[q]
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        return top[np.argsort(-scores[top], kind="stable")].tolist()

    return search


def local_index(docs: SparseBatch, queries: SparseBatch, folder: Path):
    start = time.perf_counter()
    with LocalSparseIndex.create(folder, IndexMetadata("synthetic", "synthetic", VOCAB)) as index:
        index.add([str(i) for i in range(len(docs))], docs)
    build = time.perf_counter() - start
    index = LocalSparseIndex.open(folder)  # memory-mapped, as `splade search` opens it
    singles = [queries.select([q]) for q in range(len(queries))]

    def search(q: int) -> list[int]:
        return [int(d) for d, _ in index.search(singles[q], TOP_K)[0]]

    return search, build, index.size_bytes()


def seismic_index(docs: SparseBatch, queries: SparseBatch):
    import seismic  # pyseismic-lsr: pip install -e '.[benchmarks]'

    string = seismic.get_seismic_string()
    start = time.perf_counter()
    dataset = seismic.SeismicDataset()
    for r, (ids, weights) in enumerate(docs.rows()):
        dataset.add_document(str(r), ids.astype(string), weights)
    index = seismic.SeismicIndex.build_from_dataset(dataset)
    build = time.perf_counter() - start
    prepared = [(ids.astype(string), weights.astype(np.float32)) for ids, weights in queries.rows()]

    def search(q: int) -> list[int]:
        ids, weights = prepared[q]
        hits = index.search(str(q), ids, weights, k=TOP_K, query_cut=len(ids), heap_factor=0.8)
        return [int(doc) for _, _, doc in hits]

    return search, build


def reader_process(folder: str, queries: SparseBatch, start: Any, out: Any) -> None:
    """One reader: open the index (memory-mapped), wait until every reader has, run each query once."""
    index = LocalSparseIndex.open(folder)
    singles = [queries.select([q]) for q in range(len(queries))]
    start.wait()
    began = time.monotonic()  # one clock across processes
    latencies, _ = timed(lambda q: index.search(singles[q], TOP_K), len(singles))
    out.put((latencies, began, time.monotonic()))


def concurrent_readers(folder: Path, queries: SparseBatch, readers: int) -> tuple[float, np.ndarray]:
    """Total QPS of `readers` processes searching at once, and all their latencies (seconds)."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(readers), context.Queue()
    workers = [context.Process(target=reader_process, args=(str(folder), queries, start, out))
               for _ in range(readers)]
    for worker in workers:
        worker.start()
    reports = [out.get() for _ in workers]
    for worker in workers:
        worker.join()
    wall = max(end for _, _, end in reports) - min(began for _, began, _ in reports)
    latencies = np.concatenate([lat for lat, _, _ in reports])
    return latencies.size / wall, latencies


def readers_table(folder: Path, queries: SparseBatch, readers: int) -> Table:
    """The embedded index searched by one reader process, then by `readers` at once."""
    table = Table(title=f"reader processes at once ({os.cpu_count()} CPUs), {len(queries):,} queries each")
    for column in ("readers", "total QPS", "QPS per reader", "p50 ms", "p99 ms", "total QPS vs 1 reader"):
        table.add_column(column, justify="right")
    single = None
    for n in sorted({1, readers}):
        qps, latencies = concurrent_readers(folder, queries, n)
        single = single or qps
        table.add_row(str(n), f"{qps:,.0f}", f"{qps / n:,.0f}", f"{np.percentile(latencies, 50) * 1e3:.2f}",
                      f"{np.percentile(latencies, 99) * 1e3:.2f}", f"{qps / single:.2f}x")
    return table


def head(batch: SparseBatch, n: int) -> SparseBatch:
    """The first `n` rows."""
    end = batch.indptr[n]
    return SparseBatch(batch.indptr[:n + 1], batch.indices[:end], batch.values[:end], batch.vocab_size)


def scaling_table(docs: SparseBatch, queries: SparseBatch) -> Table:
    """p50 latency of brute force and the embedded index as the corpus grows (same queries)."""
    table = Table(title="p50 latency (ms) as the corpus grows")
    for column in ("documents", "brute force", "LocalSparseIndex", "speedup vs brute"):
        table.add_column(column, justify="right")
    for n in sorted({len(docs) // 10, len(docs) // 3, len(docs)}):
        sub = head(docs, n)
        brute, _ = timed(brute_force(sub, queries), len(queries))
        with tempfile.TemporaryDirectory() as tmp:
            search, _, _ = local_index(sub, queries, Path(tmp) / "index")
            local, _ = timed(search, len(queries))
        b, lo = np.percentile(brute, 50) * 1e3, np.percentile(local, 50) * 1e3
        table.add_row(f"{n:,}", f"{b:.2f}", f"{lo:.2f}", f"{b / lo:.1f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--readers", type=int, default=4,
                        help="reader processes searching at once, beside one alone (0: skip)")
    parser.add_argument("--no-seismic", action="store_true", help="skip pyseismic-lsr")
    parser.add_argument("--no-scaling", action="store_true", help="skip the latency-vs-corpus-size table")
    parser.add_argument("--zipf", type=float, default=1.0, help="term popularity exponent (shared)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    popularity = TermPopularity(rng, args.zipf)  # one distribution for documents AND queries
    docs = popularity.sample(args.docs, 100, 130, rng)
    queries = popularity.sample(args.queries, 20, 30, rng)
    console = Console(width=160)
    console.print(f"{len(docs):,} documents ({docs.active_counts().mean():.0f} active terms on average, "
                  f"{docs.nnz:,} postings), {len(queries):,} queries "
                  f"({queries.active_counts().mean():.0f} terms), vocabulary {VOCAB:,}, "
                  f"shared Zipf popularity (exponent {args.zipf:g})")
    console.print(f"a query touches {postings_touched(docs, queries):.2%} of all postings on average")

    rows: list[tuple[str, float | None, int | None, np.ndarray, float, str]] = []
    brute = brute_force(docs, queries)
    brute_lat, exact = timed(brute, len(queries))
    rows.append(("brute force (scipy CSR @ q)", None, None, brute_lat, 1.0, ""))
    with tempfile.TemporaryDirectory() as tmp:
        search, build, size = local_index(docs, queries, Path(tmp) / "index")
        lat, results = timed(search, len(queries))
        rows.append(("splade LocalSparseIndex (mmap)", build, size, lat, recall(results, exact), "exact"))
        readers = readers_table(Path(tmp) / "index", queries, args.readers) if args.readers > 0 else None
    if args.no_seismic:
        rows.append(("pyseismic-lsr", None, None, np.array([]), float("nan"), "skipped (--no-seismic)"))
    else:
        try:
            search, build = seismic_index(docs, queries)
        except ImportError:
            rows.append(("pyseismic-lsr", None, None, np.array([]), float("nan"),
                         "not installed (pip install pyseismic-lsr)"))
        else:
            lat, results = timed(search, len(queries))
            rows.append(("pyseismic-lsr (default build)", build, None, lat, recall(results, exact),
                         "approximate"))

    table = Table(title=f"top-{TOP_K} retrieval, {len(docs):,} docs, one query at a time, one thread")
    columns = ("method", "build s", "size MB", "p50 ms", "p99 ms", "QPS", "QPS vs brute", "recall@10", "note")
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "note") else "right")
    brute_qps = len(brute_lat) / brute_lat.sum()
    for name, build_s, size_b, lat, rec, note in rows:
        if lat.size == 0:
            table.add_row(name, "-", "-", "-", "-", "-", "-", "-", note)
            continue
        qps = lat.size / lat.sum()
        table.add_row(name, "-" if build_s is None else f"{build_s:.1f}",
                      "-" if size_b is None else f"{size_b / 1e6:.0f}",
                      f"{np.percentile(lat, 50) * 1e3:.2f}", f"{np.percentile(lat, 99) * 1e3:.2f}",
                      f"{qps:,.0f}", f"{qps / brute_qps:.1f}x", f"{rec:.3f}", note)
    console.print(table)
    if readers is not None:
        console.print(readers)
    if not args.no_scaling:
        console.print(scaling_table(docs, queries))


if __name__ == "__main__":
    main()
