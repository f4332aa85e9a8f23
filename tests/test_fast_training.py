"""The fast training path: the same maths as the plain one, with work done once and kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TEXTS, tiny_config, write_triplets

from splade.model.tokenization import TextTokenizer
from splade.trainer import batches as batches_module
from splade.trainer.batches import make_batch, tokenize_table
from splade.trainer.idf import document_frequencies
from splade.trainer.loop import Trainer, train
from splade.trainer.schedule import Schedule
from splade.trainer.training_data import TrainingData, capped_pool

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(tmp_path: Path, model_dir: Path, *overrides: str) -> Trainer:
    cfg = tiny_config(tmp_path, model_dir, "output.tensorboard=false", "training.num_epochs=1", *overrides)
    return Trainer(cfg, None)


def _loss_and_grads(trainer: Trainer, pooling: str, precision: torch.dtype | None = None):
    step = trainer.parts.step
    step.pooling, step.autocast_dtype = pooling, precision
    trainer.parts.model.zero_grad()
    batch = make_batch(
        trainer.parts.data.table, trainer.parts.data.rows, np.arange(6), trainer.parts.tokenizer.pad_id
    )
    out = step.forward(batch, trainer.parts.schedule.loss_weights(10, trainer.parts.schedule.phase(1)))
    out.total.backward()
    grads = {
        n: p.grad.detach().clone() for n, p in trainer.parts.model.named_parameters() if p.grad is not None
    }
    return out, grads


@pytest.mark.parametrize("pooling", ["sparse", "dense"])
def test_fast_pooling_gives_the_plain_loss_and_gradients(tiny_model_dir: Path, tmp_path: Path, pooling: str):
    """The whole training loss (every component, IDF-weighted FLOPS, masked false negatives) and every
    parameter gradient agree with the plain forward in float32."""
    trainer = _trainer(tmp_path, tiny_model_dir, "model.dropout=0.0", "loss.lambda_flops_doc=0.01")
    reference, reference_grads = _loss_and_grads(trainer, "plain")
    fast, grads = _loss_and_grads(trainer, pooling)
    torch.testing.assert_close(fast.total, reference.total, rtol=1e-5, atol=1e-6)
    for name, value in reference.components.items():
        torch.testing.assert_close(fast.components[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert grads.keys() == reference_grads.keys()
    for name, grad in reference_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_fast_pooling_under_bf16_stays_within_bf16_tolerance(tiny_model_dir: Path, tmp_path: Path):
    trainer = _trainer(tmp_path, tiny_model_dir, "model.dropout=0.0")
    reference, reference_grads = _loss_and_grads(trainer, "plain", torch.bfloat16)
    for pooling in ("sparse", "dense"):
        fast, grads = _loss_and_grads(trainer, pooling, torch.bfloat16)
        assert fast.total.item() == pytest.approx(reference.total.item(), rel=2e-2)
        names = sorted(reference_grads)
        want = torch.cat([reference_grads[n].flatten() for n in names])
        have = torch.cat([grads[n].flatten() for n in names])
        assert ((have - want).norm() / want.norm()).item() < 5e-2, pooling


def test_text_tokenizer_gives_the_tokenizer_ids(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [*TINY_TEXTS[:12], "a much longer text " * 20, "  spaces\tand\nlines  "]
    ours = TextTokenizer(tokenizer).encode(texts, 16)
    theirs = tokenizer(texts, truncation=True, max_length=16)["input_ids"]
    assert [row.tolist() for row in ours] == theirs


def test_compiled_normaliser_of_the_real_tokenizer_gives_the_same_ids(me5_dir: Path):
    """me5-small-koen's normaliser is ~4,800 single-character rules; compiled into one map it must give
    exactly the tokenizer's ids (Korean, English, compatibility characters, controls, long texts)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(me5_dir)
    fast = TextTokenizer(tokenizer)
    assert fast._table is not None and len(fast._table) > 1000
    texts = [
        *TINY_TEXTS[:12],
        "ﬁ ½ ① Ⅻ ㈜ ｶﾀｶﾅ ǅ µ",
        "\x01제어\x7f문자\u00a0공백",
        "당뇨병 " * 200,
        "Type 1 diabetes mellitus",
        "  여러   칸    띄어쓰기  ",
    ]
    theirs = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    assert [row.tolist() for row in fast.encode(texts, 64)] == theirs


def test_batches_pad_queries_and_documents_separately(tiny_model_dir: Path, tmp_path: Path):
    trainer = _trainer(tmp_path, tiny_model_dir)
    data = trainer.parts.data
    batch = make_batch(data.table, data.rows, np.arange(4), trainer.parts.tokenizer.pad_id)
    assert batch.query_ids.shape[0] == 4 and batch.doc_ids.shape[0] == 8
    longest_query = max(len(data.table.row(r)) for r in batch.query_rows)
    assert batch.query_ids.shape[1] == longest_query < batch.doc_ids.shape[1]
    assert data.table.texts[batch.query_rows[0]] == data.dataset[0].query


def test_in_batch_false_negatives_are_the_same_query_or_the_same_positive(
    tiny_model_dir: Path, tmp_path: Path
):
    trainer = _trainer(tmp_path, tiny_model_dir)
    data = trainer.parts.data
    # write_triplets cycles six pairs: triplets 0 and 6 share query and positive
    batch = make_batch(data.table, data.rows, np.array([0, 1, 6]), trainer.parts.tokenizer.pad_id)
    mask = batch.false_negatives().numpy()
    assert mask.shape == (3, 6)
    assert mask[0, 2] and mask[2, 0]  # the other copy's positive answers the query
    assert not mask[0, 0] and not mask[2, 2] and not mask[1].any()
    negatives = [data.table.texts[r] for r in batch.negative_rows]
    positives = [data.table.texts[r] for r in batch.positive_rows]
    for i in range(3):
        for j in range(3):
            assert mask[i, 3 + j] == (negatives[j] == positives[i])


def test_token_ids_are_computed_once_and_reused(tiny_model_dir: Path, tmp_path: Path, monkeypatch):
    first = _trainer(tmp_path, tiny_model_dir)
    assert first.parts.data.cache.folder == tmp_path / ".splade-cache"
    entries = set(first.parts.data.cache.folder.glob("tokens-*.npz"))  # training and validation triplets
    assert len(entries) == 2

    def no_tokenizing(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("tokenized again")

    monkeypatch.setattr(batches_module, "tokenize_table", no_tokenizing)
    again = _trainer(tmp_path, tiny_model_dir)
    assert np.array_equal(again.parts.data.table.ids, first.parts.data.table.ids)
    # a changed training file is a new cache entry, not a stale one
    write_triplets(tmp_path / "train.jsonl", 30, seed=3)
    monkeypatch.setattr(batches_module, "tokenize_table", tokenize_table)
    TrainingData.load(again.config, again.parts.tokenizer)
    assert len(set(first.parts.data.cache.folder.glob("tokens-*.npz")) - entries) == 1


def test_vectorised_document_frequencies_equal_a_count_per_text(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    table = tokenize_table(TINY_TEXTS[:12], TextTokenizer(tokenizer), 16)
    rows = np.array([0, 2, 3, 5, 7, 11])
    expected = np.zeros(len(tokenizer), dtype=np.int64)
    for r in rows:
        expected[np.unique(table.row(r))] += 1
    assert np.array_equal(document_frequencies(table, rows, len(tokenizer)), expected)


def test_teacher_embeddings_are_stored_and_reused(tiny_model_dir: Path, tmp_path: Path, me5_dir: Path):
    """Precomputed and lazy teacher scores agree; a second run reads the store and loads no teacher."""
    teacher = f"loss.teacher={{name: {me5_dir}, precompute: all}}"
    first = _trainer(tmp_path, tiny_model_dir, "loss.lambda_kd=1.0", teacher)
    assert first.parts.teacher.embedded > 0 and list(first.parts.data.cache.folder.glob("teacher-*.npz"))
    data = first.parts.data
    queries, docs = data.rows.query[:4], np.concatenate([data.rows.positive[:4], data.rows.negative[:4]])
    precomputed = first.parts.teacher.scores(queries, docs)
    (tmp_path / "lazy").mkdir()
    lazy = _trainer(
        tmp_path / "lazy",
        tiny_model_dir,
        "loss.lambda_kd=1.0",
        f"loss.teacher={{name: {me5_dir}, precompute: lazy}}",
    )
    assert lazy.parts.teacher.embedded == 0
    torch.testing.assert_close(lazy.parts.teacher.scores(queries, docs), precomputed, atol=2e-3, rtol=0)
    again = _trainer(tmp_path, tiny_model_dir, "loss.lambda_kd=1.0", teacher)
    assert again.parts.teacher.embedded == 0 and again.parts.teacher._model is None
    torch.testing.assert_close(again.parts.teacher.scores(queries, docs), precomputed, atol=2e-3, rtol=0)


def test_each_phase_trains_at_its_multiplier_after_the_warm_up(tiny_model_dir: Path, tmp_path: Path):
    cfg = tiny_config(tmp_path, tiny_model_dir, "training.num_epochs=3", "training.warmup_ratio=0.1")
    schedule = Schedule(cfg, steps_per_epoch=10)
    assert schedule.warmup_steps == 3
    # no step runs at learning rate 0: the first update already learns
    assert schedule.lr_factor(0) == pytest.approx(1 / 3) and schedule.lr_factor(1) == pytest.approx(2 / 3)
    multipliers = [p.lr_multiplier for p in cfg.curriculum_phases]
    assert [schedule.lr_factor(s) for s in (5, 9, 10, 19, 20, 29)] == pytest.approx(
        [multipliers[0]] * 2 + [multipliers[1]] * 2 + [multipliers[2]] * 2
    )
    weights = schedule.loss_weights(0, schedule.phase(1))
    assert weights.of("flops") == 0.0  # the FLOPS warm-up starts at zero
    assert (
        schedule.loss_weights(10_000, schedule.phase(3)).temperature == cfg.curriculum_phases[2].temperature
    )


def test_source_caps_bound_the_pool_and_the_mix_is_reported(tiny_model_dir: Path, tmp_path: Path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}", "source": "big" if i < 30 else "small"}
        for i in range(40)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    pool = capped_pool(["big"] * 30 + ["small"] * 10, {"big": 12}, seed=1)
    assert len(pool) == 22 and (pool >= 30).sum() == 10 and list(pool) == sorted(pool)
    assert np.array_equal(pool, capped_pool(["big"] * 30 + ["small"] * 10, {"big": 12}, seed=1))
    trainer = _trainer(
        tmp_path,
        tiny_model_dir,
        f"data.train_files=[{path}]",
        "data.source_caps={big: 12}",
        "data.val_files=[]",
    )
    mix = trainer.parts.data.mix()
    assert mix["rows"] == 40 and mix["pool_rows"] == 22
    assert mix["source"]["big"] == {"rows": 30, "pool_rows": 12, "pool_fraction": round(12 / 22, 4)}
    result = trainer.run()
    assert json.loads((result.output_dir / "data_mix.json").read_text())["pool_rows"] == 22


def test_progress_bar_counts_to_max_steps(tiny_model_dir: Path, tmp_path: Path, capsys):
    cfg = tiny_config(tmp_path, tiny_model_dir, "training.max_steps=2", "output.tensorboard=false")
    train(cfg)
    assert "2/2" in capsys.readouterr().err


def test_lexical_start_makes_a_text_start_from_its_own_tokens(tiny_model_dir: Path, tmp_path: Path):
    """The refitted head activates most of a text's own tokens and few others; a run starts from it."""
    from splade.model import SpladeModel
    from splade.model.lexical_start import lexical_start

    model = SpladeModel.from_pretrained(tiny_model_dir).eval()
    text = "당뇨병 치료 방법"
    own = set(model.tokenizer(text)["input_ids"]) - set(model.tokenizer.all_special_ids)
    before = model.encode([text])[0]
    report = lexical_start(model, TINY_TEXTS, keep_own=0.9)
    after = model.eval().encode([text])[0]
    active = set(torch.nonzero(after).flatten().tolist())
    assert report.own_token_top1 > 0.5 and report.own_terms_active >= 0.8, report
    assert len(own & active) >= len(own) - 1 and len(active) < (before > 0).sum(), (own, active)
    trainer = _trainer(tmp_path, tiny_model_dir, "model.init=lexical", "model.lexical_keep=0.9")
    assert trainer.parts.lexical.own_terms_active >= 0.8 and "lexical start" in trainer.parts.setup_seconds


def test_lexical_start_is_kept_and_read_back(tiny_model_dir: Path, tmp_path: Path, monkeypatch):
    import splade.model.lexical_start as lexical

    first = _trainer(tmp_path, tiny_model_dir, "model.init=lexical")
    assert list(first.parts.data.cache.folder.glob("lexical-*.npz"))

    def no_fit(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("fitted again")

    monkeypatch.setattr(lexical, "lexical_start", no_fit)
    again = _trainer(tmp_path, tiny_model_dir, "model.init=lexical")
    assert again.parts.lexical.decoder_bias == pytest.approx(first.parts.lexical.decoder_bias)
    for (name, a), b in zip(
        first.parts.model.named_parameters(), again.parts.model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
