"""Dev-set retrieval while training: the metric the evaluation stage reports, and the best model by it;
the saved model serves the way it was trained (expansion, similarity)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PAIRS, tiny_config

from splade.encoders import load_encoder
from splade.evaluation.runner import EvalConfig, run_evaluation
from splade.model import SpladeModel
from splade.tiny import build_tiny_model
from splade.trainer.dev_eval import DevEvaluator
from splade.trainer.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lexical_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that starts as a bag of its input tokens: it retrieves by shared words."""
    out = tmp_path_factory.mktemp("lexical")
    texts = [t for pair in PAIRS for t in pair] * 4
    build_tiny_model(
        texts, out, vocab_size=200, hidden_size=128, num_layers=1, num_heads=2, lexical_bias=-5.0
    )
    return out


def write_beir(folder: Path) -> Path:
    """Korean queries whose judged passage shares words with them, and English distractors."""
    folder.mkdir(parents=True)
    (folder / "qrels").mkdir()
    docs = [(f"d{i}", f"{ko} {en}") for i, (ko, en) in enumerate(PAIRS)] + [
        (f"x{i}", en) for i, (_, en) in enumerate(PAIRS)
    ]
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": d, "title": "", "text": t}, ensure_ascii=False) for d, t in docs) + "\n",
        encoding="utf-8",
    )
    queries = [(f"q{i}", ko.split()[0]) for i, (ko, _) in enumerate(PAIRS)]
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) for q, t in queries) + "\n",
        encoding="utf-8",
    )
    (folder / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(PAIRS))),
        encoding="utf-8",
    )
    return folder


def test_dev_metric_equals_what_splade_eval_reports(lexical_model: Path, tmp_path: Path):
    beir = write_beir(tmp_path / "devset")
    model = SpladeModel.from_pretrained(lexical_model).eval()
    config = tiny_config(
        tmp_path, lexical_model, f"dev.sets=[{beir}]", "dev.max_queries=null", "dev.max_documents=null"
    ).dev
    ours = DevEvaluator(config, seed=0).evaluate(model)
    evaluation = run_evaluation(EvalConfig(datasets=[beir], splade=[("m", lexical_model)], bm25=False))
    theirs = evaluation.datasets[0].systems[0].metrics["ndcg@10"]
    assert ours["devset/ndcg@10"] == pytest.approx(theirs, abs=1e-6)
    assert ours["dev/ndcg@10"] == ours["devset/ndcg@10"] > 0.5
    assert (
        ours["dev/active_terms_query"] > 0 and ours["dev/active_terms_doc"] > ours["dev/active_terms_query"]
    )


def test_dev_sample_keeps_judged_documents_and_is_fixed(tmp_path: Path):
    from splade.trainer.dev_eval import sample_dev_set

    beir = write_beir(tmp_path / "devset")
    a = sample_dev_set(beir, "dev", max_queries=3, max_documents=5, seed=4)
    b = sample_dev_set(beir, "dev", max_queries=3, max_documents=5, seed=4)
    assert a == b and len(a.queries) == 3 and len(a.doc_ids) == 5
    judged = {d for judgements in a.qrels.values() for d in judgements}
    assert judged <= set(a.doc_ids)


def test_near_distractors_are_the_documents_lexically_nearest_to_the_queries(tmp_path: Path):
    from splade.trainer.dev_eval import character_bigrams, sample_dev_set

    assert character_bigrams("서울의 날씨 a") == ["서울", "울의", "날씨", "a"]
    folder = tmp_path / "near"
    (folder / "qrels").mkdir(parents=True)
    docs = {"gold1": "서울의 날씨는 맑다", "gold2": "부산 바다는 푸르다",
            "near1": "서울의 날씨는 흐리고 비", "near2": "부산 바다는 차갑다",
            **{f"far{i}": f"고양이 {i}번이 잠을 잔다" for i in range(20)}}
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "text": t}, ensure_ascii=False) + "\n" for d, t in docs.items()),
        encoding="utf-8",
    )
    queries = {"q1": "서울의 날씨", "q2": "부산 바다"}
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n" for q, t in queries.items()),
        encoding="utf-8",
    )
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tgold1\t1\nq2\tgold2\t1\n")
    near = sample_dev_set(folder, "dev", max_queries=None, max_documents=6, seed=1, near_share=0.5)
    assert near.doc_ids[:4] == ["gold1", "gold2", "near1", "near2"]
    assert sum(doc.startswith("far") for doc in near.doc_ids) == 2  # the other half: seeded, random
    plain = sample_dev_set(folder, "dev", max_queries=None, max_documents=6, seed=1)
    assert plain.doc_ids[:2] == ["gold1", "gold2"] and len(plain.doc_ids) == 6
    assert sample_dev_set(folder, "dev", max_queries=None, max_documents=6, seed=1, near_share=0.5) == near


def test_best_model_and_early_stop_follow_the_dev_metric(lexical_model: Path, tmp_path: Path):
    beir = write_beir(tmp_path / "devset")
    cfg = tiny_config(
        tmp_path,
        lexical_model,
        f"dev.sets=[{beir}]",
        "dev.every_steps=2",
        "training.num_epochs=2",
        "training.early_stopping_patience=2",
        "output.tensorboard=false",
        n_train=12,
    )
    result = train(cfg)
    history = json.loads((result.output_dir / "training_history.json").read_text())
    assert history["monitored"] == "dev/ndcg@10"
    evaluations = history["evaluations"]
    # step 0 is evaluated first: the start is the best model until training beats it
    assert [e["global_step"] for e in evaluations][:3] == [0, 2, 4]
    values = [e["val"]["dev/ndcg@10"] for e in evaluations]
    assert -history["best_metric"] == pytest.approx(max(values))
    best = [e for e in evaluations if e["best"]]
    assert best[-1]["global_step"] == history["best_step"]
    assert best[-1]["val"]["dev/ndcg@10"] == pytest.approx(max(values))
    # epoch ends only record (the dev evaluations select): no dev metric there, never "best"
    assert all(not e["best"] and "dev/ndcg@10" not in e["val"] for e in history["epochs"])


def test_a_run_stopped_between_two_dev_evaluations_is_evaluated_where_it_stopped(lexical_model: Path,
                                                                                 tmp_path: Path):
    """5 steps, 2 evaluations (every 3 steps, rounded up): the model after step 5 is evaluated too, and can
    be chosen; a run cut short by the clock stops the same way."""
    beir = write_beir(tmp_path / "devset")
    cfg = tiny_config(
        tmp_path,
        lexical_model,
        f"dev.sets=[{beir}]",
        "dev.evaluations=2",
        "training.max_steps=5",
        "output.tensorboard=false",
        n_train=12,
    )
    result = train(cfg)
    history = json.loads((result.output_dir / "training_history.json").read_text())
    steps = [e["global_step"] for e in history["evaluations"]]
    assert steps == [0, 3, 5]
    last = history["evaluations"][-1]
    assert "dev/ndcg@10" in last["val"] and "best" in last


def test_a_model_trained_without_expansion_is_served_without_it(tiny_model_dir: Path, tmp_path: Path):
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "model.expansion_weight=0",
        "loss.similarity=cosine",
        "training.max_steps=2",
        "output.tensorboard=false",
    )
    best = train(cfg).best_model_dir
    saved = json.loads((best / "splade_config.json").read_text())
    assert saved["expansion_weight"] == 0.0 and saved["similarity"] == "cosine"
    model = SpladeModel.from_pretrained(best)
    assert model.expansion_weight == 0.0
    text = "당뇨병 치료 방법"
    reps = model.encode([text])[0]
    own = set(model.tokenizer(text)["input_ids"])
    assert set(torch.nonzero(reps).flatten().tolist()) <= own
    # the encoder serves unit vectors for a cosine-trained model, so an index's dot product is the cosine
    vectors = load_encoder(best, backend="torch").encode([text, "coffee"])
    for ids, weights in vectors.rows():
        assert np.linalg.norm(weights) == pytest.approx(1.0, abs=1e-5) or len(ids) == 0
