"""`splade eval` at scale: shards that encode their share give the unsharded evaluation's runs and metrics;
OpenSearch layouts get a column each, with per-query latencies."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_evaluation import ENGLISH, ENGLISH_QUERIES, make_beir
from test_sharding import corpus_texts

from splade.errors import SpladeError
from splade.evaluation import EvalConfig, run_evaluation, write_report
from splade.evaluation.runner import build_systems


@pytest.fixture(scope="module")
def large_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five English documents among 1,195 distractors: two encoder windows, one for each shard."""
    docs = {**ENGLISH, **{f"x{i}": text for i, text in enumerate(corpus_texts(1195, seed=3))}}
    return make_beir(tmp_path_factory.mktemp("large"), "english", docs, ENGLISH_QUERIES)


def test_two_shards_evaluate_exactly_as_one_process(large_set: Path, tiny_model_dir: Path,
                                                    tmp_path: Path) -> None:
    common = {"datasets": [large_set], "splade": [("tiny", tiny_model_dir)], "bm25": False,
              "bm25_whitespace": True, "top_k": 100, "trials": 50}
    whole = run_evaluation(EvalConfig(**common)).datasets[0]
    messages: list[str] = []
    sharded = {"shard_dir": tmp_path / "report.shards", **common}
    assert run_evaluation(EvalConfig(shard="1/2", **sharded), log=messages.append) is None
    assert any("shard 1/2: documents encoded; waiting for shard(s) 0" in m for m in messages)
    last = run_evaluation(EvalConfig(shard="0/2", **sharded)).datasets[0]
    assert not (tmp_path / "report.shards").exists()
    for got, want in zip(last.systems, whole.systems, strict=True):
        assert got.name == want.name
        assert got.run == want.run and got.metrics == want.metrics
    tiny = last.systems[-1]
    assert tiny.efficiency["doc_encode_s"] > 0 and tiny.efficiency["p50_ms"] > 0
    assert tiny.efficiency["p99_ms"] >= tiny.efficiency["p50_ms"]


def test_a_sharded_evaluation_needs_splade(large_set: Path, tmp_path: Path) -> None:
    with pytest.raises(SpladeError, match="^--shard: sharding splits the SPLADE document encoding"):
        run_evaluation(EvalConfig(datasets=[large_set], shard="0/2", shard_dir=tmp_path / "s"))


def test_each_opensearch_layout_is_a_column_sharing_one_encoding(large_set: Path,
                                                                 tiny_model_dir: Path) -> None:
    config = EvalConfig(datasets=[large_set], splade=[("tiny", tiny_model_dir)], bm25=False,
                        backend="opensearch", mappings=["rank_features", "sparse_vector"], two_phase=True,
                        seismic=["top_n=20"])
    systems = build_systems(config)
    assert [s.name for s in systems] == ["tiny.rank_features", "tiny.sparse_vector", "tiny.two-phase"]
    assert [s.layout.name for s in systems] == ["rank_features", "sparse_vector", "two-phase"]
    assert systems[0].encoder is systems[2].encoder and systems[0]._encoded is systems[1]._encoded
    assert systems[1].description.endswith("OpenSearch sparse_vector (SEISMIC, approximate))")
    assert dict(systems[1].layout.seismic) == {"top_n": 20.0}
    with pytest.raises(SpladeError, match="^--mapping, --two-phase and --seismic need --backend opensearch"):
        build_systems(EvalConfig(datasets=[large_set], splade=[("tiny", tiny_model_dir)], two_phase=True))


def test_a_layout_the_cluster_lacks_stops_eval_in_one_line(opensearch_url: str, tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    from splade.indexer.connection import OpenSearchSettings

    small = make_beir(tmp_path, "english", ENGLISH, ENGLISH_QUERIES)
    config = EvalConfig(datasets=[small], splade=[("tiny", tiny_model_dir)], bm25=False, backend="opensearch",
                        opensearch=OpenSearchSettings(hosts=[opensearch_url]), mappings=["sparse_vector"])
    with pytest.raises(SpladeError, match=r"^--mapping: sparse_vector fields with the SEISMIC method needs "
                                          r"the opensearch-neural-search plugin"):
        run_evaluation(config)


def test_the_report_shows_latency_percentiles(tiny_model_dir: Path, tmp_path: Path) -> None:
    small = make_beir(tmp_path, "english", ENGLISH, ENGLISH_QUERIES)
    result = run_evaluation(EvalConfig(datasets=[small], splade=[("tiny", tiny_model_dir)], top_k=5,
                                       trials=50))
    write_report(result, tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if "p50 ms" in line and "p99 ms" in line)
    bm25 = next(line for line in lines[start:] if line.startswith("| bm25"))
    tiny = next(line for line in lines[start:] if line.startswith("| tiny"))
    assert bm25.rstrip(" |").endswith("- | -")  # BM25 searches all queries at once: no per-query latency
    p50, p99 = (float(cell) for cell in tiny.strip(" |").split(" | ")[-2:])
    assert 0 < p50 <= p99
