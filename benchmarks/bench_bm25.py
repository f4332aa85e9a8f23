"""BM25 hard-negative mining over msmarco-ko: splade.data.bm25 vs rank_bm25.BM25Okapi on the same Kiwi tokens.

Run: python benchmarks/bench_bm25.py [--subset 300] [--top-k 50]
Needs ../shared/data/beir/msmarco-ko (internal data, not shipped). rank-bm25 scores every document in
Python for each query, so it is timed on a subset of the queries and extrapolated to all (marked `*`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splade.data.beir import load_corpus, load_qrels, load_queries  # noqa: E402
from splade.data.bm25 import BM25  # noqa: E402
from splade.data.korean import get_korean_tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "beir" / "msmarco-ko")
    parser.add_argument("--subset", type=int, default=300, help="queries timed with rank-bm25")
    parser.add_argument("--top-k", type=int, default=50)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"skipped: needs {args.data} (msmarco-ko is internal data and is not shipped)")

    corpus = load_corpus(args.data / "corpus.jsonl")
    queries = load_queries(args.data / "queries.jsonl")
    train = load_qrels(args.data / "qrels" / "train.tsv")
    qids = [q for q in queries if q in train]
    doc_texts = [d.full_text for d in corpus.values()]
    print(f"msmarco-ko: {len(doc_texts):,} passages, {len(qids):,} train queries, top-{args.top_k}")

    tok = get_korean_tokenizer()
    t0 = time.perf_counter()
    doc_tokens = tok.tokenize_many(doc_texts)
    query_tokens = tok.tokenize_many([queries[q] for q in qids])
    t_tok = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = BM25(doc_tokens)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = ours.search_many(query_tokens, top_k=args.top_k)
    t_search = time.perf_counter() - t0

    from rank_bm25 import BM25Okapi

    t0 = time.perf_counter()
    ref = BM25Okapi(doc_tokens)
    r_build = time.perf_counter() - t0
    subset = query_tokens[: args.subset]
    t0 = time.perf_counter()
    ref_top = []
    max_diff = 0.0
    for i, q in enumerate(subset):
        scores = ref.get_scores(q)
        ref_top.append(np.argsort(-scores, kind="stable")[: args.top_k])
        top, got = results[i]
        max_diff = max(max_diff, float(np.max(np.abs(got - scores[top]), initial=0.0)))
    r_subset = time.perf_counter() - t0
    r_search = r_subset * len(query_tokens) / len(subset)
    overlap = np.mean([len(set(r[: len(o[0])]) & set(o[0])) / max(len(o[0]), 1)
                       for r, o in zip(ref_top, results[: len(subset)], strict=True)])

    t_e2e = _end_to_end(args.data, args.top_k)
    total, r_total = t_tok + t_build + t_search, t_tok + r_build + r_search
    rows = [
        ("Kiwi tokenize (shared, 1 thread)", t_tok, t_tok, ""),
        ("index build", t_build, r_build, ""),
        (f"top-{args.top_k} search, {len(qids):,} queries", t_search, r_search, "*"),
        ("mining total", total, r_total, "*"),
        ("data build, end to end (ours)", t_e2e, float("nan"), ""),
    ]
    print()
    print(f"| {'step':<34} | {'splade.data.bm25':>16} | {'rank_bm25':>10} | {'ratio':>7} |")
    print(f"|{'-' * 36}|{'-' * 18}|{'-' * 12}|{'-' * 9}|")
    for name, mine, theirs, mark in rows:
        ratio = f"{theirs / mine:6.1f}x" if theirs == theirs else "      -"
        other = f"{theirs:8.1f}s{mark:1}" if theirs == theirs else f"{'-':>10}"
        print(f"| {name:<34} | {mine:15.2f}s | {other} | {ratio} |")
    print(f"* rank_bm25 timed on {len(subset)} queries ({r_subset:.1f}s) and extrapolated to {len(qids):,}.")
    print(f"score agreement on those queries: max |diff| {max_diff:.2e}, "
          f"top-{args.top_k} overlap {overlap:.3f}")


def _end_to_end(data: Path, top_k: int) -> float:
    """Seconds of the whole build on msmarco-ko train: tokenize, index, mine, filter, dedup, split, write."""
    import tempfile

    from splade.config.data import BuildConfig, MiningSettings, SourceConfig
    from splade.data.build import build_training_data

    config = BuildConfig(sources=[SourceConfig(type="beir", path=str(data))],
                         mining=MiningSettings(top_k=top_k))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = build_training_data(config, Path(tmp) / "out")
        seconds = time.perf_counter() - t0
    print(f"end to end: {len(result.train) + len(result.val):,} triplets in {seconds:.1f}s")
    return seconds


if __name__ == "__main__":
    main()
