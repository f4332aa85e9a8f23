"""Epoch sampling with a data focus: draw the named fractions of `pair_type` / `difficulty` values.

The order of an epoch is a pure function of (seed, epoch), so a resumed run replays the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from splade.config import FocusConfig
from splade.trainer.neighbours import neighbour_units

log = logging.getLogger(__name__)


def _exact_counts(total: int, probs: np.ndarray) -> np.ndarray:
    """Split `total` by `probs` into integers (largest remainder), so the fractions hold exactly."""
    raw = probs * total
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def _draw(group: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` members of `group`, without repetition until the whole group has been used."""
    rounds = [rng.permutation(group) for _ in range(-(-count // len(group)))]
    return np.concatenate(rounds)[:count] if rounds else np.zeros(0, np.int64)


def group_fractions(values: Sequence[str], focus: FocusConfig) -> dict[str, float]:
    """The fraction of an epoch each value of the focus field gets (values absent from the data get none)."""
    present = sorted(set(values))
    if focus.fractions == "balanced":
        return {v: 1.0 / len(present) for v in present}
    named = {v: f for v, f in focus.fractions.items() if v in present}
    missing = sorted(set(focus.fractions) - set(present))
    if missing:
        log.warning(
            "data focus on %s: no training examples with %s; their share goes to the rest",
            focus.by,
            ", ".join(missing),
        )
    others = [v for v in present if v not in named]
    rest = max(0.0, 1.0 - sum(named.values()))
    fractions = dict(named)
    if others:
        # the remainder is spread over the other values in proportion to their size
        sizes = {v: sum(1 for x in values if x == v) for v in others}
        total = sum(sizes.values())
        fractions.update({v: rest * sizes[v] / total for v in others})
    norm = sum(fractions.values())
    return (
        {v: f / norm for v, f in fractions.items()} if norm > 0 else {v: 1.0 / len(present) for v in present}
    )


def epoch_indices(
    values: dict[str, Sequence[str]],
    focus: FocusConfig | None,
    size: int,
    seed: int,
    epoch: int,
    nearest: np.ndarray | None = None,
    group_size: int = 1,
) -> np.ndarray:
    """The example indices of one epoch (`size` of them), drawn per `focus` and shuffled.

    With `nearest` (each index's nearest triplets, -1 padded; see `splade.trainer.neighbours`) and
    `group_size` > 1, a drawn index brings `group_size` - 1 of its nearest along, and the group stays
    together in the shuffled order, so it lands in one batch (unless it straddles two)."""
    rng = np.random.default_rng([seed, epoch])
    n = len(next(iter(values.values())))
    grouped = nearest is not None and group_size > 1
    if focus is None and not grouped:
        return _draw(np.arange(n), size, rng)
    if focus is None:
        names, counts, groups = ["all"], np.array([size]), {"all": np.arange(n)}
    else:
        column = list(values[focus.by])
        fractions = group_fractions(column, focus)
        names = list(fractions)
        counts = _exact_counts(size, np.array([fractions[v] for v in names]))
        groups = {v: np.flatnonzero(np.asarray(column, dtype=object) == v) for v in names}
    if not grouped:
        picked = np.concatenate([_draw(groups[v], int(c), rng) for v, c in zip(names, counts, strict=True)])
        return rng.permutation(picked)
    units = [
        unit
        for v, c in zip(names, counts, strict=True)
        for unit in neighbour_units(_draw(groups[v], int(c), rng), nearest, group_size, int(c), rng)
    ]
    return np.concatenate([units[i] for i in rng.permutation(len(units))]) if units else np.zeros(0, np.int64)
