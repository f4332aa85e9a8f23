"""Paired significance tests over per-query scores, with Holm's correction across comparisons."""

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
                      randomization_test(a, b, trials, seed))


def apply_holm(comparisons: Sequence[Comparison]) -> None:
    """Set `p_holm` of each comparison, correcting across the given family."""
    for comparison, adjusted in zip(comparisons, holm([c.p_random for c in comparisons]), strict=True):
        comparison.p_holm = adjusted
