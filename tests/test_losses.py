"""The six loss components (and distillation) against hand-computed values, and the IDF penalty weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from splade.config import load_config
from splade.errors import SpladeError
from splade.model import bag_of_tokens
from splade.model.tokenization import TextTokenizer
from splade.trainer.batches import tokenize_table
from splade.trainer.idf import corpus_texts, document_frequencies, idf_penalty_weights, smooth_idf
from splade.trainer.losses import (
    TERMS,
    LossWeights,
    SpladeLoss,
    distillation_loss,
    flops_loss,
    gradient_shares,
    infonce_loss,
    loss_term,
    min_activation_loss,
    token_activation_loss,
    triplet_margin_loss,
)
from splade.trainer.schedule import Schedule

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_infonce_matches_the_formula() -> None:
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    docs = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    tau = 0.5
    got = infonce_loss(q, docs, tau, "dot")
    scores = q @ docs.T / tau
    expected = (
        -(scores[0, 0] - torch.logsumexp(scores[0], 0) + scores[1, 1] - torch.logsumexp(scores[1], 0)) / 2
    )
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    cos = F.normalize(q, dim=-1) @ F.normalize(docs, dim=-1).T / tau
    expected_cos = F.cross_entropy(cos, torch.arange(2))
    assert infonce_loss(q, docs, tau, "cosine").item() == pytest.approx(expected_cos.item(), rel=1e-6)
    # a lower temperature sharpens: the well-separated batch gets a smaller loss
    separated = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, 0.0, 1.0], [0.2, 0.0, 1.0]])
    assert infonce_loss(q, separated, 0.05, "cosine") < infonce_loss(q, separated, 1.0, "cosine")


def test_token_activation_is_minus_mean_over_the_input_tokens_without_specials() -> None:
    ids = torch.tensor([[0, 3, 5, 5, 1], [0, 4, 1, 2, 2]])  # 0=CLS 1=SEP 2=PAD are special
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    keep = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    bag = bag_of_tokens(ids, mask, 6) * keep
    assert bag.tolist() == [[0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 1, 0]]
    q = torch.tensor([[9.0, 9.0, 9.0, 2.0, 7.0, 4.0], [9.0, 9.0, 9.0, 1.0, 3.0, 5.0]])
    assert token_activation_loss(q, bag).item() == pytest.approx(-(2.0 + 4.0 + 3.0) / 3)
    # with a target the term is bounded: weights at or above it cost nothing and get no gradient
    assert token_activation_loss(q, bag, target=3.0).item() == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    high = torch.full_like(q, 5.0, requires_grad=True)
    token_activation_loss(high, bag, target=3.0).backward()
    assert high.grad.abs().sum() == 0


def test_triplet_margin_on_cosine() -> None:
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # row 0: cos(q,p)=1, cos(q,n)=0 -> max(0, 0.3-1+0)=0 ; row 1: 0.3 - 0 + 1/sqrt(2)
    expected = (0.0 + 0.3 + 1 / math.sqrt(2)) / 2
    assert triplet_margin_loss(q, p, n, 0.3).item() == pytest.approx(expected, rel=1e-6)
    # the guide's margin 1.5 can never be satisfied by cosine similarity
    assert triplet_margin_loss(q, q, -q.abs() * 0, 1.5).item() == pytest.approx(0.5)


def test_flops_uniform_and_weighted() -> None:
    reps = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert flops_loss(reps).item() == pytest.approx(2.0**2 + 0 + 1.0**2)
    weights = torch.tensor([0.5, 1.0, 3.0])
    assert flops_loss(reps, weights).item() == pytest.approx(0.5 * 4 + 3.0 * 1)


def test_flops_prices_terms_before_the_model_scales_them() -> None:
    """At expansion weight 0.5 an expansion term is served at half its activation. The FLOPS terms price
    the activation (v23's `flops_on: activations`), so expansion costs what it cost at weight 1; `served`
    prices the served weights, a quarter of it."""
    cfg = load_config(CONFIGS / "train_v23.yaml").loss
    assert cfg.flops_on == "activations"
    activations = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 4.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]])
    bags = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    scales = 0.5 + 0.5 * bags
    served = activations * scales
    weights = _weights(flops=1.0, flops_doc=1.0)

    def flops_of(config: object) -> tuple[float, float]:
        loss = SpladeLoss(config)  # type: ignore[arg-type]
        x = loss.inputs(served[:2], served[2:3], served[3:], bags[:2], bags[2:3], weights,
                        query_scales=scales[:2], doc_scales=scales[2:])
        parts = loss(x, weights).components
        return parts["flops"].item(), parts["flops_doc"].item()

    priced = (flops_loss(activations[:2]).item(), flops_loss(activations[2:]).item())
    assert flops_of(cfg) == pytest.approx(priced)
    assert flops_of(cfg.model_copy(update={"flops_on": "served"})) == pytest.approx(
        (flops_loss(served[:2]).item(), flops_loss(served[2:]).item())
    )
    assert flops_loss(served[:2]) < flops_loss(activations[:2])


def test_min_activation_over_top_k() -> None:
    q = torch.tensor([[0.1, 0.2, 0.3, 0.0], [5.0, 4.0, 3.0, 0.0]])
    # row 0: top-2 mean 0.25 -> 1 - 0.25 ; row 1 above threshold -> 0
    assert min_activation_loss(q, 2, 1.0).item() == pytest.approx(0.75 / 2)


def test_distillation_is_zero_when_the_student_matches_the_sharpened_teacher() -> None:
    teacher = torch.tensor([[0.9, 0.7, 0.2, 0.1], [0.3, 0.8, 0.1, 0.2]])
    assert distillation_loss(teacher / 0.05 + 3, teacher, 0.05).item() == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss(teacher.flip(-1) / 0.05, teacher, 0.05).item() > 0.1


def test_distillation_gradient_is_comparable_to_infonce() -> None:
    """On raw dot scores the KL's gradient has InfoNCE's form: neither term drowns the other."""
    torch.manual_seed(0)
    scores = (torch.randn(16, 32) * 3 + 10).requires_grad_()
    teacher = torch.rand(16, 32) * 0.6
    teacher[torch.arange(16), torch.arange(16)] = 1.0  # the teacher ranks each positive first
    labels = torch.arange(16)
    (infonce,) = torch.autograd.grad(F.cross_entropy(scores, labels), scores)
    (kd,) = torch.autograd.grad(distillation_loss(scores, teacher, 0.1), scores)
    assert 0.2 < kd.norm().item() / infonce.norm().item() < 5.0


def _weights(**terms: float) -> LossWeights:
    return LossWeights(temperature=0.05, terms=terms)


def test_splade_loss_is_the_weighted_sum_and_has_gradients() -> None:
    cfg = load_config(CONFIGS / "train_v22.yaml").loss
    torch.manual_seed(0)
    logits = torch.randn(6, 20, requires_grad=True)
    reps = torch.log1p(torch.relu(logits))
    q, p, n = reps[:2], reps[2:4], reps[4:]
    bags = (torch.rand(4, 20) > 0.7).float()
    loss = SpladeLoss(cfg)
    weights = _weights(infonce=1.5, self=4.0, positive=10.0, margin=2.5, flops=0.005 * 0.25, flops_doc=0.001,
                       min_act=1.0)
    x = loss.inputs(q, p, n, bags[:2], bags[2:], weights)
    out = loss(x, weights)
    assert set(out.components) == {"infonce", "self", "positive", "margin", "flops", "flops_doc", "min_act"}
    expected = sum(weights.of(k) * v for k, v in out.components.items())
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.components["self"].item() == pytest.approx(
        -(q * bags[:2]).sum().item() / bags[:2].sum().item()
    )
    shares = gradient_shares(x, out)
    assert set(shares) == set(out.components) and sum(shares.values()) == pytest.approx(1.0)
    out.total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_kd_component_only_with_teacher_scores() -> None:
    cfg = load_config(CONFIGS / "train_v23.yaml").loss
    reps = torch.rand(6, 10)
    bags = torch.ones(4, 10)
    teacher = torch.rand(2, 4)
    loss = SpladeLoss(cfg)
    weights = _weights(infonce=2.5, kd=1.0)
    out = loss(loss.inputs(reps[:2], reps[2:4], reps[4:], bags[:2], bags[2:], weights, teacher), weights)
    assert "kd" in out.components
    without = loss(loss.inputs(reps[:2], reps[2:4], reps[4:], bags[:2], bags[2:], weights), weights)
    assert "kd" not in without.components


def test_an_inference_free_query_side_pays_no_query_terms() -> None:
    cfg = load_config(CONFIGS / "train_v23.yaml").loss
    reps, bags = torch.rand(6, 10), torch.ones(4, 10)
    loss = SpladeLoss(cfg)
    weights = _weights(infonce=1.0, flops=1.0, flops_doc=1.0, self=1.0, min_act=1.0)
    x = loss.inputs(reps[:2], reps[2:4], reps[4:], bags[:2], bags[2:], weights, queries_by_table=True)
    assert set(loss(x, weights).components) == {"infonce", "positive", "margin", "flops_doc"}


def test_a_loss_term_is_one_registered_function_and_its_weight_in_yaml(tmp_path: Path) -> None:
    """Adding a term touches no file of the package: register it, give it a weight (with warm-up)."""

    @loss_term("l1_doc_test")
    def l1_doc(x) -> torch.Tensor:  # noqa: ANN001
        return x.docs.sum(1).mean()

    try:
        config = load_config(CONFIGS / "train_v23.yaml",
                             ["loss.terms={l1_doc_test: {weight: 0.5, warmup_steps: 10}}"])
        schedule = Schedule(config, steps_per_epoch=100)
        phase = schedule.phase(1)
        assert schedule.loss_weights(4, phase).of("l1_doc_test") == pytest.approx(0.5 * (4 / 10) ** 2)
        weights = schedule.loss_weights(50, phase)
        reps, bags = torch.rand(6, 10), torch.ones(4, 10)
        loss = SpladeLoss(config.loss)
        out = loss(loss.inputs(reps[:2], reps[2:4], reps[4:], bags[:2], bags[2:], weights), weights)
        assert out.components["l1_doc_test"].item() == pytest.approx(reps[2:].sum(1).mean().item(), rel=1e-6)
        assert "l1_doc_test" in weights.active()
    finally:
        TERMS.pop("l1_doc_test")
    unknown = load_config(CONFIGS / "train_v23.yaml", ["loss.terms={nope: {weight: 1.0}}"])
    with pytest.raises(SpladeError, match="loss.terms: no loss term is registered as nope"):
        SpladeLoss(unknown.loss)


def test_false_negatives_leave_the_infonce_denominator() -> None:
    """A document that also answers the query is not scored as its negative; the label never is masked."""
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    docs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # both positives are one text
    plain = infonce_loss(q, docs, 1.0, "dot")
    mask = torch.tensor([[False, True, False, False], [True, False, False, False]])
    masked = infonce_loss(q, docs, 1.0, "dot", mask)
    expected = -torch.log(torch.exp(torch.tensor(1.0)) / (math.e + 2.0))
    assert masked.item() == pytest.approx(expected.item(), rel=1e-6)
    assert plain.item() > masked.item()


def test_idf_penalty_falls_as_idf_rises(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["당뇨병 치료", "당뇨병 예방 당뇨병", "당뇨병 관리", "coffee"]
    table = tokenize_table(texts, TextTokenizer(tok), 16)
    df = document_frequencies(table, np.arange(len(texts)), len(tok))
    common = tok.convert_tokens_to_ids(tok.tokenize("당뇨병"))[0]
    assert df[common] == 3  # a text counts once however often it repeats the token
    assert df[common] == document_frequencies(table, np.array([0, 1, 2]), len(tok))[common]
    idf = smooth_idf(df, len(texts))
    assert idf.min() >= 1.0
    weights = idf_penalty_weights(df, len(texts))
    rare = tok.convert_tokens_to_ids(tok.tokenize("coffee"))[0]
    assert weights[common] > weights[rare] >= 1.0
    assert weights.min().item() == pytest.approx(1.0)  # unseen tokens pay the uniform penalty


def test_idf_corpus_reads_beir_and_triplets(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "title": "T", "text": "body"}\n\n', encoding="utf-8")
    assert corpus_texts(tmp_path) == ["T body"]
    trip = tmp_path / "t.jsonl"
    trip.write_text('{"query": "q", "positive": "p", "negative": "n"}\n{"oops": 1}\n', encoding="utf-8")
    from splade.errors import SpladeError

    with pytest.raises(SpladeError, match=r"t\.jsonl:2:"):
        corpus_texts(trip)
