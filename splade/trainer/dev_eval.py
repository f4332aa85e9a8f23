"""Retrieval on held-out BEIR sets while training: what selects the best model and stops a run early.

Each set's sampled queries are scored against its corpus (the judged documents of those queries plus a
fixed sample of distractors, or the whole corpus) by exact sparse dot products, the way the indexes score,
and the configured metric (NDCG@10 by default) is averaged over the sets. The samples are fixed for the
run, so evaluations are comparable across steps.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from splade.config import DevConfig
from splade.data.beir import load_beir
from splade.evaluation.metrics import evaluate_run, mean_scores
from splade.model import SpladeModel
from splade.model.tokenization import TextTokenizer

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


def sample_dev_set(
    path,
    split: str,
    max_queries: int | None,
    max_documents: int | None,  # noqa: ANN001
    seed: int = 0,
) -> DevSet:
    """The set at `path` with at most `max_queries` judged queries and `max_documents` documents (every
    judged document of the kept queries first, then seeded distractors)."""
    data = load_beir(path, split=split)
    rnd = random.Random(seed)
    qids = sorted(data.judged_queries())
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rnd.sample(qids, max_queries))
    qrels = {qid: data.qrels[qid] for qid in qids}
    judged = sorted({doc for judgements in qrels.values() for doc in judgements if doc in data.corpus})
    others = sorted(set(data.corpus) - set(judged))
    room = len(others) if max_documents is None else max(0, max_documents - len(judged))
    doc_ids = judged + sorted(rnd.sample(others, min(room, len(others))))
    return DevSet(
        data.name,
        qids,
        [data.queries[q] for q in qids],
        doc_ids,
        [data.corpus[d].full_text for d in doc_ids],
        qrels,
    )


@torch.no_grad()
def encode_sparse(
    model: SpladeModel,
    tokenizer: TextTokenizer,
    texts: list[str],
    batch_size: int,
    pooling: str,
    device: torch.device,
) -> sp.csr_matrix:
    """`[texts, vocab]` CSR of the model's representations (length-sorted batches)."""
    encoded = tokenizer.encode(texts, model.max_length)
    order = np.argsort([-len(row) for row in encoded], kind="stable")
    blocks: list[sp.csr_matrix] = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    for start in range(0, len(order), batch_size):
        ids, mask = tokenizer.pad([encoded[i] for i in order[start : start + batch_size]])
        inputs = (torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        if autocast is not None:
            with autocast:
                reps = model(*inputs, pooling=pooling)
        else:
            reps = model(*inputs, pooling=pooling)
        blocks.append(sp.csr_matrix(reps.float().cpu().numpy()))
    matrix = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, model.vocab_size))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return matrix[inverse]


def _normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix


class DevEvaluator:
    """Scores a model on the configured dev sets; `evaluate()` returns the metric per set and their mean."""

    def __init__(self, config: DevConfig, seed: int) -> None:
        self.config = config
        self.sets = [
            sample_dev_set(path, config.split, config.max_queries, config.max_documents, seed)
            for path in config.sets
        ]
        for dev in self.sets:
            log.info("dev set %s: %d queries, %d documents", dev.name, len(dev.queries), len(dev.documents))

    def __bool__(self) -> bool:
        return bool(self.sets)

    def evaluate(self, model: SpladeModel, pooling: str, device: torch.device) -> dict[str, float]:
        """`{"<set>/<metric>": value, ..., "dev/<metric>": mean, "dev/active_terms_*"}`."""
        was_training = model.training
        model.eval()
        tokenizer = TextTokenizer(model.tokenizer)
        metric = self.config.metric
        results: dict[str, float] = {}
        terms_q, terms_d = [], []
        try:
            for dev in self.sets:
                q = encode_sparse(model, tokenizer, dev.queries, self.config.batch_size, pooling, device)
                d = encode_sparse(model, tokenizer, dev.documents, self.config.batch_size, pooling, device)
                terms_q.append(q.getnnz(axis=1).mean())
                terms_d.append(d.getnnz(axis=1).mean())
                if model.similarity == "cosine":
                    q, d = _normalise_rows(q), _normalise_rows(d)
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
