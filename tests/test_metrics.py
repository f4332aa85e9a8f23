"""Metrics against hand-computed values, significance tests, Holm's correction and FLOPS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from splade.errors import SpladeError
from splade.evaluation.efficiency import average_terms, flops, term_activation, term_sets_to_batch, widen
from splade.evaluation.metrics import evaluate_run, mean_scores, ranked, truncate_run
from splade.evaluation.significance import (
    apply_holm,
    compare,
    holm,
    mean_difference_interval,
    paired_t_test,
    randomization_test,
    wins_ties_losses,
)
from splade.sparse import SparseBatch


def _dcg(gains: list[float]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def test_ndcg_recall_by_hand() -> None:
    qrels = {"q1": {"d1": 1, "d3": 2}, "q2": {"d9": 1}}
    run = {"q1": {"d0": 5.0, "d1": 4.0, "d2": 3.0, "d3": 2.0}, "q2": {"d8": 1.0}}
    scores = evaluate_run(qrels, run)
    # q1: graded gains at ranks 2 (rel 1) and 4 (rel 2); ideal order puts rel 2 first.
    expected = _dcg([0, 1, 0, 2]) / _dcg([2, 1])
    assert scores["q1"]["ndcg@10"] == pytest.approx(expected, abs=1e-6)
    assert scores["q1"]["recall@100"] == pytest.approx(1.0)
    assert scores["q1"]["mrr@10"] == pytest.approx(0.5)
    assert scores["q2"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0, "recall@1000": 0.0}
    assert mean_scores(scores)["ndcg@10"] == pytest.approx(expected / 2, abs=1e-6)


def test_mrr_is_cut_at_ten() -> None:
    """pytrec_eval's recip_rank has no cut-off: a first hit at rank 11 must give MRR@10 = 0, not 1/11."""
    docs = {f"d{i:02d}": 100.0 - i for i in range(20)}
    qrels = {"q": {"d10": 1}, "p": {"d02": 1}}
    scores = evaluate_run(qrels, {"q": docs, "p": docs})
    assert scores["q"]["mrr@10"] == 0.0
    assert scores["q"]["recall@100"] == 1.0
    assert scores["p"]["mrr@10"] == pytest.approx(1 / 3)


def test_recall_at_100_and_1000_differ() -> None:
    docs = {f"d{i:04d}": 2000.0 - i for i in range(1500)}
    qrels = {"q": {"d0050": 1, "d0500": 1, "d1200": 1}}
    scores = evaluate_run(qrels, {"q": docs})["q"]
    assert scores["recall@100"] == pytest.approx(1 / 3)
    assert scores["recall@1000"] == pytest.approx(2 / 3)


def test_missing_query_counts_as_zero_and_empty_run_is_an_error() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    scores = evaluate_run(qrels, {"q1": {"d1": 1.0}})
    assert mean_scores(scores)["ndcg@10"] == pytest.approx(0.5)
    with pytest.raises(SpladeError, match="empty"):
        evaluate_run(qrels, {"q1": {}, "q3": {"d1": 1.0}})


def test_ties_follow_trec_eval_order() -> None:
    run = {"q": {"a": 1.0, "b": 1.0, "c": 2.0}}
    assert [d for d, _ in ranked(run["q"])] == ["c", "b", "a"]
    assert truncate_run(run, 2) == {"q": {"c": 2.0, "b": 1.0}}
    # trec_eval breaks the tie by doc id descending: "b" is at rank 2, "a" at rank 3.
    assert evaluate_run({"q": {"a": 1}}, run)["q"]["mrr@10"] == pytest.approx(1 / 3)


def test_paired_t_test_matches_scipy_and_randomization_agrees() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(60)
    b = a - 0.1 + rng.normal(0, 0.05, 60)
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert randomization_test(a, b, trials=2000) < 0.01
    same = rng.random(30)
    assert paired_t_test(same, same) == 1.0
    assert randomization_test(same, same, trials=500) == 1.0


def test_randomization_matches_exact_enumeration() -> None:
    """With 4 queries all 16 sign flips can be enumerated: the sampled p-value must approach the exact one."""
    diff = np.array([0.5, 0.2, -0.1, 0.4])
    signs = np.array([[1 if (m >> i) & 1 else -1 for i in range(4)] for m in range(16)])
    exact = np.mean(np.abs(signs @ diff) >= abs(diff.sum()) - 1e-12)
    # |sum| >= 1.0 for the observed signs and for flipping only -0.1 (sum 1.2), and their negations
    assert exact == pytest.approx(4 / 16)
    estimate = randomization_test(diff, np.zeros(4), trials=20_000, seed=3)
    assert estimate == pytest.approx(exact, abs=0.01)


def test_holm_by_hand() -> None:
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04) -> monotone maximum
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    comparisons = [compare("s", "b", "ndcg@10", [1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0], 2000),
                   compare("s", "d", "ndcg@10", [1, 0, 1, 0], [0, 1, 0, 1], 2000)]
    apply_holm(comparisons)
    assert comparisons[0].delta == 1.0 and comparisons[0].significant(0.05)
    assert not comparisons[1].significant(0.05)
    assert comparisons[0].p_holm == pytest.approx(min(1.0, 2 * comparisons[0].p_random))


def test_interval_and_wins_by_hand() -> None:
    # differences 0.1, 0.3, 0.2, 0.0: mean 0.15, sd 0.1291, t(0.975, 3) = 3.1824 -> half width 0.2054
    low, high = mean_difference_interval([0.5, 0.6, 0.4, 0.2], [0.4, 0.3, 0.2, 0.2])
    assert (low, high) == pytest.approx((0.15 - 0.20543, 0.15 + 0.20543), abs=1e-4)
    assert wins_ties_losses([0.5, 0.6, 0.4, 0.2, 0.0], [0.4, 0.3, 0.2, 0.2, 0.1]) == (3, 1, 1)
    assert mean_difference_interval([1.0], [0.0]) == (1.0, 1.0)
    comparison = compare("s", "b", "ndcg@10", [0.5, 0.6, 0.4, 0.2], [0.4, 0.3, 0.2, 0.2], 100)
    assert (comparison.wins, comparison.ties, comparison.losses) == (3, 1, 0)
    assert comparison.ci_low == pytest.approx(low) and comparison.ci_high == pytest.approx(high)


def test_flops_by_hand() -> None:
    # vocab 4; queries activate {0,1} and {1}; documents {1,2}, {1}, {3}
    q = SparseBatch.from_rows([(np.array([0, 1]), np.ones(2)), (np.array([1]), np.ones(1))], 4)
    d = SparseBatch.from_rows([(np.array([1, 2]), np.ones(2)), (np.array([1]), np.ones(1)),
                               (np.array([3]), np.ones(1))], 4)
    assert term_activation(q).tolist() == [0.5, 1.0, 0.0, 0.0]
    # p_q(1) * p_d(1) = 1 * 2/3; terms 0, 2, 3 are never active on both sides
    assert flops(q, d) == pytest.approx(2 / 3)
    assert average_terms(d) == pytest.approx(4 / 3)
    # the same number from the brute force average of |q ∩ d| over all pairs
    brute = np.mean([len(set(qi) & set(di)) for qi in ([0, 1], [1]) for di in ([1, 2], [1], [3])])
    assert flops(q, d) == pytest.approx(brute)


def test_term_sets_share_a_vocabulary() -> None:
    vocabulary: dict[str, int] = {}
    docs = term_sets_to_batch([["a", "b", "b"], ["c"]], vocabulary)
    queries = term_sets_to_batch([["b", "z"]], vocabulary)
    size = len(vocabulary)
    assert average_terms(docs) == 1.5
    assert flops(widen(queries, size), widen(docs, size)) == pytest.approx(0.5)


def test_the_progress_bar_shows_the_learning_rate_every_step_and_keeps_the_last_logged_loss() -> None:
    from splade.trainer.metrics import ProgressBar

    bar = ProgressBar(total=10, done=0, enabled=False)
    bar.update(phase=1)
    bar.show(lr=0.0, loss=50.6)
    bar.update(phase=1)
    bar.show(lr=2e-6)
    assert bar.postfix == {"phase": "1", "loss": "50.600", "lr": "2.00e-06"}
    bar.close()


def test_in_batch_mrr_counts_a_tie_against_the_positive() -> None:
    """An all-zero query ties every candidate: its positive ranks last (MRR 1/2B), not first."""
    import torch

    from splade.trainer.metrics import ranking_stats

    scores = torch.tensor([[3.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0]])  # [B, 2B]: positives, then negatives
    stats = ranking_stats(scores, n_queries=2)
    assert stats["mrr"] == pytest.approx((1.0 + 1.0 / 4) / 2)
    assert stats["accuracy"] == pytest.approx(0.5)
