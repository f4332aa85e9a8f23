"""Small frictions a new user met: ids cut in the search table, "at at" in JSON errors, no "did you mean"
for a mistyped `--set` key, the http default against the https compose stack, `<bool>` in --help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splade.cli import _register_all, app
from splade.errors import SpladeError

_register_all()


def test_search_table_keeps_long_ids_whole_at_80_columns(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from splade.cli.index import print_hits

    monkeypatch.setenv("COLUMNS", "80")
    ids = [f"passage-with-a-rather-long-identifier-number-{i:04d}" for i in range(3)]
    print_hits("q", [(doc_id, 1.0 - i / 10, "text " * 40) for i, doc_id in enumerate(ids)], "table")
    printed = capsys.readouterr().out
    assert all(doc_id in printed for doc_id in ids)
    assert max(len(line) for line in printed.splitlines()) <= 80
    print_hits("q", [("x" * 120 + str(i), 1.0, "t") for i in range(2)], "table")  # wider than the terminal
    printed = capsys.readouterr().out
    assert "x" * 120 + "0" in printed and "x" * 120 + "1" in printed


def test_json_errors_say_at_once(tmp_path: Path) -> None:
    from splade.data.beir import load_corpus

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "unterminated}\n', encoding="utf-8")
    with pytest.raises(SpladeError) as info:
        load_corpus(corpus)
    assert "corpus.jsonl:2: invalid JSON (Unterminated string starting at column" in str(info.value)
    assert "at at" not in str(info.value)


@pytest.mark.parametrize(("override", "message"), [
    ("training.lerning_rate=1e-4",
     "--set: training.lerning_rate: Extra inputs are not permitted (did you mean training.learning_rate?)"),
    ("curriculum_phases.0.temprature=0.5", "(did you mean curriculum_phases.0.temperature?)"),
    ("trainin.seed=1", "--set: trainin: Extra inputs are not permitted (did you mean training?)"),
])
def test_a_mistyped_set_key_is_blamed_on_set_with_a_suggestion(override: str, message: str) -> None:
    from splade.config import load_config
    from splade.quickstart import QUICKSTART_CONFIG

    with pytest.raises(SpladeError) as info:
        load_config(QUICKSTART_CONFIG, [override])
    assert message in str(info.value)


def test_a_mistyped_key_in_the_file_is_blamed_on_the_file(tmp_path: Path) -> None:
    from splade.config import load_config
    from splade.quickstart import QUICKSTART_CONFIG

    config = tmp_path / "my.yaml"
    config.write_text(QUICKSTART_CONFIG.read_text(encoding="utf-8").replace("seed: 42", "sed: 42"),
                      encoding="utf-8")
    with pytest.raises(SpladeError, match=r"my.yaml: training.sed: .*\(did you mean training.seed\?\)"):
        load_config(config)


def test_an_unreachable_http_cluster_hints_at_https() -> None:
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

    from splade.config.opensearch import OpenSearchSettings
    from splade.indexer.connection import describe_error

    error = OpenSearchConnectionError("N/A", "connection reset", Exception("reset"))
    message = str(describe_error(error, OpenSearchSettings(), "connecting"))
    assert "lost the connection to OpenSearch at http://localhost:9200" in message  # a reset: not refused
    assert "--hosts https://localhost:9200 with --no-verify" in message
    https = OpenSearchSettings(hosts=["https://localhost:9200"])
    assert "speaks https" not in str(describe_error(error, https, "connecting"))


@pytest.mark.parametrize("verb", [["export"], ["index"], ["search"], ["eval"], ["encode"], ["train"]],
                         ids=" ".join)
def test_flags_show_no_value_placeholder_in_help(verb: list[str]) -> None:
    result = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    assert re.search(r"--help\s+Show this message", result.output)
