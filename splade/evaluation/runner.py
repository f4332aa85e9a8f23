"""Run every system on every dataset (or on one merged corpus) and collect metrics, tests and costs."""

from __future__ import annotations

import dataclasses
import logging
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splade import __version__
from splade.config.evaluate import EvalConfig
from splade.data.beir import BeirDataset, Document, load_beir
from splade.data.build import normalize
from splade.dev_split import in_half
from splade.errors import SpladeError
from splade.evaluation.base import RetrievalSystem
from splade.evaluation.baselines import BM25System, DenseSystem, TeacherSystem
from splade.evaluation.metrics import METRICS, Run, evaluate_run, mean_scores
from splade.evaluation.runs import RunSystem
from splade.evaluation.sharded import EncodingJob, encode_share
from splade.evaluation.significance import Comparison, apply_holm, compare
from splade.evaluation.systems import SpladeSystem
from splade.indexer.opensearch.layouts import Layout
from splade.ledger import resolve_shard
from splade.model.artifact import model_identity
from splade.versions import library_versions

logger = logging.getLogger(__name__)


@dataclass
class SystemResult:
    """One system on one dataset: mean and per-query metrics, its run and what it cost."""

    name: str
    kind: str
    description: str
    baseline: bool
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: Run
    efficiency: dict[str, float]
    lengths: dict[str, int | str] = field(default_factory=dict)  # the longest input read, per side

    def to_dict(self, with_run: bool = False) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "run"}
        if with_run:
            data["run"] = self.run
        return data


@dataclass
class DatasetResult:
    """All systems on one dataset's judged queries."""

    name: str
    split: str
    n_queries: int
    n_docs: int
    corpus: str  # "own" or "merged"
    systems: list[SystemResult] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "n_queries": self.n_queries, "n_docs": self.n_docs,
                "corpus": self.corpus, "systems": [s.to_dict() for s in self.systems],
                "comparisons": [c.to_dict() for c in self.comparisons]}


@dataclass
class EvalResult:
    """Everything `write_report` needs."""

    config: EvalConfig
    datasets: list[DatasetResult]
    started: str
    seconds: float
    environment: dict[str, Any]  # python, platform, splade's version and its libraries' versions
    models: dict[str, str] = field(default_factory=dict)  # system name -> the model's identity

    @property
    def baselines(self) -> list[str]:
        names: list[str] = []
        for dataset in self.datasets:
            names += [s.name for s in dataset.systems if s.baseline and s.name not in names]
        return names

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "started": self.started, "seconds": self.seconds,
                "environment": self.environment, "models": self.models, "metrics": list(METRICS),
                "baselines": self.baselines, "query_half": self.config.query_half,
                "alpha": self.config.alpha, "datasets": [d.to_dict() for d in self.datasets]}


def build_systems(config: EvalConfig) -> list[RetrievalSystem]:
    """Baselines first (later systems are tested against them), then the sanity column, then SPLADE.

    The teacher follows the BM25 and dense systems it fuses (they index each corpus before it)."""
    systems: list[RetrievalSystem] = []
    bm25 = BM25System("bm25", "kiwi") if config.bm25 else None
    systems += [bm25] if bm25 else []
    if config.bm25_pieces:
        systems.append(BM25System("bm25-pieces", "pieces", pieces_model=config.bm25_pieces))
    if config.dense:
        dense = DenseSystem(config.dense, name="dense", query_prefix=config.dense_query_prefix,
                            passage_prefix=config.dense_passage_prefix, max_length=config.dense_max_length,
                            batch_size=config.batch_size, device=config.device)
        systems.append(dense)
        if config.teacher and bm25 is not None:
            systems.append(TeacherSystem(bm25, dense, config.teacher_bm25_weight,
                                         config.teacher_cross_lingual_weight))
    if config.bm25_whitespace:
        systems.append(BM25System("bm25-whitespace", "whitespace", baseline=False))
    layouts = opensearch_layouts(config)
    for name, path in config.splade:
        system = SpladeSystem(name, path, backend=config.backend, opensearch=config.opensearch,
                              encoder_backend=config.encoder_backend, device=config.device,
                              batch_size=config.batch_size, doc_top_k=config.doc_top_k,
                              query_top_k=config.query_top_k, query_max_length=config.query_max_length,
                              doc_max_length=config.doc_max_length,
                              layout=layouts[0], existing_index=config.indexes.get(name))
        if system.existing_index is not None:  # searched as it is: one column, no layout variants
            systems.append(system)
            continue
        systems += [system] + [system.variant(f"{name}.{layout.name}", layout) for layout in layouts[1:]]
        if len(layouts) > 1:
            system.name = f"{name}.{layouts[0].name}"
    if config.runs:
        systems += [RunSystem(name, path) for name, path in config.runs]
    return systems


def opensearch_layouts(config: EvalConfig) -> list[Any]:
    """The OpenSearch layouts each SPLADE model is evaluated in (one column each); [None] for local."""
    if config.backend != "opensearch":
        if config.mappings != ["rank_features"] or config.two_phase or config.seismic:
            raise SpladeError("--mapping, --two-phase and --seismic need --backend opensearch")
        return [None]
    if not config.mappings:
        raise SpladeError("--mapping: give at least one of rank_features, sparse_vector")
    layouts = [Layout.build(m, seismic=config.seismic if m == "sparse_vector" else ()) for m in
               dict.fromkeys(config.mappings)]
    if config.seismic and all(layout.mapping != "sparse_vector" for layout in layouts):
        raise SpladeError("--seismic: SEISMIC parameters need --mapping sparse_vector")
    return layouts + ([Layout.build(two_phase=True)] if config.two_phase else [])


def load_datasets(config: EvalConfig) -> list[BeirDataset]:
    """Load each dataset (a qrels id missing from the corpus or a missing split is one clear error)."""
    datasets = [load_beir(path, split=config.split, duplicate_ids=config.duplicate_ids)
                for path in config.datasets]
    seen: set[str] = set()
    for path, dataset in zip(config.datasets, datasets, strict=True):
        if dataset.name in seen:
            raise SpladeError(f"--dataset: two datasets are named {dataset.name!r}")
        seen.add(dataset.name)
        if not dataset.corpus:
            raise SpladeError(f"{Path(path) / 'corpus.jsonl'}: no documents")
        if not dataset.judged_queries():
            raise SpladeError(f"{dataset.name}: no query of split {config.split!r} has a judgement")
    if config.max_documents is not None:
        datasets = [sample_corpus(d, config) for d in datasets]
    return datasets


def sample_corpus(dataset: BeirDataset, config: EvalConfig) -> BeirDataset:
    """The dataset with every document judged for the evaluated queries and seeded distractors up to
    `max_documents` (the same corpus for every system)."""
    queries = sample_queries(dataset, config.max_queries, config.seed, config.query_half)
    judged = sorted({doc for q in queries for doc in dataset.qrels.get(q, {}) if doc in dataset.corpus})
    others = sorted(set(dataset.corpus) - set(judged))
    room = max(0, config.max_documents - len(judged))
    kept = set(judged) | set(random.Random(config.seed).sample(others, min(room, len(others))))
    corpus = {doc_id: doc for doc_id, doc in dataset.corpus.items() if doc_id in kept}
    return dataclasses.replace(dataset, corpus=corpus)


def sample_queries(dataset: BeirDataset, max_queries: int | None, seed: int,
                   half: str = "all") -> dict[str, str]:
    """The judged queries of `half` (`splade.dev_split`: `select`, `report` or `all`), or a seeded sample of
    `max_queries` of them (the same for every system)."""
    judged = dataset.judged_queries()
    judged = {qid: judged[qid] for qid in in_half(judged, half)}
    if max_queries is None or max_queries >= len(judged):
        return judged
    chosen = sorted(random.Random(seed).sample(sorted(judged), max_queries))
    return {qid: judged[qid] for qid in chosen}


def parallel_twins(datasets: Sequence[BeirDataset]) -> dict[str, dict[str, set[str]]]:
    """Per dataset and query, the merged-corpus ids that must not count as distractors.

    Sets built from one source (a Korean and a cross-lingual version of MS MARCO) share query texts; the
    documents another set judges relevant to the same query text are translations of this query's
    answers, neither relevant (by this set's judgements) nor fair distractors, so they are left out of
    that query's ranking.
    """
    relevant_by_text: dict[str, list[tuple[str, set[str]]]] = {}
    for d in datasets:
        for qid, judged in d.qrels.items():
            if qid in d.queries:
                docs = {f"{d.name}/{doc}" for doc, rel in judged.items() if rel > 0}
                relevant_by_text.setdefault(normalize(d.queries[qid]), []).append((d.name, docs))
    twins: dict[str, dict[str, set[str]]] = {}
    for d in datasets:
        for qid in d.qrels:
            others = relevant_by_text.get(normalize(d.queries.get(qid, "")), [])
            excluded = set().union(*(docs for name, docs in others if name != d.name))
            if excluded:
                twins.setdefault(d.name, {})[qid] = excluded
    return twins


def _corpus_groups(datasets: Sequence[BeirDataset], merged: bool):
    """(label, documents, [(dataset, qrels over the group's doc ids, excluded doc ids per query)]):
    one group, or one per dataset."""
    if not merged:
        for d in datasets:
            yield d.name, list(d.corpus.values()), [(d, d.qrels, {})]
        return
    documents = [Document(f"{d.name}/{doc.doc_id}", doc.title, doc.text)
                 for d in datasets for doc in d.corpus.values()]
    twins = parallel_twins(datasets)
    members = [(d, {q: {f"{d.name}/{doc}": rel for doc, rel in judged.items()}
                    for q, judged in d.qrels.items()}, twins.get(d.name, {})) for d in datasets]
    yield "merged", documents, members


def run_evaluation(config: EvalConfig, log: Callable[[str], None] = logger.info) -> EvalResult | None:
    """Evaluate every configured system on every dataset; `write_report` turns the result into files.

    Sharded (`config.shard`, or torchrun's RANK/WORLD_SIZE), each process encodes its share of the SPLADE
    documents (`splade.evaluation.sharded`); only the last one to finish evaluates, the others return None.
    """
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    datasets = load_datasets(config)
    groups = list(_corpus_groups(datasets, config.merged_corpus))
    shard = resolve_shard(config.shard)
    encoded = None
    if shard is not None:
        if config.indexes:
            raise SpladeError("--shard: a SPLADE system that searches an existing --index encodes nothing "
                              "to shard; leave out --shard")
        job = EncodingJob(config.splade, config.shard_dir, config.encoder_backend, config.device,
                          config.batch_size, config.doc_top_k, config.show_progress, config.doc_max_length)
        encoded = encode_share(job, shard, [documents for _, documents, _ in groups], log)
        if encoded is None:
            return None
    systems = build_systems(config)
    results: dict[str, DatasetResult] = {}  # in the order of --dataset (groups follow it)
    try:
        for number, (label, documents, members) in enumerate(groups):
            group: dict[str, DatasetResult] = {}
            for dataset, _, _ in members:
                n_queries = len(sample_queries(dataset, config.max_queries, config.seed, config.query_half))
                if not n_queries:
                    raise SpladeError(f"--query-half: no judged query of {dataset.name} is in the "
                                      f"{config.query_half} half")
                group[dataset.name] = DatasetResult(dataset.name, config.split, n_queries, len(documents),
                                                    "merged" if config.merged_corpus else "own")
            for system in systems:
                if encoded is not None and isinstance(system, SpladeSystem):
                    system.preload(documents, *encoded[(number, system.spec_name)])
                log(f"{system.name}: indexing {len(documents):,} documents of {label}")
                system.index(documents, show_progress=config.show_progress)
                for dataset, qrels, excluded in members:
                    queries = sample_queries(dataset, config.max_queries, config.seed, config.query_half)
                    log(f"{system.name}: searching {len(queries):,} queries of {dataset.name}")
                    group[dataset.name].systems.append(
                        _evaluate_system(system, dataset.name, queries, qrels, config, excluded))
            results.update(group)
    finally:
        for system in systems:
            system.close()
    for result in results.values():
        result.comparisons = _compare(result, config)
    return EvalResult(config, list(results.values()), started, time.perf_counter() - clock, environment(),
                      model_identities(config))


def environment() -> dict[str, Any]:
    """Where the numbers were measured: Python, platform, splade and the libraries that compute them."""
    return {"python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "system": platform.system(),
            "splade": __version__, "libraries": library_versions()}


def model_identities(config: EvalConfig) -> dict[str, str]:
    """Each model-based system's model as an index records it (a folder's id or weights fingerprint)."""
    models = {"dense": model_identity(config.dense)} if config.dense else {}
    return {**models, **{name: model_identity(path) for name, path in config.splade}}


def _evaluate_system(system: RetrievalSystem, dataset: str, queries: dict[str, str],
                     qrels: dict[str, dict[str, int]], config: EvalConfig,
                     excluded: dict[str, set[str]] | None = None) -> SystemResult:
    """Search, drop each query's `excluded` documents (keeping `top_k`), and score the run."""
    excluded = {qid: docs for qid, docs in (excluded or {}).items() if qid in queries}
    extra = max((len(docs) for docs in excluded.values()), default=0)
    output = system.search(queries, config.top_k + extra, show_progress=config.show_progress)
    for qid, docs in output.run.items():
        ranked = sorted(docs.items(), key=lambda item: -item[1])
        output.run[qid] = dict([hit for hit in ranked if hit[0] not in excluded.get(qid, ())][: config.top_k])
    if not any(output.run.values()):
        raise SpladeError(f"{system.name} returned an empty run on {dataset}: no query found any document")
    judged = {qid: qrels[qid] for qid in queries}
    per_query = evaluate_run(judged, output.run)
    efficiency = {
        "avg_query_terms": output.avg_query_terms, "avg_doc_terms": system.avg_doc_terms,
        "flops": output.flops if output.flops is not None else float("nan"),
        "index_bytes": float(system.index_bytes), "doc_encode_s": system.doc_encode_s,
        "index_s": system.index_s, "query_encode_s": output.query_encode_s, "search_s": output.search_s,
        "qps": len(queries) / (output.query_encode_s + output.search_s)
        if output.query_encode_s + output.search_s > 0 else float("nan"),
        "p50_ms": _percentile(output.latencies_ms, 50), "p99_ms": _percentile(output.latencies_ms, 99),
    }
    return SystemResult(system.name, system.kind, system.description, system.baseline,
                        mean_scores(per_query), per_query, output.run, efficiency, dict(system.lengths))


def _percentile(values: list[float] | None, q: float) -> float:
    """The q-th percentile of per-query latencies (NaN where the system does not measure them)."""
    return float(np.percentile(values, q)) if values else float("nan")


def _compare(result: DatasetResult, config: EvalConfig) -> list[Comparison]:
    """Each system against every baseline listed before it; Holm's correction within each metric."""
    comparisons: list[Comparison] = []
    for metric in METRICS:
        family = []
        for i, system in enumerate(result.systems):
            for baseline in result.systems[:i]:
                if not baseline.baseline:
                    continue
                qids = sorted(system.per_query)
                a = [system.per_query[q][metric] for q in qids]
                b = [baseline.per_query[q][metric] for q in qids]
                family.append(compare(system.name, baseline.name, metric, a, b, config.trials, config.seed))
        apply_holm(family)
        comparisons += family
    return comparisons
