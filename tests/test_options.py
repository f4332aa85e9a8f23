"""One config style: stage settings models whose errors name the option, one OpenSearch option group,
configs bundled with the package, `splade --version`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_index_local import write_beir
from typer.testing import CliRunner

from splade.cli import _register_all, app
from splade.cli.options import CONNECTION
from splade.config.evaluate import EvalConfig
from splade.config.export import ExportConfig
from splade.config.index import IndexConfig, SearchConfig
from splade.config.loading import BUNDLED_CONFIGS, find_config
from splade.config.opensearch import OpenSearchSettings
from splade.errors import SpladeError

_register_all()
HELP_ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
CONNECTION_OPTIONS = ["--hosts", "--user", "--password", "--api-key", "--ca-certs", "--verify", "--no-verify",
                      "--timeout"]


def _options(verb: str) -> list[str]:
    """The long options a verb's help lists under the OpenSearch connection panel."""
    text = CliRunner().invoke(app, [verb, "--help"], env=HELP_ENV).output
    panel = text.split(CONNECTION, 1)[1]
    return list(dict.fromkeys(re.findall(r"(--[a-z][a-z-]+)", panel)))


def test_index_search_and_eval_share_one_connection_group() -> None:
    groups = {verb: _options(verb) for verb in ("index", "search", "eval")}
    assert groups["index"] == groups["search"] == groups["eval"] == CONNECTION_OPTIONS
    for verb in groups:
        assert "--insecure" not in CliRunner().invoke(app, [verb, "--help"], env=HELP_ENV).output


@pytest.mark.parametrize(("build", "message"), [
    (lambda: IndexConfig(model="m", corpus="c", index="i", batch_size=0), "--batch-size: "),
    (lambda: IndexConfig(model="m", corpus="c", index="i", backend="elastic"), "--backend: "),
    (lambda: SearchConfig(model="m", index="i", top_k=0), "--top-k: "),
    (lambda: EvalConfig(datasets=[]), "--dataset: give at least one"),
    (lambda: EvalConfig(datasets=["d"], trials=0), "--trials: "),
    (lambda: ExportConfig(checkpoint="c", out="o", opset=7), "--opset: "),
    (lambda: ExportConfig(checkpoint="c", out="o", sparse_tokenize=True), "--idf-corpus: --sparse-tokenize"),
    (lambda: OpenSearchSettings.from_env({"OPENSEARCH_TIMEOUT": "-1"}), "--timeout / OPENSEARCH_TIMEOUT: "),
    (lambda: OpenSearchSettings.from_env({"OPENSEARCH_VERIFY_CERTS": "maybe"}),
     "--verify / OPENSEARCH_VERIFY_CERTS: "),
    (lambda: OpenSearchSettings.from_env({}, hosts=" , "), "--hosts / OPENSEARCH_HOSTS: no OpenSearch host"),
])
def test_a_bad_setting_is_one_line_naming_the_option(build, message: str) -> None:
    with pytest.raises(SpladeError) as err:
        build()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_defaults_live_in_the_settings_models() -> None:
    assert IndexConfig.default("batch_size") == 32 and SearchConfig.default("top_k") == 10
    assert ExportConfig.default("opset") == 17 and ExportConfig.default("exporter") == "legacy"
    assert EvalConfig.default("top_k") == 1000
    help_text = CliRunner().invoke(app, ["export", "--help"], env=HELP_ENV).output
    assert re.search(r"--opset .*\[default: 17\]", help_text)


def test_opensearch_settings_only_for_the_opensearch_backend(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A local index ignores broken `OPENSEARCH_*` variables; an OpenSearch one reports them in one line."""
    corpus = write_beir(tmp_path / "beir", ["Seoul is the capital of Korea", "coffee is good"])
    env = {"OPENSEARCH_TIMEOUT": "soon", "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["index", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                                      "--index", str(tmp_path / "idx")], env=env)
    assert result.exit_code == 0, result.output
    command = [sys.executable, "-m", "splade", "search", "capital", "--model", str(tiny_model_dir),
               "--index", "idx", "--backend", "opensearch", "--timeout", "0"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --timeout / OPENSEARCH_TIMEOUT: Input should be greater than 0"]


def test_bundled_configs_are_found_outside_a_checkout(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from splade.cli.train import default_config
    from splade.config import load_config
    from splade.config.data import load_build_config

    monkeypatch.chdir(tmp_path)
    assert default_config("v23") == BUNDLED_CONFIGS / "train_v23.yaml"
    assert load_config(default_config("v23")).version == "v23"
    assert find_config("data_ko.yaml") == find_config("configs/data_ko") == BUNDLED_CONFIGS / "data_ko.yaml"
    assert load_build_config("configs/data_sample.yaml").eval_set is not None
    (tmp_path / "data_ko.yaml").write_text("sources: [{type: beir, path: mine}]\n", encoding="utf-8")
    assert load_build_config("data_ko.yaml").sources[0].path == "mine"  # a file in the working folder wins
    with pytest.raises(SpladeError, match=r"nope\.yaml: config file not found \(bundled: data_ko\.yaml, "):
        load_build_config("nope.yaml")
    with pytest.raises(SpladeError, match="config file not found"):
        load_build_config("elsewhere/data_ko.yaml")  # a path in another folder is never swapped


def test_version() -> None:
    from splade import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"splade {__version__} (torch ") and "transformers" in result.output


def test_search_prints_a_readable_table_json_and_trec(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from splade.cli.index import print_hits

    hits = [("msmarco-koen/7260151", 12.3456, "서울은 대한민국의 수도이며 가장 큰 도시이다. " * 8),
            ("msmarco-koen/10000002", 3.5, None)]
    monkeypatch.setenv("COLUMNS", "80")
    print_hits("capital of Korea", hits, "table")
    table = capsys.readouterr().out
    assert "msmarco-koen/7260151" in table and "msmarco-koen/10000002" in table
    assert "12.3456" in table and "3.5000" in table
    assert max(len(line) for line in table.splitlines()) <= 80
    print_hits("capital of Korea", hits, "json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"] == "capital of Korea"
    assert payload["hits"][1] == {"rank": 2, "doc_id": "msmarco-koen/10000002", "score": 3.5, "text": None}
    print_hits("capital of Korea", hits, "trec", run_name="my model")
    assert capsys.readouterr().out.splitlines() == ["1 Q0 msmarco-koen/7260151 1 12.345600 my_model",
                                                    "1 Q0 msmarco-koen/10000002 2 3.500000 my_model"]
