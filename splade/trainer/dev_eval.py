"""Retrieval on held-out BEIR sets while training: what selects the best model and stops a run early.

Each set's sampled queries are scored against its corpus (the judged documents of those queries plus a
fixed sample of distractors, or the whole corpus) by exact sparse dot products, the way the indexes score,
and the configured metric (NDCG@10 by default) is averaged over the sets. Half of the distractors (by
default) are the documents lexically nearest to the queries, so a small sample still separates models
that a random one scores at 1.0. The samples are fixed for the run, so evaluations are comparable across
steps. Only the split's `select` half of the queries is used
(`dev.half`), so reports on the `report` half show a model on queries that never chose it. Texts are
encoded by the same `Encoder` that serves the model (its lengths, an inference-free query table).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from splade.config import DevConfig
from splade.data.beir import load_beir
from splade.data.bm25 import BM25
from splade.dev_split import in_half
from splade.encoders.torch_backend import TorchEncoder
from splade.evaluation.metrics import evaluate_run, mean_scores
from splade.model import SpladeModel
from splade.sparse import SparseBatch

log = logging.getLogger(__name__)


@dataclass
class DevSet:
    """One set's fixed sample: query texts, document ids and texts, relevance judgements."""

    name: str
    query_ids: list[str]
    queries: list[str]
    doc_ids: list[str]
    documents: list[str]
    qrels: dict[str, dict[str, int]]


def character_bigrams(text: str) -> list[str]:
    """The character bigrams of each lower-cased word (a one-letter word stays whole): a lexical key
    that needs no morphological analyser and fits Korean's agglutinated words."""
    return [word[i : i + 2] if len(word) > 1 else word for word in text.lower().split()
            for i in range(max(1, len(word) - 1))]


def near_documents(queries: list[str], pool: dict[str, str], count: int) -> list[str]:
    """Up to `count` ids of `pool` that BM25 over character bigrams ranks highest for the queries, taken
    round-robin: every query's best document, then every query's second best, and so on."""
    if count <= 0 or not pool:
        return []
    ids = sorted(pool)
    bm25 = BM25([character_bigrams(pool[i]) for i in ids])
    depth = -(-count // max(1, len(queries)))  # ceil: enough per query to fill `count`
    ranked = [hits for hits, _ in bm25.search_many([character_bigrams(q) for q in queries], depth)]
    chosen: dict[str, None] = {}
    for rank in range(depth):
        for hits in ranked:
            if rank < len(hits) and len(chosen) < count:
                chosen.setdefault(ids[hits[rank]])
    return list(chosen)


def sample_dev_set(
    path: str | Path,
    split: str,
    max_queries: int | None,
    max_documents: int | None,
    seed: int = 0,
    half: str = "all",
    near_share: float = 0.0,
) -> DevSet:
    """The set at `path` with at most `max_queries` judged queries of `half` (`splade.dev_split`) and
    `max_documents` documents: every judged document of the kept queries first, then distractors, a
    `near_share` of them the nearest to the queries by BM25 over character bigrams, the rest seeded."""
    data = load_beir(path, split=split)
    rnd = random.Random(seed)
    qids = in_half(sorted(data.judged_queries()), half)
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rnd.sample(qids, max_queries))
    qrels = {qid: data.qrels[qid] for qid in qids}
    judged = sorted({doc for judgements in qrels.values() for doc in judgements if doc in data.corpus})
    others = sorted(set(data.corpus) - set(judged))
    room = len(others) if max_documents is None else max(0, max_documents - len(judged))
    near: list[str] = []
    if room < len(others):
        pool = {doc: data.corpus[doc].full_text for doc in others}
        near = near_documents([data.queries[q] for q in qids], pool, round(room * near_share))
        others = sorted(set(others) - set(near))
    doc_ids = judged + sorted(near) + sorted(rnd.sample(others, min(room - len(near), len(others))))
    return DevSet(
        data.name,
        qids,
        [data.queries[q] for q in qids],
        doc_ids,
        [data.corpus[d].full_text for d in doc_ids],
        qrels,
    )


def as_csr(batch: SparseBatch) -> sp.csr_matrix:
    return sp.csr_matrix((batch.values, batch.indices, batch.indptr), shape=(len(batch), batch.vocab_size))


class DevEvaluator:
    """Scores a model on the configured dev sets; `evaluate()` returns the metric per set and their mean."""

    def __init__(self, config: DevConfig, seed: int, show_progress: bool = True) -> None:
        self.config = config
        self.show_progress = show_progress
        self.sets = [
            sample_dev_set(path, config.split, config.max_queries, config.max_documents, seed, config.half,
                           config.near_distractors)
            for path in config.sets
        ]
        for dev in self.sets:
            log.info("dev set %s: %d queries, %d documents", dev.name, len(dev.queries), len(dev.documents))

    def __bool__(self) -> bool:
        return bool(self.sets)

    def evaluate(self, model: SpladeModel) -> dict[str, float]:
        """`{"<set>/<metric>": value, ..., "dev/<metric>": mean, "dev/active_terms_*"}`."""
        was_training = model.training
        model.eval()
        encoder = TorchEncoder.from_model(model)  # as served: pooling, lengths, query table, cosine
        size = self.config.batch_size
        metric = self.config.metric
        results: dict[str, float] = {}
        terms_q, terms_d = [], []
        try:
            for dev in self.sets:
                label = f"dev {dev.name}"
                q = as_csr(encoder.encode_queries(dev.queries, batch_size=size, desc=f"{label} queries"))
                d = as_csr(
                    encoder.encode_documents(
                        dev.documents, batch_size=size, show_progress=self.show_progress, desc=label
                    )
                )
                terms_q.append(q.getnnz(axis=1).mean())
                terms_d.append(d.getnnz(axis=1).mean())
                run = self._run(dev, (q @ d.T).toarray())
                per_query = evaluate_run(dev.qrels, run, [metric]) if any(run.values()) else {}
                results[f"{dev.name}/{metric}"] = mean_scores(per_query, [metric])[metric]
        finally:
            model.train(was_training)
        results[f"dev/{metric}"] = float(np.mean([results[f"{d.name}/{metric}"] for d in self.sets]))
        results["dev/active_terms_query"] = float(np.mean(terms_q))
        results["dev/active_terms_doc"] = float(np.mean(terms_d))
        return results

    @staticmethod
    def _run(dev: DevSet, scores: np.ndarray, depth: int = 100) -> dict[str, dict[str, float]]:
        depth = min(depth, scores.shape[1])
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        return {
            qid: {dev.doc_ids[j]: float(scores[i, j]) for j in top[i] if scores[i, j] > 0}
            for i, qid in enumerate(dev.query_ids)
        }
