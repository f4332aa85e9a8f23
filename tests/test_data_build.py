"""`splade data build`: sources, hard-negative mining, pair types, dedup, split-leak check, atomic output."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, shared_path

from splade.config.data import BuildConfig, EvalSetConfig, MiningSettings, SourceConfig, load_build_config
from splade.data.beir import load_beir
from splade.data.build import build_training_data, normalize
from splade.data.mining import (
    LexicalRetriever,
    MiningTask,
    SpladeRetriever,
    difficulty,
    mine_negatives,
)
from splade.data.sample import sample_beir_dir, sample_dir
from splade.data.sources import read_lexicon, read_parallel
from splade.errors import SpladeError

DOCS = {
    "d1": "당뇨병은 혈당이 높아지는 만성 대사 질환이다. 인슐린이 부족하면 당뇨병이 생긴다.",
    "d2": "제2형 당뇨병은 인슐린 저항성 때문에 생기는 당뇨병이다.",
    "d3": "고혈압은 혈압이 높은 상태이며 심장 질환의 원인이 된다.",
    "d4": "감기는 바이러스가 일으키는 호흡기 질환이다. 감기에 걸리면 쉬어야 한다.",
    "d5": "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "d6": "부산은 대한민국 제2의 도시이며 항구 도시이다.",
    "d7": "커피에는 카페인이 들어 있어 잠을 쫓는다.",
    "d8": "녹차에도 카페인이 조금 들어 있다.",
    "d9": "당뇨병 환자는 혈당을 자주 재야 한다. 당뇨병 관리에는 운동이 중요하다.",
    "d10": "김치는 배추를 소금에 절여 만든 한국의 전통 음식이다.",
}
TRAIN_QUERIES = {"q1": "당뇨병은 어떤 질환인가", "q2": "고혈압이란 무엇인가",
                 "q3": "대한민국의 수도는 어디인가", "q4": "커피에 들어 있는 성분",
                 "q5": "김치는 어떻게 만드나"}
DEV_QUERIES = {"q6": "감기에 걸리면 어떻게 하나", "q7": "부산은 어떤 도시인가"}
TRAIN_QRELS = [("q1", "d1"), ("q1", "d9"), ("q2", "d3"), ("q3", "d5"), ("q4", "d7"), ("q5", "d10")]
DEV_QRELS = [("q6", "d4"), ("q7", "d6")]


def _write_beir(root: Path, extra_train: dict[str, str] | None = None,
                extra_qrels: list[tuple[str, str]] | None = None) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i, t in DOCS.items():
            f.write(json.dumps({"_id": i, "title": "", "text": t}, ensure_ascii=False) + "\n")
    queries = {**TRAIN_QUERIES, **DEV_QUERIES, **(extra_train or {})}
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for i, t in queries.items():
            f.write(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n")
    for split, rows in (("train", TRAIN_QRELS + (extra_qrels or [])), ("dev", DEV_QRELS)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


PARALLEL = [("당뇨병 치료 방법", "how to treat diabetes"), ("고혈압 예방", "preventing high blood pressure"),
            ("나는 커피를 좋아한다.", "I like coffee."), ("나는 차를 좋아한다.", "I like tea."),
            ("그는 학교에 간다.", "He goes to school."), ("그녀는 학교에 간다.", "She goes to school."),
            ("오늘 날씨가 좋다.", "The weather is nice today."),
            ("내일 비가 온다.", "It will rain tomorrow."),
            ("서울은 크다.", "Seoul is big."), ("부산은 바다가 있다.", "Busan has the sea."),
            ("한 남자가 말을 타고 있다.", "A man is riding a horse."),
            ("남자가 말을 타고 있다.", "A man is riding a horse."),
            ("한 여자가 기타를 치고 있다.", "A woman is playing a guitar.")]
LEXICON = [("E10", "1형 당뇨병", "Type 1 diabetes mellitus"),
           ("E11", "2형 당뇨병", "Type 2 diabetes mellitus"),
           ("I10", "본태성 고혈압", "Essential hypertension"),
           ("J00", "급성 비인두염", "Acute nasopharyngitis"),
           ("A00", "콜레라", "Cholera"), ("A01", "장티푸스", "Typhoid fever"),
           ("E14", "상세불명의 당뇨병 합병증 없음", "Unspecified diabetes mellitus without complications")]


def _write_tsv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    path.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def sources(tmp_path: Path) -> dict[str, Path]:
    return {"beir": _write_beir(tmp_path / "toy"),
            "parallel": _write_tsv(tmp_path / "para.tsv", ["ko", "en"], PARALLEL),
            "lexicon": _write_tsv(tmp_path / "kcd.tsv", ["code", "ko", "en"], LEXICON)}


# --- sources ---------------------------------------------------------------------------------------------


def test_readers_parse_and_report_file_and_line(tmp_path: Path, sources: dict[str, Path]) -> None:
    pairs = read_parallel(sources["parallel"])
    assert pairs[0].ko == "당뇨병 치료 방법" and pairs[0].en == "how to treat diabetes" and pairs[0].line == 2
    assert [p.ko for p in read_lexicon(sources["lexicon"])][:2] == ["1형 당뇨병", "2형 당뇨병"]
    muse = tmp_path / "muse.txt"
    muse.write_text("분류 category\n당뇨병\tdiabetes\n", encoding="utf-8")
    muse_pairs = [(p.ko, p.en) for p in read_lexicon(muse, header=False)]
    assert muse_pairs == [("분류", "category"), ("당뇨병", "diabetes")]

    wrong = _write_tsv(tmp_path / "wrong.tsv", ["korean", "english"], [("가", "a")])
    with pytest.raises(SpladeError, match=r"wrong\.tsv:1: header has no column 'ko' or 'en'"):
        read_parallel(wrong)
    short = tmp_path / "short.tsv"
    short.write_text("ko\ten\n가\ta\n나만 있다\n", encoding="utf-8")
    with pytest.raises(SpladeError, match=r"short\.tsv:3: expected at least 2"):
        read_parallel(short)
    binary = tmp_path / "latin1.tsv"
    binary.write_bytes(b"ko\ten\n" + "café\tx\n".encode("latin-1"))
    with pytest.raises(SpladeError, match=r"latin1\.tsv:2: not valid UTF-8 \(byte 0xe9"):
        read_parallel(binary)
    with pytest.raises(SpladeError, match=r"missing\.tsv: file not found"):
        read_parallel(tmp_path / "missing.tsv")


def test_beir_files_that_are_not_utf8_name_file_and_line(tmp_path: Path) -> None:
    beir = _write_beir(tmp_path / "beir")
    qrels = beir / "qrels" / "train.tsv"
    qrels.write_bytes(qrels.read_bytes() + "q1\tcafé\t1\n".encode("latin-1"))
    lines = len(qrels.read_bytes().splitlines())
    with pytest.raises(SpladeError, match=rf"train\.tsv:{lines}: not valid UTF-8"):
        load_beir(beir, split="train")
    corpus = beir / "corpus.jsonl"
    corpus.write_bytes(corpus.read_bytes() + b'{"_id": "x", "text": "caf\xe9"}\n')
    lines = len(corpus.read_bytes().splitlines())
    with pytest.raises(SpladeError, match=rf"corpus\.jsonl:{lines}: not valid UTF-8"):
        load_beir(beir, split="train")


# --- mining ----------------------------------------------------------------------------------------------


def test_difficulty_from_score_ratio() -> None:
    s = MiningSettings()
    assert difficulty(9.0, 10.0, s) == "hard" and difficulty(12.0, 10.0, s) == "hard"
    assert difficulty(5.0, 10.0, s) == "medium" and difficulty(1.0, 10.0, s) == "easy"
    assert difficulty(0.0, 0.0, s) == "easy"


def test_mining_drops_relevant_and_near_duplicates() -> None:
    pool = ["당뇨병은 혈당이 높은 질환이다.", "당뇨병은 혈당이 높은 질환이다!", "당뇨병 환자는 혈당을 잰다.",
            "당뇨병 치료에는 인슐린을 쓴다.", "고혈압은 혈압이 높은 질환이다.", "김치는 한국 음식이다."]
    task = MiningTask("당뇨병 혈당 질환", positive=0, excluded=frozenset({0, 2}), count=3)
    settings = MiningSettings(sample_depth=10)
    [negatives] = mine_negatives(pool, [task], LexicalRetriever(pool), settings, random.Random(0))
    picked = {n.index for n in negatives}
    assert len(negatives) == 3
    assert not picked & {0, 1, 2}  # positive, its near-duplicate and the other relevant text never appear
    assert all(n.difficulty in ("hard", "medium", "easy") for n in negatives)
    ranked = [n for n in negatives if n.rank >= 0]
    assert ranked and all(n.score > 0 for n in ranked)


def test_splade_retriever_mines_with_a_model(tiny_model_dir: Path) -> None:
    pool = ["당뇨병 치료 방법", "diabetes mellitus treatment", "고혈압 예방과 관리",
            "hypertension prevention", "커피는 건강에 좋다", "coffee is good for health"]
    retriever = SpladeRetriever(pool, str(tiny_model_dir), backend="torch")
    hits, pos_scores = retriever.candidates(["당뇨병 치료"], [0], top_k=3)
    (indices, scores), = hits
    assert 0 < len(indices) <= 3 and list(scores) == sorted(scores, reverse=True)
    assert pos_scores[0] > 0
    [negatives] = mine_negatives(pool, [MiningTask("당뇨병 치료", 0, frozenset({0}), 2)], retriever,
                                 MiningSettings(model=str(tiny_model_dir)), random.Random(1))
    assert len(negatives) == 2 and 0 not in {n.index for n in negatives}


# --- build -----------------------------------------------------------------------------------------------


def _config(sources: dict[str, Path], **kwargs) -> BuildConfig:
    return BuildConfig(sources=[
        SourceConfig(type="beir", path=str(sources["beir"])),
        SourceConfig(type="parallel", path=str(sources["parallel"]), direction="both", paraphrases=True),
        SourceConfig(type="lexicon", path=str(sources["lexicon"])),
    ], val_fraction=0.1, **kwargs)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_writes_typed_triplets_without_leaks(tmp_path: Path, sources: dict[str, Path]) -> None:
    out = tmp_path / "out"
    result = build_training_data(_config(sources), out)
    train, val = _rows(out / "train.jsonl"), _rows(out / "val.jsonl")
    assert train == result.train and val == result.val and len(train) > 20 and val
    for row in train + val:
        assert set(row) >= {"query", "positive", "negative", "pair_type", "difficulty"}
        assert row["difficulty"] in ("hard", "medium", "easy")
        assert normalize(row["negative"]) != normalize(row["positive"])
    types = {r["pair_type"] for r in train + val}
    assert {"monolingual_qa", "cross_lingual", "single_term", "paraphrase"} <= types
    # a BEIR negative is never a judged-relevant passage of its query
    relevant = {TRAIN_QUERIES[q]: {DOCS[d] for qq, d in TRAIN_QRELS if qq == q} for q, _ in TRAIN_QRELS}
    for row in train + val:
        if row["pair_type"] == "monolingual_qa":
            assert row["negative"] not in relevant[row["query"]]
    # single-term lexicon rows (<= 2 words) vs. longer names
    single = {r["query"] for r in train + val if r["pair_type"] == "single_term"}
    assert "콜레라" in single and "상세불명의 당뇨병 합병증 없음" not in single
    # no dev query in the output; train and val share no query
    queries = {normalize(r["query"]) for r in train + val}
    assert not queries & {normalize(q) for q in DEV_QUERIES.values()}
    assert not {normalize(r["query"]) for r in train} & {normalize(r["query"]) for r in val}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    fractions = [v["fraction"] for v in summary["train"]["pair_types"].values()]
    assert sum(fractions) == pytest.approx(1.0, abs=1e-3)
    assert summary["leak_check"]["passed"] is True


def test_leak_check_drops_dev_queries_and_dev_positives_used_as_queries(tmp_path: Path) -> None:
    # q8 repeats a dev query; q9's text is the dev positive passage d6; q10 differs only in spacing.
    extra = {"q8": DEV_QUERIES["q6"], "q9": DOCS["d6"], "q10": "  감기에 걸리면   어떻게 하나 "}
    beir = _write_beir(tmp_path / "leaky", extra, [("q8", "d4"), ("q9", "d5"), ("q10", "d4")])
    out = tmp_path / "out"
    result = build_training_data(BuildConfig(sources=[SourceConfig(type="beir", path=str(beir))]), out)
    queries = {normalize(r["query"]) for r in result.train + result.val}
    assert normalize(DEV_QUERIES["q6"]) not in queries and normalize(DOCS["d6"]) not in queries
    assert result.summary["sources"][0]["leak_dropped"] == 3
    assert normalize(TRAIN_QUERIES["q1"]) in queries


def test_dedup_removes_repeated_triplets(tmp_path: Path) -> None:
    para = _write_tsv(tmp_path / "dup.tsv", ["ko", "en"], PARALLEL[:6] * 3)
    out = tmp_path / "out"
    config = BuildConfig(sources=[SourceConfig(type="parallel", path=str(para)),
                                  SourceConfig(type="parallel", path=str(para), name="again")],
                         val_fraction=0.0)
    result = build_training_data(config, out)
    keys = [(r["query"], r["positive"], r["negative"]) for r in result.train]
    assert len(keys) == len(set(keys))
    assert result.summary["dedup"]["duplicates_dropped"] > 0


def test_eval_set_is_beir_and_disjoint_from_training(tmp_path: Path, sources: dict[str, Path]) -> None:
    config = BuildConfig(sources=[
        SourceConfig(type="parallel", path=str(sources["parallel"]), direction="both", eval_queries=3),
        SourceConfig(type="lexicon", path=str(sources["lexicon"]), eval_queries=2)],
        eval_set=EvalSetConfig(name="toy-eval", distractors=5), val_fraction=0.0)
    out = tmp_path / "out"
    result = build_training_data(config, out)
    evalset = load_beir(out / "beir" / "toy-eval", split="dev")
    assert len(evalset.queries) >= 5 and len(evalset.judged_queries()) == len(evalset.queries)
    eval_texts = {normalize(q) for q in evalset.queries.values()}
    eval_texts |= {normalize(evalset.corpus[d].text) for rels in evalset.qrels.values() for d in rels}
    assert not {normalize(r["query"]) for r in result.train} & eval_texts
    assert result.summary["eval_set"]["queries"] == len(evalset.queries)


def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path: Path, sources: dict[str, Path]) -> None:
    out = tmp_path / "out"
    build_training_data(_config(sources), out)
    before = (out / "train.jsonl").read_bytes()
    bad = _write_beir(tmp_path / "bad")
    with (bad / "qrels" / "train.tsv").open("a", encoding="utf-8") as f:
        f.write("q1\tnope\t1\n")
    with pytest.raises(SpladeError, match=r"train\.tsv:8: document 'nope' is not in corpus\.jsonl"):
        build_training_data(BuildConfig(sources=[SourceConfig(type="beir", path=str(bad))]), out)
    assert (out / "train.jsonl").read_bytes() == before  # the old output is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []  # no temp left
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SpladeError, match=r"--out: .*notes exists and is not an earlier training-data build"):
        build_training_data(_config(sources), foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  - type: beir\n    path: x\n    negatives: 0\n", encoding="utf-8")
    with pytest.raises(SpladeError, match=r"c\.yaml: sources\.0\.negatives"):
        load_build_config(cfg)
    cfg.write_text("sources: [\n", encoding="utf-8")
    with pytest.raises(SpladeError, match=r"c\.yaml:\d+: not valid YAML"):
        load_build_config(cfg)


def test_cli_build_and_one_line_error(tmp_path: Path, sources: dict[str, Path]) -> None:
    out = tmp_path / "cli-out"
    ok = subprocess.run([sys.executable, "-m", "splade", "data", "build",
                         "--parallel", str(sources["parallel"]), "--lexicon", str(sources["lexicon"]),
                         "--out", str(out)],
                        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert _rows(out / "train.jsonl") and "cross_lingual" in ok.stderr
    bars = set(re.findall(r"(?:^|[\r\n])([^\r\n:|]+):\s+\d+%\|", ok.stderr))  # one bar a stage, per source
    assert bars == {f"{sources[kind].stem} {stage}" for kind in ("parallel", "lexicon")
                    for stage in ("pool", "negatives")}, ok.stderr
    bad = _write_tsv(tmp_path / "bad.tsv", ["code", "korean"], [("A", "가")])
    err = subprocess.run([sys.executable, "-m", "splade", "data", "build", "--lexicon", str(bad),
                          "--out", str(tmp_path / "never")], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert err.returncode == 2
    lines = err.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.tsv:1:" in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "never").exists()


# --- the bundled sample and real data --------------------------------------------------------------------


def test_bundled_sample_is_complete_small_and_leak_free() -> None:
    root = sample_dir()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 2_000_000
    assert "CC BY-SA" in (root / "ATTRIBUTION.md").read_text(encoding="utf-8")
    train, val = _rows(root / "train.jsonl"), _rows(root / "val.jsonl")
    assert 1000 < len(train) < 6000 and val
    assert {r["source"] for r in train + val} <= {"tatoeba", "news", "korsts", "kcd"}
    evalset = load_beir(sample_beir_dir(), split="dev")
    assert len(evalset.queries) > 300 and len(evalset.corpus) > len(evalset.queries)
    eval_queries = {normalize(q) for q in evalset.queries.values()}
    assert not {normalize(r["query"]) for r in train + val} & eval_queries


@pytest.mark.shared
def test_build_on_real_sources(tmp_path: Path) -> None:
    korquad = shared_path("data", "beir", "korquad")
    tatoeba = shared_path("data", "parallel", "tatoeba.tsv")
    kcd = shared_path("data", "lexicon", "kcd-ko-en.tsv")
    config = BuildConfig(sources=[SourceConfig(type="beir", path=str(korquad), max_pairs=80),
                                  SourceConfig(type="parallel", path=str(tatoeba), max_pairs=150),
                                  SourceConfig(type="lexicon", path=str(kcd), max_pairs=150)])
    result = build_training_data(config, tmp_path / "real")
    dev = load_beir(korquad, split="dev")
    dev_texts = {normalize(q) for q in dev.judged_queries().values()}
    assert not {normalize(r["query"]) for r in result.train + result.val} & dev_texts
    types = result.summary["train"]["pair_types"]
    assert {"monolingual_qa", "cross_lingual"} <= set(types)
    kq = [r for r in result.train if r["source"] == "korquad"]
    assert len(kq) >= 70 and sum(r["difficulty"] != "easy" for r in kq) > 0


def test_sample_config_points_at_shared_data_only() -> None:
    config = load_build_config(REPO_ROOT / "configs" / "data_sample.yaml")
    for source in config.sources:
        assert source.path and source.path.startswith("../shared/data/")
        assert not any(word in source.path for word in ("korquad", "msmarco", "muse"))


def test_hub_source_reuses_a_downloaded_beir_folder(tmp_path: Path) -> None:
    from splade.data.hub import download_beir

    cached = _write_beir(tmp_path / "miracl-ko")  # what a first (networked) download leaves behind
    assert download_beir("miracl-ko", cached) == cached
    with pytest.raises(SpladeError, match="hub set 'nope' is unknown"):
        download_beir("nope", tmp_path / "x")
    config = BuildConfig(sources=[SourceConfig(type="hub", name="miracl-ko", path=str(cached))])
    result = build_training_data(config, tmp_path / "out")
    assert result.train and {r["pair_type"] for r in result.train} == {"monolingual_qa"}
