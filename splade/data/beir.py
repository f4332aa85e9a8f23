"""Load retrieval sets in BEIR layout: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from splade.errors import SpladeError, at_line
from splade.fileio import iter_json_objects, iter_lines

log = logging.getLogger(__name__)
DUPLICATE_POLICIES = ("error", "keep-first", "keep-last")


@dataclass
class Document:
    doc_id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and text joined, as encoders and BM25 see the document."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass
class BeirDataset:
    """One retrieval set: corpus, queries and relevance judgements of one split."""

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    split: str = "dev"

    def judged_queries(self) -> dict[str, str]:
        """Queries that have at least one relevance judgement in this split."""
        return {qid: text for qid, text in self.queries.items() if qid in self.qrels}


def load_corpus(path: str | Path, duplicate_ids: str = "error") -> dict[str, Document]:
    """`corpus.jsonl` rows `{_id, title, text}`; a row without `_id` or text is an error naming its line.

    A repeated `_id` is an error naming both lines (`duplicate_ids="error"`), or keeps the first or the
    last row with that id (`"keep-first"`, `"keep-last"`; the document keeps its first position).
    """
    if duplicate_ids not in DUPLICATE_POLICIES:
        raise SpladeError(f"--duplicate-ids: choose one of {', '.join(DUPLICATE_POLICIES)}, "
                          f"not {duplicate_ids!r}")
    path = Path(path)
    corpus: dict[str, Document] = {}
    seen_on: dict[str, int] = {}
    repeated = 0
    for number, row in iter_json_objects(path):
        doc_id, text = _id_and_text(path, number, row, "document")
        if doc_id in seen_on:
            if duplicate_ids == "error":
                raise at_line(path, number, f"duplicate _id {doc_id!r} (first on line {seen_on[doc_id]}); "
                                            "pass --duplicate-ids keep-first or keep-last to allow it")
            repeated += 1
            if duplicate_ids == "keep-first":
                continue
        seen_on.setdefault(doc_id, number)
        corpus[doc_id] = Document(doc_id, str(row.get("title") or ""), text)
    if repeated:
        kept = duplicate_ids.removeprefix("keep-")
        log.warning("%s: %d rows repeat an earlier _id; kept the %s of each", path, repeated, kept)
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """`queries.jsonl` rows `{_id, text}`."""
    path = Path(path)
    queries: dict[str, str] = {}
    for number, row in iter_json_objects(path):
        qid, text = _id_and_text(path, number, row, "query")
        queries[qid] = text
    return queries


def _id_and_text(path: Path, number: int, row: dict, kind: str) -> tuple[str, str]:
    """A row's `_id` and `text`; either missing or empty is an error naming the line."""
    item_id, text = row.get("_id"), row.get("text")
    if item_id is None or str(item_id) == "":
        raise at_line(path, number, "missing field '_id'")
    if not isinstance(text, str) or not text.strip():
        raise at_line(path, number, f"{kind} {item_id!r} has no text")
    return str(item_id), text


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """`qrels/<split>.tsv`: `query-id  corpus-id  score` with a header line."""
    path = Path(path)
    if not path.is_file():
        raise SpladeError(f"{path}: qrels file not found")
    qrels: dict[str, dict[str, int]] = {}
    for number, parts in _qrels_rows(path):
        if len(parts) < 3:
            raise at_line(path, number, "expected 3 tab-separated columns: query-id corpus-id score")
        try:
            score = int(float(parts[2]))
        except ValueError:
            raise at_line(path, number, f"score {parts[2]!r} is not a number") from None
        qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def _qrels_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """`(line number, tab-separated fields)` of every qrels row, the header line skipped."""
    for number, line in iter_lines(path):
        parts = line.split("\t")
        if number == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        yield number, parts


def load_beir(directory: str | Path, split: str = "dev", queries_file: str = "queries.jsonl",
              check_qrels: bool = True, duplicate_ids: str = "error") -> BeirDataset:
    """Load a BEIR folder; a qrels row naming an unknown document or query is an error naming its line."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpladeError(f"{directory}: dataset folder not found")
    qrels_path = directory / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (directory / "qrels").glob("*.tsv"))
        listed = ", ".join(available) or "none"
        raise SpladeError(f"{directory}: no qrels for split {split!r} (available: {listed})")
    corpus = load_corpus(directory / "corpus.jsonl", duplicate_ids)
    queries = load_queries(directory / queries_file)
    qrels = load_qrels(qrels_path)
    if check_qrels:
        _check_qrels(qrels_path, qrels, corpus, queries)
    return BeirDataset(directory.name, corpus, queries, qrels, split)


def _check_qrels(path: Path, qrels: dict[str, dict[str, int]], corpus: dict, queries: dict) -> None:
    for number, parts in _qrels_rows(path):
        if parts[1] not in corpus:
            raise at_line(path, number, f"document {parts[1]!r} is not in corpus.jsonl")
        if parts[0] not in queries:
            raise at_line(path, number, f"query {parts[0]!r} is not in the queries file")
