"""Curriculum phases (guide 4.2), the data-focus sampler, the LR schedule and FLOPS annealing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from splade.config import FocusConfig, load_config
from splade.trainer.curriculum import Curriculum
from splade.trainer.sampler import epoch_indices, group_fractions
from splade.trainer.schedule import cosine_with_warmup, flops_scale

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_v22_phase_table() -> None:
    cfg = load_config(CONFIGS / "train_v22.yaml")
    cur = Curriculum(cfg.curriculum_phases, cfg.loss)
    got = {
        e: (
            cur.settings(e).index,
            cur.settings(e).temperature,
            cur.settings(e).lambda_infonce,
            cur.settings(e).lr_multiplier,
        )
        for e in (1, 10, 11, 20, 21, 30)
    }
    assert got == {
        1: (1, 0.07, 1.0, 1.0),
        10: (1, 0.07, 1.0, 1.0),
        11: (2, 0.05, 1.5, 0.5),
        20: (2, 0.05, 1.5, 0.5),
        21: (3, 0.03, 2.0, 0.25),
        30: (3, 0.03, 2.0, 0.25),
    }
    # past the last phase (e.g. --set training.num_epochs=35): the last phase goes on, LR multiplier included
    assert cur.settings(31) == cur.settings(30) and cur.settings(35).lr_multiplier == 0.25


def test_gaps_keep_the_preceding_phase_and_only_epochs_before_the_first_use_the_loss_values() -> None:
    cfg = load_config(
        CONFIGS / "train_v22.yaml",
        ["curriculum_phases.0.start_epoch=3", "curriculum_phases.0.end_epoch=8"],  # gaps 1-2 and 9-10
    )
    cur = Curriculum(cfg.curriculum_phases, cfg.loss)
    before = cur.settings(2)
    assert (before.index, before.temperature, before.lambda_infonce, before.lr_multiplier, before.focus) == (
        0,
        cfg.loss.temperature,
        cfg.loss.lambda_infonce,
        1.0,
        None,
    )
    assert cur.settings(9) == cur.settings(10) == cur.settings(8) and cur.settings(9).index == 1
    assert cur.settings(11).index == 2
    assert Curriculum([], cfg.loss).settings(5).index == 0


def test_v23_phases_keep_the_loss_lambda() -> None:
    cfg = load_config(CONFIGS / "train_v23.yaml")
    cur = Curriculum(cfg.curriculum_phases, cfg.loss)
    assert [cur.settings(e).lr_multiplier for e in (1, 7, 8, 14, 15, 20)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert [cur.settings(e).focus.by for e in (1, 8, 15)] == ["pair_type", "pair_type", "pair_type"]
    assert {cur.settings(e).lambda_infonce for e in range(1, 21)} == {2.5}


def _values(n: int = 60) -> dict[str, list[str]]:
    types = ["single_term"] * 10 + ["multi_term"] * 30 + ["cross_lingual"] * 20
    difficulty = ["hard"] * 6 + ["easy"] * 54
    return {"pair_type": types[:n], "difficulty": difficulty[:n]}


def test_focus_draws_the_named_fraction_exactly() -> None:
    values = _values()
    focus = FocusConfig(by="pair_type", fractions={"single_term": 0.5})
    idx = epoch_indices(values, focus, 60, seed=1, epoch=1)
    counts = Counter(values["pair_type"][i] for i in idx)
    assert counts["single_term"] == 30  # 50% although only 1/6 of the data
    # the rest keeps the other types' proportions (30:20)
    assert counts["multi_term"] == 18 and counts["cross_lingual"] == 12
    # the 10 single-term examples are each used 3 times, none more often than needed
    assert Counter(i for i in idx if values["pair_type"][i] == "single_term").most_common(1)[0][1] == 3


def test_balanced_and_hard_negative_focus() -> None:
    values = _values()
    idx = epoch_indices(values, FocusConfig(by="pair_type", fractions="balanced"), 60, seed=1, epoch=2)
    assert set(Counter(values["pair_type"][i] for i in idx).values()) == {20}
    idx = epoch_indices(values, FocusConfig(by="difficulty", fractions={"hard": 0.5}), 60, seed=1, epoch=3)
    assert Counter(values["difficulty"][i] for i in idx)["hard"] == 30


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    values = _values()
    a = epoch_indices(values, None, 60, seed=7, epoch=1)
    assert np.array_equal(a, epoch_indices(values, None, 60, seed=7, epoch=1))
    assert not np.array_equal(a, epoch_indices(values, None, 60, seed=7, epoch=2))
    assert sorted(a.tolist()) == list(range(60))  # without focus: every example once


def test_missing_focus_value_gives_its_share_to_the_rest() -> None:
    values = _values()
    fractions = group_fractions(
        values["pair_type"], FocusConfig(by="pair_type", fractions={"paraphrase": 0.5})
    )
    assert sum(fractions.values()) == pytest.approx(1.0) and "paraphrase" not in fractions


def test_cosine_schedule_with_warmup_and_flops_annealing() -> None:
    f = cosine_with_warmup(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-12)
    assert flops_scale(0, 100) == 0.0 and flops_scale(50, 100) == pytest.approx(0.25)
    assert flops_scale(200, 100) == 1.0 and flops_scale(3, 0) == 1.0
