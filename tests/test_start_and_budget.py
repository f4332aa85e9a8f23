"""The BM25-grade start, inference-free models, served lengths, budgets and the ensemble teacher."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from scipy.stats import spearmanr

from splade.encoders import load_encoder
from splade.model import SpladeModel, bag_of_tokens
from splade.model.lexical_start import MIN_MARGIN, row_calibration
from splade.trainer.batches import make_batch, truncate
from splade.trainer.budget import Budget
from splade.trainer.idf import bm25_idf
from splade.trainer.loop import Trainer, train
from splade.trainer.setup import fit_budget

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(tmp_path: Path, model_dir: Path, *overrides: str) -> Trainer:
    cfg = tiny_config(tmp_path, model_dir, "output.tensorboard=false", "training.num_epochs=1", *overrides)
    return Trainer(cfg, None)


def _token_idf(trainer: Trainer) -> np.ndarray:
    df, n = trainer.parts.data.document_frequencies(
        trainer.config, trainer.parts.tokenizer, trainer.parts.model.vocab_size
    )
    return bm25_idf(df, n)


def test_the_start_weighs_a_texts_own_tokens_like_idf(tiny_model_dir: Path, tmp_path: Path) -> None:
    """After the calibrated lexical start, own tokens carry weights that rise with IDF (the old start's fell),
    the decoder has rows of its own, and the saved model serves the same vectors."""
    trainer = _trainer(tmp_path, tiny_model_dir, "model.init=lexical", "model.dropout=0.0")
    model = trainer.parts.model.eval()
    assert model.decoder_untied
    idf = _token_idf(trainer)
    texts = trainer.parts.data.table.texts[:40]
    reps = model.encode(texts)
    own_weights, own_idf, own_active = [], [], []
    for text, rep in zip(texts, reps, strict=True):
        ids = set(model.tokenizer(text)["input_ids"]) - set(model.tokenizer.all_special_ids)
        for token in ids:
            own_weights.append(float(rep[token]))
            own_idf.append(float(idf[token]))
            own_active.append(rep[token] > 0)
    assert np.mean(own_active) > 0.6
    assert spearmanr(own_idf, own_weights).statistic > 0.3
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    again = SpladeModel.from_pretrained(saved).eval()
    assert again.decoder_untied
    torch.testing.assert_close(again.encode(texts[:5]), model.encode(texts[:5]), atol=1e-5, rtol=1e-5)


def test_idf_is_counted_over_the_passages_qa_triplets_retrieve(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`loss.idf_documents: passages` (the default) counts document frequencies over the QA triplets'
    documents only: a word that only lexicon entries hold stays at the unseen IDF, and the count of
    documents is the passages'. `all` counts every training document."""
    from splade.model.tokenization import TextTokenizer
    from splade.trainer.training_data import TrainingData

    def triplet(query: str, positive: str, negative: str, pair_type: str) -> str:
        row = {"query": query, "positive": positive, "negative": negative, "pair_type": pair_type}
        return json.dumps(row, ensure_ascii=False) + "\n"

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        triplet("당뇨병", "당뇨병 치료 방법", "고혈압 예방과 관리", "monolingual_qa")
        + triplet("서울", "서울은 한국의 수도이다", "커피는 건강에 좋다", "monolingual_qa")
        + triplet("커피", "coffee", "health", "single_term")
        + triplet("감기", "common cold symptoms", "coffee", "single_term"),
        encoding="utf-8",
    )
    hf_tokenizer = SpladeModel.from_pretrained(tiny_model_dir).tokenizer
    tokenizer, counts = TextTokenizer(hf_tokenizer), {}
    for documents in ("passages", "all"):
        overrides = f"data.train_files=[{mixed}]", f"loss.idf_documents={documents}"
        cfg = tiny_config(tmp_path, tiny_model_dir, *overrides)
        data = TrainingData.load(cfg, tokenizer)
        counts[documents] = data.document_frequencies(cfg, tokenizer, len(hf_tokenizer))
    coffee = [i for i in hf_tokenizer("coffee")["input_ids"] if i not in hf_tokenizer.all_special_ids]
    (passage_df, passages), (all_df, documents) = counts["passages"], counts["all"]
    assert passages == 4 and documents == 7  # distinct texts: 4 passages, 3 lexicon documents
    assert passage_df[coffee].max() == 0 and all_df[coffee].min() >= 1


def test_no_noise_activation_weighs_more_than_its_tokens_target() -> None:
    """A clean token (noise far below its own level) weighs its target at the own level and nothing at its
    noise; a noisy token (noise at or above its own level) keeps its own token active but is scaled so its
    noise weighs at most the target, instead of being amplified over a `MIN_MARGIN` gap."""
    own = torch.tensor([10.0, 10.0, 10.0])
    noise = torch.tensor([2.0, 9.9, 14.0])  # clean, barely below own, above own
    goal = torch.tensor([3.0, 3.0, 3.0])
    threshold, scale = row_calibration(own, noise, goal)

    def weight(logit: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.relu(scale * (logit - threshold)))

    assert torch.all(threshold <= own - MIN_MARGIN + 1e-6)  # every own token stays active
    assert weight(own)[0] == pytest.approx(3.0, rel=1e-5)
    assert weight(noise)[0] == 0.0  # the clean token's noise is silent
    assert torch.all(weight(noise) <= goal + 1e-5)
    assert weight(noise)[2] == pytest.approx(3.0, rel=1e-5)  # the noisiest activation reaches the target...
    assert 0.0 < weight(own)[2] < 0.5 * weight(own)[0]  # ...so its own level weighs under half a clean one


def test_an_inference_free_model_weighs_queries_by_its_table(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Queries skip the encoder: a query is its own tokens times the table (the training documents' IDF), it
    pays no query FLOPS, and every encoder serves it the same way after saving."""
    trainer = _trainer(tmp_path, tiny_model_dir, "model.query_encoder=idf", "loss.lambda_flops=0.1")
    model = trainer.parts.model
    assert model.inference_free and not model.query_weights.requires_grad
    idf = torch.from_numpy(_token_idf(trainer)) * model.vocab_keep
    torch.testing.assert_close(model.query_weights.detach(), idf)
    batch = make_batch(
        trainer.parts.data.table, trainer.parts.data.rows, np.arange(4), trainer.parts.tokenizer.pad_id
    )
    out = trainer.parts.step.forward(
        batch, trainer.parts.schedule.loss_weights(10, trainer.parts.schedule.phase(1))
    )
    assert "flops" not in out.components and "flops_doc" in out.components
    q, _ = trainer.parts.step.last
    expected = bag_of_tokens(batch.query_ids, batch.query_mask, model.vocab_size) * idf
    torch.testing.assert_close(q, expected)
    model.save_pretrained(tmp_path / "doconly")
    encoder = load_encoder(tmp_path / "doconly", backend="torch")
    texts = ["당뇨병 치료 방법", "혈압"]
    served = encoder.encode_queries(texts).to_dense()
    ids = model.tokenize(texts, max_length=model.query_max_length)
    by_hand = bag_of_tokens(ids["input_ids"], ids["attention_mask"], model.vocab_size) * idf
    np.testing.assert_allclose(served, by_hand.numpy(), atol=1e-6)


def test_learned_query_weights_train_and_stay_non_negative(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "model.query_encoder=idf",
        "model.learn_query_weights=true",
        "training.max_steps=3",
        "training.learning_rate=0.5",
        "output.tensorboard=false",
    )
    trainer = Trainer(cfg, None)
    start = trainer.parts.model.query_weights.detach().clone()
    trainer.run()
    table = trainer.parts.model.query_weights.detach()
    assert not torch.equal(table, start) and bool((table >= 0).all())
    assert SpladeModel.from_pretrained(trainer.out / "best_model").inference_free


def test_served_lengths_are_saved_and_queries_are_cut_in_training(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert truncate(np.arange(10), 4).tolist() == [0, 1, 2, 9]  # the closing special token stays
    assert truncate(np.arange(3), 4).tolist() == [0, 1, 2]
    trainer = _trainer(
        tmp_path,
        tiny_model_dir,
        "data.query_max_length=5",
        "model.query_max_length=8",
        "model.doc_max_length=40",
    )
    batch = make_batch(
        trainer.parts.data.table,
        trainer.parts.data.rows,
        np.arange(4),
        trainer.parts.tokenizer.pad_id,
        query_length=5,
    )
    assert batch.query_ids.shape[1] <= 5
    trainer.parts.model.save_pretrained(tmp_path / "saved")
    encoder = load_encoder(tmp_path / "saved", backend="torch")
    assert (encoder.query_max_length, encoder.max_length) == (8, 40)


def test_a_wall_clock_budget_plans_the_steps_that_fit(tiny_model_dir: Path, tmp_path: Path) -> None:
    budget = Budget(1.0)
    assert budget.plan(1.0, 10.0, every_steps=None, evaluations=2) == int((60 - 20) / 1.1)
    assert budget.plan(1.0, 10.0, every_steps=5, evaluations=0) == int(60 / (1.1 + 2.0))
    assert Budget(None).left() == float("inf") and not Budget(None).spent()
    reserved = Budget(1.0)
    reserved.reserve = 61.0  # the last evaluation would not fit: no further step starts
    assert reserved.left() > 0 and reserved.spent()
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "training.max_minutes=0.1",
        "training.num_epochs=50",
        "output.tensorboard=false",
        "data.val_files=[]",
    )
    started = time.monotonic()
    result = train(cfg)
    trainer_state = result.history
    assert 0 < result.global_step <= 50 * 6 and trainer_state
    (tmp_path / "plan").mkdir()
    planned = _trainer(
        tmp_path / "plan", tiny_model_dir, "training.num_epochs=20", "training.warmup_ratio=0.1"
    )
    fit_budget(planned.parts, planned.config, 10)  # what a wall-clock plan does once a step was timed
    first = planned.parts.optimizer.param_groups[0]["lr"]
    assert first == pytest.approx(planned.config.training.learning_rate * planned.parts.schedule.lr_factor(0))
    assert planned.parts.schedule.lr_factor(0) == pytest.approx(0.5)  # 20 steps: a 2-step warm-up
    assert time.monotonic() - started < 60  # the budget is 6 s of training; setup and saving come on top


def test_the_ensemble_teacher_mixes_bm25_only_between_korean_texts(me5_dir: Path, tmp_path: Path) -> None:
    from splade.config import TeacherConfig
    from splade.trainer.cache import ArrayCache
    from splade.trainer.distill import TeacherScores

    texts = [
        "당뇨병 치료 방법",  # query
        "당뇨병의 치료 방법에는 식이요법과 인슐린 주사가 있다",  # Korean, shares the query's words
        "고혈압은 혈관에 높은 압력이 가해지는 상태이다",  # Korean, unrelated
        "Diabetes is treated with diet and insulin injections",  # English
    ]
    config = TeacherConfig(name=str(me5_dir), bm25_weight=0.5, cross_lingual_bm25_weight=0.0)
    cache = ArrayCache(tmp_path / "cache")
    teacher = TeacherScores(config, texts, cache, torch.device("cpu"), np.arange(1, 4))
    scores = teacher.scores(np.array([0]), np.array([1, 2, 3]))[0]
    assert float(scores.min()) == pytest.approx(0.0, abs=1e-6) and float(scores.max()) <= 1.0 + 1e-6
    assert int(scores.argmax()) == 0  # the Korean document sharing the query's words
    dense = teacher.dense_scores(np.array([0]), np.array([1, 2, 3]))[0]
    bm25 = torch.from_numpy(teacher.bm25.scores(np.array([0]), np.array([1, 2, 3]))[0])
    d = (dense - dense.min()) / (dense.max() - dense.min())
    b = (bm25 - bm25.min()) / (bm25.max() - bm25.min())
    expected = torch.stack([0.5 * b[0] + 0.5 * d[0], 0.5 * b[1] + 0.5 * d[1], d[2]])  # English: dense only
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_the_bm25_teachers_kiwi_tokens_are_kept_and_read_back(tmp_path: Path, monkeypatch) -> None:
    from splade.trainer.bm25_teacher import BM25Teacher
    from splade.trainer.cache import ArrayCache
    from splade.trainer.distill import text_keys

    texts = [
        "당뇨병 치료 방법",
        "당뇨병의 치료 방법에는 식이요법이 있다",
        "고혈압은 혈관의 압력이 높은 상태이다",
    ]
    cache = ArrayCache(tmp_path / "cache")
    first = BM25Teacher(texts, np.arange(1, 3), text_keys("", texts), cache)
    scores = first.scores(np.array([0]), np.array([1, 2]))
    assert scores[0, 0] > scores[0, 1] == 0.0  # the document sharing the query's words, and BM25 only there
    first.flush()
    again = BM25Teacher(texts, np.arange(1, 3), text_keys("", texts), cache)

    def no_tokenizing(texts, **options):  # noqa: ANN001, ANN003
        raise AssertionError(f"tokenized again: {texts}")

    monkeypatch.setattr(again.tokenizer, "tokenize_many", no_tokenizing)
    np.testing.assert_allclose(again.scores(np.array([0]), np.array([1, 2])), scores)
