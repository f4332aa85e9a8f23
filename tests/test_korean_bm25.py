"""Korean content-morpheme tokenizer and the vectorised BM25 (checked against rank_bm25.BM25Okapi)."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from conftest import shared_path
from rank_bm25 import BM25Okapi

from splade.data.bm25 import BM25
from splade.data.korean import KoreanTokenizer, get_korean_tokenizer

DOCS = [
    "당뇨병은 혈당이 높아지는 대사 질환이다. 제1형 당뇨병과 제2형 당뇨병이 있다.",
    "고혈압을 예방하려면 소금 섭취를 줄이고 운동을 해야 한다.",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "Diabetes mellitus is a metabolic disease with high blood sugar.",
    "어제 친구와 함께 공원을 걸었다. 날씨가 아름다웠다.",
    "커피는 적당히 마시면 건강에 좋을 수 있다.",
    "인공지능 검색 모델은 희소 벡터로 문서를 찾는다.",
    "감기에 걸리면 푹 쉬고 물을 많이 마셔야 한다.",
]


def test_tokenizer_keeps_content_morphemes_and_stems() -> None:
    tok = get_korean_tokenizer()
    assert get_korean_tokenizer() is tok  # process-wide cache
    terms = tok.tokenize("어제 걸어서 학교에 갔었다. 당뇨병 치료는 Diabetes Mellitus 2형")
    assert "학교" in terms and "당뇨병" in terms and "치료" in terms
    assert "diabetes" in terms and "mellitus" in terms  # Latin lower-cased
    assert "걷" in terms and "가" in terms  # verb stems, irregular stem restored
    assert "2" in terms
    assert not {"에", "는", "었었", "다", "."} & set(terms)  # particles, endings, punctuation dropped
    assert tok.tokenize("") == [] and tok.tokenize("   ") == []


def test_tokenize_many_matches_single_calls() -> None:
    tok = get_korean_tokenizer()
    texts = DOCS + ["", "당뇨병"]
    assert tok.tokenize_many(texts) == [tok.tokenize(t) for t in texts]
    threaded = KoreanTokenizer(num_workers=2)
    assert threaded.tokenize_many(texts, show_progress=True) == [tok.tokenize(t) for t in texts]


def _assert_matches_rank_bm25(corpus: list[list[str]], queries: list[list[str]]) -> None:
    ours, ref = BM25(corpus), BM25Okapi(corpus)
    for query in queries:
        expected = ref.get_scores(query)
        np.testing.assert_allclose(ours.get_scores(query), expected, rtol=1e-5, atol=1e-6)
        top, scores = ours.search(query, top_k=3)
        assert len(top) <= 3
        assert np.all(np.diff(scores) <= 0)
        np.testing.assert_allclose(scores, expected[top], rtol=1e-5, atol=1e-6)
        if len(top):
            assert scores[0] == pytest.approx(expected.max(), rel=1e-5)
    batched = ours.search_many(queries, top_k=5, batch_size=2)
    for query, (top, scores) in zip(queries, batched, strict=True):
        single_top, single_scores = ours.search(query, top_k=5)
        assert list(top) == list(single_top)
        np.testing.assert_allclose(scores, single_scores)


def test_bm25_scores_match_rank_bm25_on_korean_tokens() -> None:
    tok = get_korean_tokenizer()
    corpus = tok.tokenize_many(DOCS)
    queries = tok.tokenize_many(["당뇨병 치료", "혈당이 높은 질환", "diabetes", "서울 수도 도시", "커피 건강",
                                 "없는단어", "당뇨병 당뇨병 고혈압"])
    _assert_matches_rank_bm25(corpus, queries)


def test_bm25_negative_idf_floor_and_unknown_terms() -> None:
    # "a" occurs in most documents: its raw idf is negative and rank-bm25 floors it to epsilon * mean idf.
    corpus = [["a", "b"], ["a", "c"], ["a", "d", "d"], ["e"], ["a"]]
    _assert_matches_rank_bm25(corpus, [["a"], ["a", "d"], ["zzz"], [], ["d", "d", "e"]])
    top, scores = BM25(corpus).search(["zzz"], top_k=10)
    assert len(top) == 0 and len(scores) == 0


def test_bm25_random_corpus_matches_rank_bm25() -> None:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(40)]
    corpus = [[rng.choice(words) for _ in range(rng.randint(0, 30))] for _ in range(60)]
    queries = [[rng.choice(words) for _ in range(rng.randint(1, 6))] for _ in range(25)]
    _assert_matches_rank_bm25(corpus, queries)


@pytest.mark.shared
def test_bm25_on_real_msmarco_ko_slice_finds_gold_passages() -> None:
    root = shared_path("data", "beir", "msmarco-ko")
    with (root / "corpus.jsonl").open(encoding="utf-8") as handle:
        docs = [json.loads(line) for line in itertools.islice(handle, 300)]
    ids = [d["_id"] for d in docs]
    with (root / "queries.jsonl").open(encoding="utf-8") as handle:
        queries = {q["_id"]: q["text"] for q in map(json.loads, handle)}
    # msmarco-ko passage "<qid>_0" answers query <qid>.
    pairs = [(queries[i.split("_")[0]], i) for i in ids if i.split("_")[0] in queries][:60]
    tok = get_korean_tokenizer()
    corpus = tok.tokenize_many([d["text"] for d in docs])
    query_tokens = tok.tokenize_many([q for q, _ in pairs])
    _assert_matches_rank_bm25(corpus, query_tokens[:10])
    hits = sum(ids[top[0]] == gold for (top, _), (_, gold) in
               zip(BM25(corpus).search_many(query_tokens, top_k=10), pairs, strict=True) if len(top))
    assert hits / len(pairs) > 0.7
