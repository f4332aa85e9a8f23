"""A TREC run file as a compared system (`splade eval --run NAME=FILE`): its rankings are scored as they
are, nothing is encoded or indexed, so a large corpus searched once (`splade search --queries ... --output
run.trec`, pyserini, another tool) joins a report without being encoded again."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from splade.data.beir import Document
from splade.errors import SpladeError, at_line
from splade.evaluation.base import RetrievalSystem, SearchOutput
from splade.evaluation.metrics import Run, ranked
from splade.fileio import iter_lines


def load_trec_run(path: str | Path) -> Run:
    """`QID Q0 DOC_ID RANK SCORE RUN` lines as `{qid: {doc_id: score}}`; a bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise SpladeError(f"--run: {path}: run file not found")
    run: Run = {}
    for number, line in iter_lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise at_line(path, number, "expected 6 columns: QID Q0 DOC_ID RANK SCORE RUN")
        try:
            score = float(parts[4])
        except ValueError:
            raise at_line(path, number, f"score {parts[4]!r} is not a number") from None
        if not math.isfinite(score):
            raise at_line(path, number, f"score {parts[4]!r} is not finite")
        docs = run.setdefault(parts[0], {})
        if parts[2] in docs:
            raise at_line(path, number, f"document {parts[2]!r} ranked twice for query {parts[0]!r}")
        docs[parts[2]] = score
    if not run:
        raise SpladeError(f"--run: {path}: no results")
    return run


def parse_run_spec(spec: str) -> tuple[str, Path]:
    """`NAME=FILE`, or `FILE` (named after the file, without its extension)."""
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec).stem).strip("-")
    if not name or not path:
        raise SpladeError(f"--run: expected FILE or NAME=FILE, got {spec!r}")
    return name, Path(path)


class RunSystem(RetrievalSystem):
    """The rankings of a TREC run file; costs are not known (shown as "-")."""

    kind = "run"

    def __init__(self, name: str, path: str | Path) -> None:
        super().__init__(name)
        self.doc_encode_s = self.index_s = math.nan  # not known
        self.path = Path(path)
        self.run = load_trec_run(self.path)

    @property
    def description(self) -> str:
        return f"TREC run {self.path.name} ({len(self.run)} queries)"

    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        """Nothing to index; the run's document ids must be the corpus's ids."""

    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        run = {qid: dict(ranked(self.run.get(qid, {}))[:top_k]) for qid in queries}
        if not any(run.values()):
            raise SpladeError(f"--run {self.name}: {self.path} ranks none of the evaluated queries "
                              f"(query ids such as {next(iter(queries))!r})")
        return SearchOutput(run, math.nan, math.nan, math.nan, None)

    @property
    def avg_doc_terms(self) -> float:
        return math.nan

    @property
    def index_bytes(self) -> int:
        return 0
