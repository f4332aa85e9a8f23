"""`splade data build`: turn BEIR sets, parallel sentences and term lexicons into training triplets.

Pipeline: read every source into query groups (a query, its positive texts, the pool its negatives come
from) -> drop groups whose query is a held-out query or a held-out positive (split-leak check) -> mine
negatives per positive (BM25 or a SPLADE model) -> rows with `pair_type` and `difficulty` -> dedup -> split
train / val by query -> write `train.jsonl`, `val.jsonl`, `summary.json` (and an optional BEIR evaluation set
cut from the sources) into the output folder in one atomic rename.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from splade.atomic import atomic_dir, refuse_foreign_dir
from splade.config.data import BuildConfig, SourceConfig
from splade.data.mining import MiningTask, is_korean, make_retriever, mine_negatives
from splade.errors import SpladeError

# ---------------------------------------------------------------------------------------------------------
# Sources -> query groups

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Key used for dedup and the leak check: lower-cased, whitespace collapsed."""
    return _SPACE.sub(" ", text).strip().lower()


@dataclass
class Group:
    """A query and its positives; `anchor` says whether negatives are retrieved with the query itself or
    with each positive (needed when query and pool are in different languages)."""

    query: str
    positives: list[int]
    pair_type: str
    excluded: frozenset[int]
    anchor: Literal["query", "positive"]


@dataclass
class SourceData:
    """What one source contributes: negative pool, query groups, held-out texts, evaluation queries."""

    config: SourceConfig
    pool: list[str]
    groups: list[Group]
    holdout: set[str] = field(default_factory=set)
    eval_queries: list[tuple[str, list[str], str]] = field(default_factory=list)  # (query, positives, type)


def _rng(seed: int, label: str) -> random.Random:
    return random.Random(f"{seed}:{label}")


def _resolve(source: SourceConfig, option: str) -> Path:
    if not source.path:
        raise SpladeError(f"{option}: source of type {source.type!r} needs a 'path'")
    return Path(source.path)


def _beir_source(source: SourceConfig, config: BuildConfig, directory: Path, option: str) -> SourceData:
    from splade.data.beir import load_beir, load_qrels

    data = load_beir(directory, split=source.split, queries_file=source.queries_file)
    doc_ids = list(data.corpus)
    pool = [data.corpus[d].full_text for d in doc_ids]
    position = {d: i for i, d in enumerate(doc_ids)}
    judged = [(q, [position[d] for d, s in rels.items() if s > 0]) for q, rels in data.qrels.items()]
    judged = [(q, docs) for q, docs in judged if docs]
    rng = _rng(config.seed, source.label)
    if source.max_pairs and len(judged) > source.max_pairs:
        judged = rng.sample(judged, source.max_pairs)
    sample = judged[:200]
    same_language = (sum(is_korean(data.queries[q]) for q, _ in sample)
                     > len(sample) // 2) == (sum(is_korean(pool[d[0]]) for _, d in sample) > len(sample) // 2)
    pair_type = source.pair_type or ("monolingual_qa" if same_language else "cross_lingual_qa")
    anchor = "query" if same_language else "positive"
    groups = [Group(data.queries[q], docs, pair_type, frozenset(docs), anchor) for q, docs in judged]
    holdout: set[str] = set()
    for split in config.holdout_splits:
        qrels_path = directory / "qrels" / f"{split}.tsv"
        if split == source.split or not qrels_path.is_file():
            continue
        for qid, rels in load_qrels(qrels_path).items():
            if qid in data.queries:
                holdout.add(normalize(data.queries[qid]))
            positives = [d for d, s in rels.items() if s > 0 and d in data.corpus]
            holdout.update(normalize(data.corpus[d].full_text) for d in positives)
    return SourceData(source, pool, groups, holdout)


class _Components:
    """Union-find over texts: every Korean and English text linked by a pair lands in one component."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _pair_source(source: SourceConfig, config: BuildConfig, path: Path) -> SourceData:
    from splade.data.sources import read_lexicon, read_parallel

    reader = read_lexicon if source.type == "lexicon" else read_parallel
    pairs = reader(path, header=source.header)
    comps = _Components()
    for p in pairs:
        comps.union("ko:" + p.ko, "en:" + p.en)
    by_comp: dict[str, list] = {}
    for p in pairs:
        by_comp.setdefault(comps.find("ko:" + p.ko), []).append(p)
    components = list(by_comp.values())
    rng = _rng(config.seed, source.label)
    rng.shuffle(components)
    if source.paraphrases:  # a third of the held-out components have Korean variants: ko -> ko eval queries
        multi = [c for c in components if len({p.ko for p in c}) > 1]
        chosen = {id(c) for c in multi[: min(len(multi) // 2, source.eval_queries // 3)]}
        components.sort(key=lambda c: id(c) not in chosen)
    held, kept = components[:source.eval_queries], components[source.eval_queries:]
    if source.paraphrases:  # keep the rare multi-variant components among the training groups too
        kept.sort(key=lambda c: len({p.ko for p in c}) < 2)
    if source.max_pairs:
        kept = kept[:source.max_pairs]
    default_type = "cross_lingual"
    if source.type == "lexicon":
        default_type = "single_term"

    def typed(query: str) -> str:
        if source.pair_type:
            return source.pair_type
        if default_type == "single_term" and len(query.split()) > config.single_term_max_words:
            return "cross_lingual"
        return default_type

    directions = ["ko-en", "en-ko"] if source.direction == "both" else [source.direction]
    pool: list[str] = []
    index: dict[str, int] = {}

    def at(text: str) -> int:
        if text not in index:
            index[text] = len(pool)
            pool.append(text)
        return index[text]

    groups: list[Group] = []
    for comp in kept:
        for direction in directions:
            src, dst = ("ko", "en") if direction == "ko-en" else ("en", "ko")
            links: dict[str, list[str]] = {}
            for p in comp:
                links.setdefault(getattr(p, src), []).append(getattr(p, dst))
            excluded = frozenset(at(getattr(p, dst)) for p in comp)
            for query, targets in links.items():
                docs = [at(t) for t in dict.fromkeys(targets)]
                groups.append(Group(query, docs, typed(query), excluded, "positive"))
        korean = list(dict.fromkeys(p.ko for p in comp))
        if source.paraphrases and len(korean) > 1:
            excluded = frozenset(at(k) for k in korean)
            for k in korean:
                groups.append(Group(k, [at(o) for o in korean if o != k], "paraphrase", excluded, "query"))
    eval_queries: list[tuple[str, list[str], str]] = []
    holdout: set[str] = set()
    for comp in held:
        links = {}
        for p in comp:
            links.setdefault(p.ko, []).append(p.en)
        for query, targets in links.items():
            eval_queries.append((query, list(dict.fromkeys(targets)), typed(query)))
        korean = list(dict.fromkeys(p.ko for p in comp))
        if source.paraphrases and len(korean) > 1:
            eval_queries.append((korean[0], korean[1:], "paraphrase"))
        holdout.update(normalize(p.ko) for p in comp)
        holdout.update(normalize(p.en) for p in comp)
    return SourceData(source, pool, groups, holdout, eval_queries)


def load_source(source: SourceConfig, config: BuildConfig, position: int) -> SourceData:
    """Read one configured source into query groups."""
    option = f"sources[{position}]"
    if source.type == "hub":
        from splade.data.hub import download_beir

        if not source.name:
            raise SpladeError(f"{option}: a hub source needs a 'name' (miracl-ko or mrtydi-ko)")
        directory = download_beir(source.name, Path(source.path) if source.path else None)
        return _beir_source(source, config, directory, option)
    path = _resolve(source, option)
    if source.type == "beir":
        return _beir_source(source, config, path, option)
    return _pair_source(source, config, path)


# ---------------------------------------------------------------------------------------------------------
# Build


@dataclass
class BuildResult:
    """Rows written and the summary (also saved as `summary.json`)."""

    train: list[dict]
    val: list[dict]
    summary: dict


def _mine_source(data: SourceData, config: BuildConfig, rng: random.Random,
                 show_progress: bool) -> tuple[list[dict], int]:
    """Triplet rows of one source, and how many positives found no usable negative."""
    if not data.groups:
        return [], 0
    count = data.config.negatives or config.negatives_per_positive
    tasks: list[MiningTask] = []
    owners: list[Group] = []
    for group in data.groups:
        for pos in group.positives[: config.max_positives_per_query]:
            anchor = group.query if group.anchor == "query" else data.pool[pos]
            tasks.append(MiningTask(anchor, pos, group.excluded, count))
            owners.append(group)
    retriever = make_retriever(data.pool, config.mining, show_progress=show_progress, label=data.config.label)
    mined = mine_negatives(data.pool, tasks, retriever, config.mining, rng)
    rows = []
    missing = sum(not negatives for negatives in mined)
    for task, group, negatives in zip(tasks, owners, mined, strict=True):
        for neg in negatives:
            rows.append({"query": group.query, "positive": data.pool[task.positive],
                         "negative": data.pool[neg.index], "pair_type": group.pair_type,
                         "difficulty": neg.difficulty, "source": data.config.label})
    return rows, missing


def _proportions(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    counts = Counter(r[key] for r in rows)
    total = max(len(rows), 1)
    return {k: {"rows": n, "fraction": round(n / total, 4)} for k, n in sorted(counts.items())}


def _describe(rows: list[dict]) -> dict:
    return {"rows": len(rows), "queries": len({normalize(r["query"]) for r in rows}),
            "pair_types": _proportions(rows, "pair_type"), "difficulty": _proportions(rows, "difficulty")}


def _eval_set(sources: list[SourceData], config: BuildConfig, rng: random.Random) -> dict | None:
    """Queries, corpus and qrels of the held-out evaluation set (BEIR layout), or None."""
    if config.eval_set is None:
        return None
    queries, qrels = [], []
    corpus: dict[str, str] = {}  # text -> doc id
    for data in sources:
        for n, (query, positives, pair_type) in enumerate(data.eval_queries):
            qid = f"{data.config.label}-{n}"
            queries.append({"_id": qid, "text": query, "pair_type": pair_type})
            for text in positives:
                doc_id = corpus.setdefault(text, f"d{len(corpus)}")
                qrels.append((qid, doc_id))
    if not queries:
        raise SpladeError("eval_set: no source holds out queries "
                          "(set 'eval_queries' on a parallel or lexicon source)")
    query_keys = {normalize(q["text"]) for q in queries}
    candidates = sorted({t for d in sources for t in d.pool if normalize(t) not in query_keys} - set(corpus))
    for text in rng.sample(candidates, min(config.eval_set.distractors, len(candidates))):
        corpus.setdefault(text, f"d{len(corpus)}")
    return {"queries": queries, "qrels": qrels,
            "corpus": [{"_id": i, "title": "", "text": t} for t, i in corpus.items()]}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_eval(root: Path, evalset: dict) -> None:
    (root / "qrels").mkdir(parents=True)
    _write_jsonl(root / "corpus.jsonl", evalset["corpus"])
    _write_jsonl(root / "queries.jsonl", evalset["queries"])
    with (root / "qrels" / "dev.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{q}\t{d}\t1\n" for q, d in evalset["qrels"])


def build_training_data(config: BuildConfig, out: str | Path, show_progress: bool = False,
                        log: Callable[[str], None] | None = None,
                        extra_files: dict[str, str] | None = None) -> BuildResult:
    """Build triplets from `config.sources` and write them into `out` atomically (whole or not at all)."""
    say = log or (lambda _msg: None)
    refuse_foreign_dir(out, "summary.json", "--out", "training-data build")
    started = time.perf_counter()
    sources = []
    for i, source in enumerate(config.sources):
        data = load_source(source, config, i)
        say(f"{source.label}: {len(data.groups):,} query groups, pool {len(data.pool):,} texts, "
            f"{len(data.eval_queries):,} held out for evaluation")
        sources.append(data)

    holdout = set().union(*(d.holdout for d in sources))
    source_stats = []
    for data in sources:
        before = len(data.groups)
        data.groups = [g for g in data.groups if normalize(g.query) not in holdout]
        source_stats.append({"name": data.config.label, "type": data.config.type, "path": data.config.path,
                             "query_groups": len(data.groups), "leak_dropped": before - len(data.groups)})

    rng = random.Random(config.seed)
    rows: list[dict] = []
    for data, stats in zip(sources, source_stats, strict=True):
        t0 = time.perf_counter()
        mined, missing = _mine_source(data, config, rng, show_progress)
        stats.update(rows_mined=len(mined), positives_without_negative=missing,
                     mining_seconds=round(time.perf_counter() - t0, 2))
        say(f"{data.config.label}: mined {len(mined):,} triplets in {stats['mining_seconds']:.1f}s")
        rows.extend(mined)

    seen: set[tuple[str, str, str]] = set()
    unique = []
    for row in rows:
        key = (normalize(row["query"]), normalize(row["positive"]), normalize(row["negative"]))
        if key in seen or key[0] == key[1]:
            continue
        seen.add(key)
        unique.append(row)
    duplicates = len(rows) - len(unique)

    queries = sorted({normalize(r["query"]) for r in unique})
    n_val = round(len(queries) * config.val_fraction)
    val_queries = set(random.Random(config.seed + 1).sample(queries, n_val))
    train = [r for r in unique if normalize(r["query"]) not in val_queries]
    val = [r for r in unique if normalize(r["query"]) in val_queries]
    random.Random(config.seed + 2).shuffle(train)

    leaked = [r for r in train + val if normalize(r["query"]) in holdout]
    overlap = {normalize(r["query"]) for r in train} & val_queries
    if leaked or overlap:  # cannot happen after the filter above; refuse to write a leaking set
        raise RuntimeError(f"split-leak check failed: {len(leaked)} held-out queries, {len(overlap)} shared")

    evalset = _eval_set(sources, config, random.Random(config.seed + 3))
    summary = {
        "train": _describe(train),
        "val": _describe(val),
        "sources": source_stats,
        "dedup": {"rows_before": len(rows), "duplicates_dropped": duplicates},
        "leak_check": {"held_out_texts": len(holdout), "splits": config.holdout_splits,
                       "dropped_query_groups": sum(s["leak_dropped"] for s in source_stats),
                       "train_val_shared_queries": len(overlap), "held_out_queries_in_output": len(leaked),
                       "passed": not (leaked or overlap)},
        "mining": {**config.mining.model_dump(), "retriever": "splade" if config.mining.model else "bm25"},
        "config": config.model_dump(exclude={"mining"}),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if evalset is not None:
        assert config.eval_set is not None
        summary["eval_set"] = {"name": config.eval_set.name, "path": f"beir/{config.eval_set.name}",
                               "queries": len(evalset["queries"]), "documents": len(evalset["corpus"]),
                               "qrels": len(evalset["qrels"]),
                               "pair_types": dict(Counter(q["pair_type"] for q in evalset["queries"]))}

    with atomic_dir(out) as tmp:
        _write_jsonl(tmp / "train.jsonl", train)
        _write_jsonl(tmp / "val.jsonl", val)
        if evalset is not None:
            _write_eval(tmp / "beir" / config.eval_set.name, evalset)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
    say(f"wrote {len(train):,} train and {len(val):,} val triplets to {out}")
    return BuildResult(train, val, summary)
