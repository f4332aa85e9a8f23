"""Query pruning (`--query-top-k`): `splade search` and `splade eval` search only each query's heaviest
terms, and score documents exactly as the pruned query vector says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_evaluation import HEALTH, HEALTH_QUERIES, make_beir
from typer.testing import CliRunner

from splade.cli import _register_all, app

_register_all()
KEEP = 2  # terms a pruned query keeps


def expected_scores(model: Path, query: str, documents: dict[str, str],
                    top_k: int | None) -> dict[str, float]:
    """Each document's dot product with the query's `top_k` heaviest terms, from the encoder directly."""
    from splade.encoders import load_encoder

    encoder = load_encoder(model)
    query_row = encoder.encode_queries([query], top_k=top_k).to_dense()[0]
    docs = encoder.encode_documents(list(documents.values())).to_dense()
    return dict(zip(documents, (docs @ query_row).tolist(), strict=True))


def test_eval_searches_the_pruned_queries_and_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.evaluation import EvalConfig, run_evaluation

    health = make_beir(tmp_path, "health", HEALTH, HEALTH_QUERIES)
    common = {"datasets": [health], "bm25": False, "bm25_whitespace": True, "top_k": 10, "trials": 50}
    full = run_evaluation(EvalConfig(splade=[("tiny", tiny_model_dir)], **common)).datasets[0].systems[1]
    pruned_result = run_evaluation(EvalConfig(splade=[("tiny", tiny_model_dir)], query_top_k=KEEP, **common))
    pruned = pruned_result.datasets[0].systems[1]
    assert full.efficiency["avg_query_terms"] > KEEP  # the tiny model's queries are wider than the cut
    assert pruned.efficiency["avg_query_terms"] <= KEEP
    assert pruned.efficiency["flops"] < full.efficiency["flops"]
    assert "pruned: queries to 2 terms" in pruned.description  # the report's line for the system
    qid = "a1"
    expected = expected_scores(tiny_model_dir, HEALTH_QUERIES[qid][0], HEALTH, KEEP)
    for doc_id, score in pruned.run[qid].items():
        assert score == pytest.approx(expected[doc_id], rel=1e-4, abs=1e-5)


def test_search_prunes_one_query_and_a_query_file_alike(tiny_model_dir: Path, tmp_path: Path) -> None:
    from splade.config.index import IndexConfig
    from splade.indexer.pipeline import build_index

    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": "", "text": t}, ensure_ascii=False) + "\n"
                for d, t in HEALTH.items()), encoding="utf-8")
    index = tmp_path / "idx"
    build_index(IndexConfig(model=tiny_model_dir, corpus=tmp_path / "beir", index=str(index)),
                show_progress=False)
    query = HEALTH_QUERIES["a1"][0]
    base = ["search", "--model", str(tiny_model_dir), "--index", str(index), "--top-k", "6"]

    def scores(*extra: str) -> dict[str, float]:
        result = CliRunner().invoke(app, [*base, query, "--format", "json", *extra])
        assert result.exit_code == 0, result.output
        return {hit["doc_id"]: hit["score"] for hit in json.loads(result.output)["hits"]}

    pruned, full = scores("--query-top-k", str(KEEP)), scores()
    expected = expected_scores(tiny_model_dir, query, HEALTH, KEEP)
    for doc_id, score in pruned.items():
        assert score == pytest.approx(expected[doc_id], rel=1e-4, abs=1e-5)
    assert not np.allclose([pruned.get(d, 0.0) for d in full], list(full.values()))  # the cut mattered

    (tmp_path / "queries.tsv").write_text(f"a1\t{query}\n", encoding="utf-8")
    run = tmp_path / "run.trec"
    result = CliRunner().invoke(app, [*base, "--queries", str(tmp_path / "queries.tsv"), "--output", str(run),
                                      "--query-top-k", str(KEEP)])
    assert result.exit_code == 0, result.output
    batch = {line.split()[2]: float(line.split()[4]) for line in run.read_text(encoding="utf-8").splitlines()}
    assert batch == pytest.approx({d: round(s, 6) for d, s in pruned.items()}, abs=2e-6)

    bad = CliRunner().invoke(app, [*base, query, "--query-top-k", "0"])
    assert bad.exit_code != 0
    assert "--query-top-k: Input should be greater than or equal to 1" in str(bad.exception)
