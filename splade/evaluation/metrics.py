"""Retrieval metrics through pytrec_eval: NDCG@10, MRR@10, Recall@100 and Recall@1000, per query and mean."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pytrec_eval

from splade.errors import SpladeError

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100", "recall@1000")
METRIC_LABELS = {"ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "recall@100": "R@100", "recall@1000": "R@1000"}
_TREC_NAMES = {"ndcg@10": "ndcg_cut_10", "recall@100": "recall_100", "recall@1000": "recall_1000"}


def ranked(results: Mapping[str, float]) -> list[tuple[str, float]]:
    """Documents in trec_eval's order: score descending, ties broken by document id descending."""
    return sorted(results.items(), key=lambda item: (item[1], item[0]), reverse=True)


def truncate_run(run: Mapping[str, Mapping[str, float]], depth: int) -> Run:
    """Keep each query's `depth` best documents (in trec_eval's order)."""
    return {qid: dict(ranked(docs)[:depth]) for qid, docs in run.items()}


def evaluate_run(qrels: Qrels, run: Mapping[str, Mapping[str, float]],
                 metrics: Iterable[str] = METRICS) -> dict[str, dict[str, float]]:
    """Per-query scores `{qid: {metric: value}}` for every judged query in `qrels`.

    A judged query the run has no results for scores 0 on every metric (pytrec_eval would silently
    drop it and inflate the mean). MRR@10 is `recip_rank` over the run cut to its top 10.
    """
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown} (known: {', '.join(METRICS)})")
    if not qrels:
        raise SpladeError("no relevance judgements to evaluate against")
    if not any(run.get(qid) for qid in qrels):
        raise SpladeError("the run is empty: no results for any judged query")
    # pytrec_eval wants float scores and plain dicts; queries without results are scored 0 below.
    clean: Run = {qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items()
                  if qid in qrels and docs}
    scores: dict[str, dict[str, float]] = {qid: dict.fromkeys(metrics, 0.0) for qid in qrels}
    trec = {_TREC_NAMES[m] for m in metrics if m in _TREC_NAMES}
    if trec:
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, trec)
        for qid, values in evaluator.evaluate(clean).items():
            for metric in metrics:
                if metric in _TREC_NAMES:
                    scores[qid][metric] = float(values[_TREC_NAMES[metric]])
    if "mrr@10" in metrics:
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
        for qid, values in evaluator.evaluate(truncate_run(clean, 10)).items():
            scores[qid]["mrr@10"] = float(values["recip_rank"])
    return scores


def mean_scores(per_query: Mapping[str, Mapping[str, float]],
                metrics: Iterable[str] = METRICS) -> dict[str, float]:
    """Average of each metric over the queries."""
    return {m: float(np.mean([row[m] for row in per_query.values()])) if per_query else 0.0 for m in metrics}
