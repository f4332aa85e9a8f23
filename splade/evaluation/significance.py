"""Paired comparisons over per-query scores: significance tests with Holm's correction across comparisons,
a confidence interval of the mean difference, and per-query wins, ties and losses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test p-value of `a` vs `b` (1.0 when the two agree on every query)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = x - y
    if diff.size < 2 or np.allclose(diff, diff[0]):
        return 1.0 if np.allclose(diff, 0.0) else 0.0
    return float(stats.ttest_rel(x, y).pvalue)


def randomization_test(a: Sequence[float], b: Sequence[float], trials: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired randomization (sign-flip) test on the mean difference.

    Each trial swaps the two systems' scores of each query with probability 1/2; the p-value is the
    share of trials whose |mean difference| reaches the observed one (with the +1 correction).
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0:
        return 1.0
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, trials, 1000):
        n = min(1000, trials - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, diff.size))
        hits += int(np.count_nonzero(np.abs(signs @ diff) / diff.size >= observed - 1e-12))
    return (hits + 1) / (trials + 1)


def mean_difference_interval(a: Sequence[float], b: Sequence[float],
                             level: float = 0.95) -> tuple[float, float]:
    """Two-sided `level` confidence interval of mean(a - b), from the paired t distribution."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean = float(diff.mean()) if diff.size else 0.0
    if diff.size < 2:
        return mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size))
    return mean - half, mean + half


def wins_ties_losses(a: Sequence[float], b: Sequence[float], tolerance: float = 1e-9) -> tuple[int, int, int]:
    """Queries where `a` scores above, level with (within `tolerance`) and below `b`."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    wins, losses = int(np.sum(diff > tolerance)), int(np.sum(diff < -tolerance))
    return wins, diff.size - wins - losses, losses


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


@dataclass
class Comparison:
    """One system against one baseline on one metric of one dataset."""

    system: str
    baseline: str
    metric: str
    delta: float  # mean(system) - mean(baseline)
    p_t: float  # paired t-test
    p_random: float  # paired randomization test
    ci_low: float  # 95% confidence interval of `delta` (paired t)
    ci_high: float
    wins: int  # queries where the system scores above the baseline
    ties: int
    losses: int
    p_holm: float = 1.0  # randomization p-value after Holm's correction within (dataset, metric)

    def significant(self, alpha: float) -> bool:
        return self.p_holm < alpha

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def compare(system: str, baseline: str, metric: str, a: Sequence[float], b: Sequence[float],
            trials: int = 10_000, seed: int = 0) -> Comparison:
    """Test the per-query scores `a` (system) against `b` (baseline), paired by query."""
    delta = float(np.mean(a) - np.mean(b)) if len(a) else 0.0
    return Comparison(system, baseline, metric, delta, paired_t_test(a, b),
                      randomization_test(a, b, trials, seed), *mean_difference_interval(a, b),
                      *wins_ties_losses(a, b))


def apply_holm(comparisons: Sequence[Comparison]) -> None:
    """Set `p_holm` of each comparison, correcting across the given family."""
    for comparison, adjusted in zip(comparisons, holm([c.p_random for c in comparisons]), strict=True):
        comparison.p_holm = adjusted
