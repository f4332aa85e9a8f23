"""`splade eval`'s rows for the quality benchmark: documents at the served length, BM25 over a model's pieces,
the teacher ensemble, and the dev halves of the queries. Every model and data set is built in the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_evaluation import make_beir

from splade.errors import SpladeError
from splade.evaluation import EvalConfig, run_evaluation, write_report

FILLER = "사과 바나나 포도 딸기 수박 참외 복숭아 자두 apple banana grape melon peach plum"
RARE = "기린"  # the one word only the relevant document holds
PIECE_TEXTS = [FILLER, RARE, "기린은 목이 길다", "하마 코끼리 사자 호랑이", "diabetes coffee health"] * 10


@pytest.fixture(scope="module")
def lexical_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that activates exactly each text's own pieces, served at 512 tokens."""
    from splade.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("lexical_512")
    build_tiny_model(PIECE_TEXTS, out, vocab_size=200, hidden_size=32, num_layers=1, num_heads=2,
                     max_length=512, lexical_bias=-2.0)
    return out


def long_corpus(root: Path, name: str = "long") -> Path:
    """Three documents of over 200 pieces; only d2 holds the rare word, after piece 200."""
    filler = " ".join([FILLER] * 15)
    docs = {"d1": filler, "d2": f"{filler} {RARE}", "d3": f"하마 코끼리 {filler}"}
    return make_beir(root, name, docs, {"q1": (RARE, "d2"), "q2": ("하마 코끼리", "d3")})


def test_documents_are_encoded_past_128_pieces(lexical_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    pieces = AutoTokenizer.from_pretrained(str(lexical_model_dir))
    text = json.loads((long_corpus(tmp_path, "probe") / "corpus.jsonl").read_text().splitlines()[1])["text"]
    ids = pieces(text, add_special_tokens=False)["input_ids"]
    assert ids.index(pieces.convert_tokens_to_ids(RARE)) > 200

    dataset = long_corpus(tmp_path)
    served = run_evaluation(EvalConfig(datasets=[dataset], bm25=False, splade=[("lex", lexical_model_dir)],
                                       top_k=3, trials=10))
    row = served.datasets[0].systems[0]
    assert row.lengths == {"query_max_length": 512, "doc_max_length": 512}  # the model's own lengths
    assert next(iter(row.run["q1"])) == "d2" and row.per_query["q1"]["ndcg@10"] == pytest.approx(1.0)

    cut = run_evaluation(EvalConfig(datasets=[dataset], bm25=False, splade=[("lex", lexical_model_dir)],
                                    doc_max_length=128, top_k=3, trials=10))
    row = cut.datasets[0].systems[0]
    assert row.lengths["doc_max_length"] == 128
    assert row.per_query["q1"]["ndcg@10"] == 0.0  # cut at 128, d2 has lost the rare word
    assert row.per_query["q2"]["ndcg@10"] == pytest.approx(1.0)
    with pytest.raises(SpladeError, match="^--doc-max-length: 1024 tokens is more than"):
        run_evaluation(EvalConfig(datasets=[dataset], bm25=False, splade=[("lex", lexical_model_dir)],
                                  doc_max_length=1024))


def test_bm25_pieces_ranks_the_document_sharing_rare_pieces_first(lexical_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    from splade.evaluation.baselines import BM25System

    system = BM25System("bm25-pieces", "pieces", pieces_model=lexical_model_dir)
    tokens = system._tokenize([f"하마 {RARE}"])[0]
    assert tokens == ["하마", RARE] and not {"[CLS]", "[SEP]"} & set(tokens)  # pieces, no special tokens

    long = " ".join([FILLER] * 40)  # over 1,000 pieces: read whole, not cut at any length
    docs = {"d1": f"{FILLER} 하마", "d2": f"{long} {RARE}", "d3": f"하마 코끼리 {FILLER}"}
    dataset = make_beir(tmp_path, "pieces", docs, {"q1": (f"하마 {RARE}", "d2")})
    result = run_evaluation(EvalConfig(datasets=[dataset], bm25=False, bm25_pieces=lexical_model_dir,
                                       top_k=3, trials=10))
    [row] = result.datasets[0].systems
    assert row.name == "bm25-pieces" and row.baseline and row.lengths == {"bm25": "whole document"}
    assert list(row.run["q1"])[0] == "d2" and row.metrics["ndcg@10"] == pytest.approx(1.0)


def test_fuse_candidates_gives_a_missing_document_zero() -> None:
    from splade.fusion import fuse_candidates

    bm25 = np.array([3.0, 1.0, np.nan, 2.0])  # d2 is not in BM25's list
    dense = np.array([0.5, np.nan, 0.9, 0.7])  # d1 is not in dense's list
    weights = np.array([0.4, 0.4, 0.1, 0.4], dtype=np.float32)
    # bm25 -> [1, 0, 0, 0.5]; dense -> [0, 0, 1, 0.5]
    assert fuse_candidates(bm25, dense, weights) == pytest.approx([0.4, 0.0, 0.9, 0.5], abs=1e-6)


TOY_DOCS = {"k1": "당뇨병 치료 방법은 운동과 식사 조절이다", "k2": "당뇨병은 혈당이 높아지는 병이다",
            "e1": "treatment of diabetes"}
TOY_QUERIES = {"qk": ("당뇨병 치료 방법", "k1"), "qe": ("diabetes treatment", "e1")}


@pytest.fixture(scope="module")
def tiny_dense_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random sentence-transformers bi-encoder (mean pooling) over a fixed word vocabulary, so its
    scores are the same on every run (a trained WordPiece vocabulary may order tied pieces differently)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny_dense")
    texts = [*TOY_DOCS.values(), *(text for text, _ in TOY_QUERIES.values())]
    words = sorted({word for text in texts for word in text.split()})
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n",
                                   encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    BertModel(config).save_pretrained(out / "bert")
    tokenizer.save_pretrained(out / "bert")
    word = models.Transformer(str(out / "bert"), max_seq_length=64)
    pooling = models.Pooling(word.get_embedding_dimension(), "mean")
    SentenceTransformer(modules=[word, pooling], device="cpu").save(str(out / "st"))
    return out / "st"


def _minmax(run: dict[str, float]) -> dict[str, float]:
    low, high = min(run.values()), max(run.values())
    return {doc: (score - low) / (high - low) if high > low else 0.0 for doc, score in run.items()}


def test_teacher_row_is_the_fusion_by_hand(tiny_dense_dir: Path, tmp_path: Path) -> None:
    docs, queries, korean = TOY_DOCS, TOY_QUERIES, {"k1": True, "k2": True, "e1": False}
    dataset = make_beir(tmp_path, "toy", docs, queries)
    config = EvalConfig(datasets=[dataset], dense=str(tiny_dense_dir), dense_max_length=64, teacher=True,
                        teacher_bm25_weight=0.4, teacher_cross_lingual_weight=0.1, top_k=10, trials=10)
    result = run_evaluation(config)
    rows = {row.name: row for row in result.datasets[0].systems}
    assert list(rows) == ["bm25", "dense", "teacher"] and rows["teacher"].baseline
    assert rows["teacher"].lengths == {"bm25": "whole document", "dense_max_length": 64}
    weight_matters = False
    for qid in queries:
        bm25, dense = _minmax(rows["bm25"].run[qid]), _minmax(rows["dense"].run[qid])
        assert len(rows["bm25"].run["qk"]) >= 2 and set(rows["dense"].run[qid]) == set(docs)
        expected = {}
        for doc in docs:
            w = 0.4 if qid == "qk" and korean[doc] else 0.1
            expected[doc] = w * bm25.get(doc, 0.0) + (1 - w) * dense[doc]
            if qid == "qk" and not korean[doc]:  # the cross-lingual pair: 0.4 would give another score
                weight_matters |= abs(0.4 * bm25.get(doc, 0.0) + 0.6 * dense[doc] - expected[doc]) > 1e-3
        teacher = rows["teacher"].run[qid]
        assert teacher == pytest.approx(expected, abs=1e-5)
        assert list(teacher) == sorted(expected, key=lambda d: -expected[d])  # best first
    assert weight_matters, (rows["dense"].run, rows["bm25"].run)

    report = tmp_path / "report"
    write_report(result, report)
    saved = json.loads((report / "results.json").read_text(encoding="utf-8"))
    lengths = {s["name"]: s["lengths"] for s in saved["datasets"][0]["systems"]}
    assert lengths["dense"] == {"dense_max_length": 64} and lengths["bm25"] == {"bm25": "whole document"}
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "lengths: bm25 whole document, dense_max_length 64" in markdown


def test_query_halves_split_ids_deterministically(tmp_path: Path) -> None:
    from splade.data.beir import load_beir
    from splade.dev_split import in_half
    from splade.evaluation.runner import sample_queries

    docs = {f"d{i}": f"문서 {i} 당뇨병 고혈압 감기" for i in range(40)}
    queries = {f"q{i}": (f"당뇨병 질문 {i}", f"d{i}") for i in range(40)}
    dataset = load_beir(make_beir(tmp_path, "halves", docs, queries))
    ids = list(dataset.judged_queries())
    select, report = in_half(ids, "select"), in_half(ids, "report")
    assert select and report and not set(select) & set(report) and sorted(select + report) == sorted(ids)
    assert in_half(reversed(ids), "report") == report[::-1]  # a function of the id alone
    assert list(sample_queries(dataset, None, 0, "report")) == report
    sample = sample_queries(dataset, 3, 0, "report")
    assert len(sample) == 3 and set(sample) <= set(report)  # the sample is drawn from the half

    result = run_evaluation(EvalConfig(datasets=[tmp_path / "halves"], bm25=False, bm25_whitespace=True,
                                       query_half="select", trials=10))
    assert set(result.datasets[0].systems[0].per_query) == set(select)
    assert result.datasets[0].n_queries == len(select)
    assert result.to_dict()["query_half"] == "select" and result.to_dict()["config"]["query_half"] == "select"


def test_bad_new_options_are_one_clear_error(tmp_path: Path) -> None:
    dataset = make_beir(tmp_path, "one", {"d1": "당뇨병"}, {"q1": ("당뇨병", "d1")})
    with pytest.raises(SpladeError, match="^--teacher: .*needs --bm25 and --dense"):
        EvalConfig(datasets=[dataset], bm25=False, dense="some-model", teacher=True)
    with pytest.raises(SpladeError, match="^--query-half: "):
        EvalConfig(datasets=[dataset], query_half="best")
    with pytest.raises(SpladeError, match="^--teacher-cross-lingual-weight: "):
        EvalConfig(datasets=[dataset], teacher_cross_lingual_weight=1.5)
    with pytest.raises(SpladeError, match="^--doc-max-length: "):
        EvalConfig(datasets=[dataset], doc_max_length=0)
    with pytest.raises(SpladeError, match="^--bm25-pieces: tokenizer folder .*no-such-folder not found"):
        run_evaluation(EvalConfig(datasets=[dataset], bm25_pieces=tmp_path / "no-such-folder"))
    with pytest.raises(SpladeError, match="^--bm25-pieces: cannot load a tokenizer"):
        run_evaluation(EvalConfig(datasets=[dataset], bm25_pieces=tmp_path))

    proc = subprocess.run([sys.executable, "-m", "splade", "eval", "--dataset", str(dataset), "--teacher",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: --teacher: ") and "--dense" in lines[0]
