"""`splade eval` end to end on tiny BEIR sets: systems, merged corpus, report files, bad input, real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from typer.testing import CliRunner

from splade.errors import SpladeError
from splade.evaluation import EvalConfig, run_evaluation, write_report
from splade.evaluation.systems import parse_splade_spec

HEALTH = {
    "h1": "당뇨병은 혈당이 높아지는 만성 질환이다",
    "h2": "고혈압 환자는 소금 섭취를 줄여야 한다",
    "h3": "감기는 바이러스가 일으키는 호흡기 감염이다",
    "h4": "커피를 많이 마시면 잠이 오지 않는다",
    "h5": "서울은 한국의 수도이며 큰 도시이다",
    "h6": "인공지능 검색 모델은 문서를 찾아 준다",
}
HEALTH_QUERIES = {"a1": ("당뇨병 혈당", "h1"), "a2": ("고혈압 소금", "h2"), "a3": ("감기 바이러스", "h3"),
                  "a4": ("커피 잠", "h4"), "a5": ("한국 수도 서울", "h5")}
ENGLISH = {
    "e1": "diabetes mellitus is a disease of high blood sugar",
    "e2": "hypertension means high blood pressure",
    "e3": "the common cold is a viral infection",
    "e4": "coffee contains caffeine which keeps you awake",
    "e5": "seoul is the capital of korea",
}
ENGLISH_QUERIES = {"b1": ("diabetes blood sugar", "e1"), "b2": ("blood pressure hypertension", "e2"),
                   "b3": ("viral cold infection", "e3"), "b4": ("coffee caffeine", "e4")}


def make_beir(root: Path, name: str, docs: dict[str, str], queries: dict[str, tuple[str, str]],
              split: str = "dev") -> Path:
    folder = root / name
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, text in docs.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for qid, (text, _) in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{qid}\t{doc}\t1" for qid, (_, doc) in queries.items()]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture()
def two_sets(tmp_path: Path) -> list[Path]:
    return [make_beir(tmp_path, "health", HEALTH, HEALTH_QUERIES),
            make_beir(tmp_path, "english", ENGLISH, ENGLISH_QUERIES)]


def test_bm25_and_splade_on_two_datasets_and_report(two_sets: list[Path], tiny_model_dir: Path,
                                                    tmp_path: Path) -> None:
    config = EvalConfig(datasets=two_sets, splade=[("tiny", tiny_model_dir)], bm25_whitespace=True,
                        top_k=10, trials=500)
    result = run_evaluation(config)
    assert [d.name for d in result.datasets] == ["health", "english"]
    health = result.datasets[0]
    assert [s.name for s in health.systems] == ["bm25", "bm25-whitespace", "tiny"]
    assert health.n_queries == 5 and health.n_docs == 6
    bm25 = health.systems[0]
    assert bm25.metrics["ndcg@10"] == pytest.approx(1.0)  # every query shares morphemes with its passage only
    assert set(bm25.per_query) == set(HEALTH_QUERIES)
    tiny = health.systems[2]
    assert tiny.efficiency["avg_doc_terms"] > 0.0 and tiny.efficiency["index_bytes"] > 0
    assert tiny.efficiency["flops"] > 0 and tiny.efficiency["search_s"] >= 0
    assert all(len(docs) <= 10 for docs in tiny.run.values())
    # tiny and bm25-whitespace are tested against bm25 on each of the 4 metrics; bm25 is the only baseline
    pairs = {(c.system, c.baseline) for c in health.comparisons}
    assert pairs == {("bm25-whitespace", "bm25"), ("tiny", "bm25")}
    assert len(health.comparisons) == 8

    out = tmp_path / "report"
    html_path = write_report(result, out)
    assert html_path == out / "report.html"
    page = html_path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## health" in markdown and "| system | NDCG@10 | MRR@10 | R@100 | R@1000 |" in markdown
    assert (out / "plots" / "metric_bars.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    saved = data["datasets"][0]["systems"][0]
    assert saved["metrics"]["ndcg@10"] == pytest.approx(1.0) and "a1" in saved["per_query"]
    trec = (out / saved["run_file"]).read_text(encoding="utf-8").splitlines()
    assert len(trec) == sum(len(docs) for docs in bm25.run.values())
    first = trec[0].split()
    assert first[1] == "Q0" and first[3] == "1" and first[5] == "bm25" and len(first) == 6
    assert first[0] == "a1" and first[2] == "h1"
    # what produced the numbers: splade's and the libraries' versions, each model's identity
    from splade import __version__
    from splade.model import model_identity

    assert data["environment"]["splade"] == __version__ and "transformers" in data["environment"]["libraries"]
    assert data["models"] == {"tiny": model_identity(tiny_model_dir)}
    assert __version__ in markdown and model_identity(tiny_model_dir) in markdown
    # each comparison: a confidence interval around the difference, and per-query wins / ties / losses
    for comparison in data["datasets"][0]["comparisons"]:
        assert comparison["ci_low"] <= comparison["delta"] <= comparison["ci_high"]
        assert comparison["wins"] + comparison["ties"] + comparison["losses"] == health.n_queries
    assert "| 95% CI | wins / ties / losses |" in markdown

    write_report(result, out)  # an earlier report is replaced
    other = tmp_path / "not-a-report"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(SpladeError, match="--out"):
        write_report(result, other)


def test_merged_corpus_adds_distractors(two_sets: list[Path]) -> None:
    config = EvalConfig(datasets=two_sets, merged_corpus=True, top_k=5, trials=100)
    result = run_evaluation(config)
    assert [d.n_docs for d in result.datasets] == [11, 11]
    english = result.datasets[1].systems[0]
    assert all(doc.startswith(("english/", "health/")) for docs in english.run.values() for doc in docs)
    assert english.run["b1"] and next(iter(english.run["b1"])) == "english/e1"
    assert english.metrics["recall@100"] == pytest.approx(1.0)


def test_merged_corpus_leaves_out_parallel_twins_of_the_answers(tmp_path: Path) -> None:
    """Two sets with the same query text (a Korean and a cross-lingual version): in the merged corpus the
    other set's answer to that query is a translation of this one's, so it is not ranked as a wrong hit."""
    korean = {"k1": "diabetes 당뇨병 혈당 질환", "k2": "고혈압 소금", "k3": "감기 바이러스"}
    crossling = {"x1": "diabetes mellitus blood sugar", "x2": "hypertension salt", "x3": "common cold"}
    sets = [make_beir(tmp_path, "ko", korean, {"q1": ("diabetes 당뇨병", "k1")}),
            make_beir(tmp_path, "koen", crossling, {"q1": ("diabetes 당뇨병", "x1")})]
    result = run_evaluation(EvalConfig(datasets=sets, merged_corpus=True, bm25=False, bm25_whitespace=True,
                                       top_k=5, trials=50))
    ko, koen = (d.systems[0] for d in result.datasets)
    assert "koen/x1" not in ko.run["q1"] and "ko/k1" not in koen.run["q1"]
    assert next(iter(ko.run["q1"])) == "ko/k1" and next(iter(koen.run["q1"])) == "koen/x1"
    assert ko.metrics["ndcg@10"] == pytest.approx(1.0) and koen.metrics["ndcg@10"] == pytest.approx(1.0)
    own = run_evaluation(EvalConfig(datasets=sets, bm25=False, bm25_whitespace=True, top_k=5, trials=50))
    assert set(own.datasets[1].systems[0].run["q1"]) == {"x1"}  # per-set corpora exclude nothing


def test_max_queries_is_a_seeded_sample(two_sets: list[Path]) -> None:
    config = EvalConfig(datasets=two_sets[1:], bm25=False, bm25_whitespace=True, max_queries=3, trials=50)
    first, second = run_evaluation(config), run_evaluation(config)
    assert first.datasets[0].n_queries == 3
    assert set(first.datasets[0].systems[0].per_query) == set(second.datasets[0].systems[0].per_query)


def test_bad_input_is_one_clear_error(tmp_path: Path, two_sets: list[Path]) -> None:
    broken = make_beir(tmp_path, "broken", HEALTH, {"x1": ("당뇨병", "missing-doc")})
    with pytest.raises(SpladeError, match=r"dev\.tsv:2"):
        run_evaluation(EvalConfig(datasets=[broken], bm25=False, bm25_whitespace=True))
    with pytest.raises(SpladeError, match="no qrels for split 'test'"):
        run_evaluation(EvalConfig(datasets=two_sets, split="test", bm25=False, bm25_whitespace=True))
    nothing = make_beir(tmp_path, "nothing", HEALTH, {"z1": ("zzz qqq", "h1")})
    with pytest.raises(SpladeError, match="empty run"):
        run_evaluation(EvalConfig(datasets=[nothing], bm25=False, bm25_whitespace=True))
    with pytest.raises(SpladeError, match="--splade: system name 'my model' may use only"):
        run_evaluation(EvalConfig(datasets=two_sets, splade=[("my model", tmp_path)]))
    assert parse_splade_spec("runs/모델 v2/") == ("v2", Path("runs/모델 v2/"))
    with pytest.raises(SpladeError, match="--splade"):
        run_evaluation(EvalConfig(datasets=two_sets, splade=[("x", tmp_path / "no-model")]))
    empty = make_beir(tmp_path, "empty", {}, {})
    with pytest.raises(SpladeError, match="corpus.jsonl: no documents"):
        run_evaluation(EvalConfig(datasets=[empty]))
    with pytest.raises(SpladeError, match="two datasets"):
        run_evaluation(EvalConfig(datasets=[two_sets[0], two_sets[0]], bm25=False, bm25_whitespace=True))


def test_cli_writes_report_and_errors_in_one_line(two_sets: list[Path], tmp_path: Path) -> None:
    from splade.cli import _register_all, app

    _register_all()
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(app, ["eval", "--dataset", str(two_sets[0]), "--dataset", str(two_sets[1]),
                                      "--max-queries", "2", "--trials", "100", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and (out / "runs" / "english" / "bm25.trec").is_file()

    proc = subprocess.run([sys.executable, "-m", "splade", "eval", "--dataset", str(two_sets[0]),
                           "--split", "test", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no qrels for split 'test'" in lines[0]


def test_dense_baseline_with_me5(me5_dir: Path, two_sets: list[Path]) -> None:
    from splade.data.beir import load_beir
    from splade.evaluation.baselines import DenseSystem

    dense = DenseSystem(me5_dir, batch_size=8)
    assert next(dense.model.parameters()).dtype.is_floating_point
    assert str(next(dense.model.parameters()).dtype) == "torch.float32"
    dataset = load_beir(two_sets[0])
    dense.index(list(dataset.corpus.values()))
    norms = np.linalg.norm(dense._embeddings, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
    output = dense.search(dataset.judged_queries(), top_k=3)
    hits = sum(next(iter(output.run[qid])) == gold for qid, (_, gold) in HEALTH_QUERIES.items())
    assert hits >= 4  # a real multilingual model finds the paraphrased gold passage first
    assert output.flops == 384.0 and dense.index_bytes == 6 * 384 * 4


def test_bm25_reproduces_korquad_baseline() -> None:
    """The data README's measured BM25 (Kiwi content morphemes) on KorQuAD dev: NDCG@10 0.955."""
    korquad = shared_path("data", "beir", "korquad")
    result = run_evaluation(EvalConfig(datasets=[korquad], trials=100))
    bm25 = result.datasets[0].systems[0]
    assert bm25.metrics["ndcg@10"] == pytest.approx(0.955, abs=0.01)
    assert bm25.metrics["recall@1000"] == pytest.approx(1.0, abs=0.005)


def test_splade_through_opensearch_matches_local(two_sets: list[Path], tiny_model_dir: Path,
                                                 opensearch_url: str) -> None:
    """The same model searched in OpenSearch (osmem-server) ranks like the embedded index."""
    from splade.indexer.opensearch import OpenSearchSettings, make_client

    settings = OpenSearchSettings(hosts=[opensearch_url])
    common = {"datasets": two_sets[:1], "splade": [("tiny", tiny_model_dir)], "bm25": False, "top_k": 5,
              "trials": 100}
    local = run_evaluation(EvalConfig(**common)).datasets[0].systems[0]
    remote_result = run_evaluation(EvalConfig(backend="opensearch", opensearch=settings, **common))
    remote = remote_result.datasets[0].systems[0]
    assert remote.description.endswith("OpenSearch rank_features)")
    assert remote.efficiency["index_bytes"] >= 0
    for qid, docs in local.run.items():
        best = max(docs.values())  # rank_features' rounding may swap documents within 1% of the best
        assert docs.get(next(iter(remote.run[qid])), 0.0) >= best * 0.99
        for doc, score in remote.run[qid].items():
            if doc in docs:
                assert score == pytest.approx(docs[doc], rel=0.01)  # rank_features keeps 9 significant bits
    assert remote.metrics["ndcg@10"] == pytest.approx(local.metrics["ndcg@10"], abs=0.05)
    leftover = make_client(settings).indices.get_alias(index="splade-eval-*", ignore_unavailable=True)
    assert not leftover  # the evaluation's indices are dropped afterwards


def test_cli_shows_one_progress_bar_per_stage(two_sets: list[Path], tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    """Model loading and Kiwi print no bars of their own: each system shows one for documents, one for
    queries and one for searching."""
    import re

    proc = subprocess.run([sys.executable, "-m", "splade", "eval", "--dataset", str(two_sets[0]),
                           "--splade", f"tiny={tiny_model_dir}", "--max-queries", "2", "--trials", "50",
                           "--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    bars = set(re.findall(r"(?:^|[\r\n])([^\r\n:|]+):\s+\d+%\|", proc.stderr))
    expected = {"bm25 documents", "bm25 queries", "tiny documents", "tiny queries", "tiny search"}
    assert bars == expected, proc.stderr
    assert "Loading weights" not in proc.stderr and "LOAD REPORT" not in proc.stderr
