"""A corpus `_id` on two lines stops `splade index` and `splade eval` with both line numbers, unless an option
says which row to keep."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from splade.data.beir import load_corpus
from splade.errors import SpladeError

ROWS = [("a", "first a"), ("b", "only b"), ("c", "only c"), ("a", "second a")]


def write_corpus(folder: Path, rows: list[tuple[str, str]] = ROWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"_id": doc_id, "title": "", "text": text}) for doc_id, text in rows]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_duplicate_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    path = write_corpus(tmp_path) / "corpus.jsonl"
    with pytest.raises(SpladeError, match=re.escape(f"{path}:4: duplicate _id 'a' (first on line 1)")):
        load_corpus(path)
    with pytest.raises(SpladeError, match="--duplicate-ids: choose one of error, keep-first, keep-last"):
        load_corpus(path, "keep-both")


def test_keep_first_or_last_says_how_many_rows_it_dropped(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = write_corpus(tmp_path) / "corpus.jsonl"
    with caplog.at_level(logging.WARNING):
        first = load_corpus(path, "keep-first")
        last = load_corpus(path, "keep-last")
    assert list(first) == list(last) == ["a", "b", "c"]  # the id keeps its first position
    assert first["a"].text == "first a" and last["a"].text == "second a"
    said = [r.getMessage().split(": ", 1)[1] for r in caplog.records]
    assert said == [f"1 rows repeat an earlier _id; kept the {which} of each" for which in ("first", "last")]


def test_index_and_eval_refuse_duplicates_by_default(tmp_path: Path, tiny_model_dir: Path) -> None:
    from typer.testing import CliRunner

    from splade.cli import _register_all, app
    from splade.evaluation.runner import EvalConfig, load_datasets
    from splade.indexer.local import LocalSparseIndex

    _register_all()
    corpus = write_corpus(tmp_path / "beir")
    index = tmp_path / "idx"
    result = CliRunner().invoke(app, ["index", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                                      "--index", str(index)])
    assert isinstance(result.exception, SpladeError) and "corpus.jsonl:4: duplicate _id 'a'" in str(
        result.exception)
    assert not index.exists()
    result = CliRunner().invoke(app, ["index", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                                      "--index", str(index), "--duplicate-ids", "keep-last"])
    assert result.exit_code == 0, result.output
    opened = LocalSparseIndex.open(index)
    assert opened.count() == 3 and opened.fetch_texts(["a"]) == ["second a"]

    (corpus / "queries.jsonl").write_text('{"_id": "q", "text": "a"}\n')
    (corpus / "qrels").mkdir()
    (corpus / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\n")
    with pytest.raises(SpladeError, match="corpus.jsonl:4: duplicate _id 'a' \\(first on line 1\\)"):
        load_datasets(EvalConfig(datasets=[corpus]))
    [dataset] = load_datasets(EvalConfig(datasets=[corpus], duplicate_ids="keep-first"))
    assert dataset.corpus["a"].text == "first a"
