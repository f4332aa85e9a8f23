"""Evaluation without re-encoding: `splade eval --index I` searches an index built earlier (same model
required) and `splade eval --run NAME=FILE` scores a TREC run as it is; both give the figures the
encoding evaluation gives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_evaluation import HEALTH, HEALTH_QUERIES, make_beir
from typer.testing import CliRunner

from splade.cli import _register_all, app
from splade.errors import SpladeError
from splade.evaluation import EvalConfig, run_evaluation

_register_all()


@pytest.fixture()
def health(tmp_path: Path) -> Path:
    return make_beir(tmp_path, "health", HEALTH, HEALTH_QUERIES)


def build(model: Path, corpus: Path, index: Path) -> Path:
    from splade.config.index import IndexConfig
    from splade.indexer.pipeline import build_index

    build_index(IndexConfig(model=model, corpus=corpus, index=str(index)), show_progress=False)
    return index


def test_eval_on_an_existing_index_equals_encoding_the_corpus(health: Path, tiny_model_dir: Path,
                                                              tmp_path: Path) -> None:
    from splade.indexer.local import LocalSparseIndex

    index = build(tiny_model_dir, health, tmp_path / "health.idx")
    base = dict(datasets=[health], bm25=False, top_k=10, trials=100)
    encoded = run_evaluation(EvalConfig(**base, splade=[("tiny", tiny_model_dir)])).datasets[0].systems[0]
    reused = run_evaluation(EvalConfig(**base, splade=[("tiny", tiny_model_dir)],
                                       indexes={"tiny": str(index)})).datasets[0].systems[0]
    assert reused.metrics == pytest.approx(encoded.metrics)
    assert {q: list(d) for q, d in reused.run.items()} == {q: list(d) for q, d in encoded.run.items()}
    assert reused.efficiency["doc_encode_s"] == 0.0 and math.isnan(reused.efficiency["flops"])
    assert "existing embedded index" in reused.description
    assert LocalSparseIndex.open(index).count() == len(HEALTH)  # the evaluation left the index alone


def test_an_index_of_another_model_is_refused(health: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from splade.model.artifact import SpladeArtifact

    index = build(tiny_model_dir, health, tmp_path / "health.idx")
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    artifact = SpladeArtifact.read(other)
    artifact.model_id = "another-model"
    artifact.write(other)
    config = EvalConfig(datasets=[health], bm25=False, splade=[("other", other)],
                        indexes={"other": str(index)})
    with pytest.raises(SpladeError, match=r"--index other: .*built with model .*not 'another-model'"):
        run_evaluation(config)
    with pytest.raises(SpladeError, match="--index: 'nope' names no --splade system"):
        EvalConfig(datasets=[health], splade=[("tiny", tiny_model_dir)], indexes={"nope": str(index)})


def test_cli_scores_a_trec_run_and_an_index_in_one_report(health: Path, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    index = build(tiny_model_dir, health, tmp_path / "health.idx")
    run_file = tmp_path / "perfect.trec"
    run_file.write_text("".join(f"{qid} Q0 {doc} 1 9.5 oracle\n{qid} Q0 h6 2 1.0 oracle\n"
                                for qid, (_, doc) in HEALTH_QUERIES.items() if qid != "a5"), encoding="utf-8")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--dataset", str(health), "--splade", str(tiny_model_dir),
                                      "--index", str(index), "--run", f"oracle={run_file}", "--out", str(out),
                                      "--trials", "100"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    systems = {s["name"]: s for s in data["datasets"][0]["systems"]}
    assert list(systems) == ["bm25", tiny_model_dir.name, "oracle"]
    oracle = systems["oracle"]
    assert oracle["kind"] == "run" and oracle["per_query"]["a1"]["ndcg@10"] == pytest.approx(1.0)
    assert oracle["per_query"]["a5"]["ndcg@10"] == 0.0  # a judged query the run lacks scores 0
    assert oracle["metrics"]["ndcg@10"] == pytest.approx(0.8)
    assert {c["system"] for c in data["datasets"][0]["comparisons"]} == {tiny_model_dir.name, "oracle"}
    markdown = (out / "report.md").read_text(encoding="utf-8")
    rows = [line for line in markdown.splitlines() if line.startswith("| oracle")]
    assert rows and any("| - |" in row for row in rows)  # a run's costs are not known: "-", not 0


@pytest.mark.parametrize(("line", "message"), [
    ("a1 Q0 h1 1\n", "run.trec:1: expected 6 columns"),
    ("a1 Q0 h1 1 high run\n", "run.trec:1: score 'high' is not a number"),
    ("a1 Q0 h1 1 2.0 r\na1 Q0 h1 2 1.0 r\n", "run.trec:2: document 'h1' ranked twice"),
    ("zz Q0 h1 1 2.0 r\n", "ranks none of the evaluated queries"),
])
def test_bad_run_files_are_one_line(health: Path, tmp_path: Path, line: str, message: str) -> None:
    run_file = tmp_path / "run.trec"
    run_file.write_text(line, encoding="utf-8")
    with pytest.raises(SpladeError, match=message):
        run_evaluation(EvalConfig(datasets=[health], bm25=False, runs=[("r", run_file)]))


def test_eval_on_an_existing_opensearch_alias_leaves_it_in_place(health: Path, tiny_model_dir: Path,
                                                                  opensearch_url: str) -> None:
    from splade.config.index import IndexConfig
    from splade.indexer.opensearch import OpenSearchSettings, make_client
    from splade.indexer.pipeline import build_index

    settings = OpenSearchSettings(hosts=[opensearch_url])
    build_index(IndexConfig(model=tiny_model_dir, corpus=health, index="health-sparse", backend="opensearch",
                            opensearch=settings), show_progress=False)
    common = dict(datasets=[health], bm25=False, top_k=5, trials=100, splade=[("tiny", tiny_model_dir)])
    local = run_evaluation(EvalConfig(**common)).datasets[0].systems[0]
    reused = run_evaluation(EvalConfig(**common, backend="opensearch", opensearch=settings,
                                       indexes={"tiny": "health-sparse"})).datasets[0].systems[0]
    assert "existing OpenSearch alias health-sparse" in reused.description
    assert reused.metrics["ndcg@10"] == pytest.approx(local.metrics["ndcg@10"], abs=0.05)
    client = make_client(settings)
    assert client.indices.exists_alias(name="health-sparse")  # searched, never dropped
    assert client.count(index="health-sparse")["count"] == len(HEALTH)
