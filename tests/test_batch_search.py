"""Batch search: `splade search --queries FILE --output run.trec` writes a TREC run pytrec_eval reads, from
BEIR queries.jsonl or TSV, whole or in shards that join into the same file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splade.cli import _register_all, app

_register_all()

DOCS = ["당뇨병 치료 방법", "Seoul is the capital of Korea", "coffee is good for health",
        "고혈압 예방과 관리", "neural sparse retrieval model", "감기 증상과 치료"]
QUERIES = {"q1": "diabetes treatment", "q2": "capital of Korea", "q3": "커피 건강", "q4": "감기 치료"}


@pytest.fixture(scope="module")
def built_index(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from splade.config.index import IndexConfig
    from splade.indexer.pipeline import build_index

    folder = tmp_path_factory.mktemp("batch")
    (folder / "beir").mkdir()
    rows = [{"_id": f"doc{i}", "title": "", "text": text} for i, text in enumerate(DOCS)]
    (folder / "beir" / "corpus.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    build_index(IndexConfig(model=tiny_model_dir, corpus=folder / "beir", index=str(folder / "idx")),
                show_progress=False)
    return folder / "idx"


def search(model: Path, index: Path, *extra: str):
    return CliRunner().invoke(app, ["search", "--model", str(model), "--index", str(index), *extra],
                              env={"COLUMNS": "200"})


def read_run(path: Path) -> dict[str, dict[str, float]]:
    import pytrec_eval

    with path.open(encoding="utf-8") as handle:
        return pytrec_eval.parse_run(handle)


def test_queries_jsonl_and_tsv_give_a_trec_run_pytrec_eval_scores(tiny_model_dir: Path, built_index: Path,
                                                                  tmp_path: Path) -> None:
    import pytrec_eval

    jsonl = tmp_path / "queries.jsonl"
    jsonl.write_text("".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                             for q, t in QUERIES.items()), encoding="utf-8")
    tsv = tmp_path / "queries.tsv"
    tsv.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    result = search(tiny_model_dir, built_index, "--queries", str(jsonl), "--output",
                    str(tmp_path / "run.trec"), "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "4 queries" in result.output
    run = read_run(tmp_path / "run.trec")
    assert set(run) == set(QUERIES) and all(len(hits) <= 3 for hits in run.values())
    lines = (tmp_path / "run.trec").read_text(encoding="utf-8").splitlines()
    fields = lines[0].split()
    assert len(fields) == 6 and fields[1] == "Q0" and fields[3] == "1" and fields[5] == tiny_model_dir.name

    # the one-query search ranks exactly as the run does
    single = search(tiny_model_dir, built_index, "capital of Korea", "--top-k", "3", "--format", "trec")
    assert single.exit_code == 0, single.output
    assert [line.split()[2] for line in single.output.splitlines()] == \
        [line.split()[2] for line in lines if line.startswith("q2 ")]

    result = search(tiny_model_dir, built_index, "--queries", str(tsv), "--output",
                    str(tmp_path / "tsv.trec"), "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "tsv.trec") == run

    qrels = {"q2": {"doc1": 1}, "q1": {"doc0": 1}}
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"recall.3"}).evaluate(run)
    assert set(scores) == {"q1", "q2"} and all(0.0 <= s["recall_3"] <= 1.0 for s in scores.values())


def test_batch_search_mistakes_are_one_line(tiny_model_dir: Path, built_index: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\tfine\nno tab here\n", encoding="utf-8")
    cases = [(["--queries", str(bad), "--output", str(tmp_path / "r.trec")],
              "bad.tsv:2: expected `id<TAB>text`"),
             (["--queries", str(bad)], "--output:"),
             (["hello", "--queries", str(bad), "--output", "x"], "QUERY: give one query text or --queries"),
             (["hello", "--output", "x"], "--output: needs --queries"),
             (["--queries", str(tmp_path / "none.tsv"), "--output", "x"], "none.tsv: file not found")]
    for extra, message in cases:
        result = search(tiny_model_dir, built_index, *extra)
        assert result.exit_code != 0
        assert message in str(result.exception) or message in result.output, (extra, result.output)
    assert not (tmp_path / "r.trec").exists()


def test_two_shards_write_the_run_one_search_writes(tiny_model_dir: Path, built_index: Path,
                                                    tmp_path: Path) -> None:
    from splade.windows import ENCODE_WINDOW

    n = ENCODE_WINDOW + 40  # two windows: each shard searches one
    tsv = tmp_path / "many.tsv"
    tsv.write_text("".join(f"q{i}\t{QUERIES[f'q{i % 4 + 1}']} {i % 7}\n" for i in range(n)), encoding="utf-8")
    whole = tmp_path / "whole.trec"
    assert search(tiny_model_dir, built_index, "--queries", str(tsv), "--output", str(whole)).exit_code == 0
    parted = tmp_path / "parted.trec"
    common = ["--queries", str(tsv), "--output", str(parted)]
    first = search(tiny_model_dir, built_index, *common, "--shard", "1/2")
    assert first.exit_code == 0, first.output
    assert "waiting for shard(s) 0" in first.output and not parted.exists()
    second = search(tiny_model_dir, built_index, *common, "--shard", "0/2")
    assert second.exit_code == 0, second.output
    assert f"wrote the run of {n} queries from 2 shards" in second.output
    assert parted.read_text(encoding="utf-8") == whole.read_text(encoding="utf-8")
    assert not (tmp_path / "parted.trec.parts").exists()
    assert len(read_run(parted)) == n


def test_batch_search_on_an_opensearch_alias(tiny_model_dir: Path, built_index: Path, opensearch_url: str,
                                             tmp_path: Path) -> None:
    tsv = tmp_path / "queries.tsv"
    tsv.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    corpus = built_index.parent / "beir"
    common = ["--model", str(tiny_model_dir), "--index", "batch-idx", "--backend", "opensearch"]
    env = {"OPENSEARCH_HOSTS": opensearch_url, "COLUMNS": "200"}
    assert CliRunner().invoke(app, ["index", "--corpus", str(corpus), *common], env=env).exit_code == 0
    batch = ["--queries", str(tsv), "--top-k", "3", "--output"]
    result = CliRunner().invoke(app, ["search", *common, "--query-mode", "rank_feature", *batch,
                                      str(tmp_path / "os.trec")], env=env)
    assert result.exit_code == 0, result.output
    assert search(tiny_model_dir, built_index, *batch, str(tmp_path / "local.trec")).exit_code == 0
    remote, local = read_run(tmp_path / "os.trec"), read_run(tmp_path / "local.trec")
    assert set(remote) == set(QUERIES)
    for qid, docs in local.items():  # rank_features keeps 9 significant bits: scores within 1%
        best = max(docs, key=docs.get)
        assert remote[qid].get(best, 0.0) == pytest.approx(docs[best], rel=0.01)
