"""The report's figures: an axis from 0, legible ticks and labels, a legend of what is drawn."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from splade.config.evaluate import EvalConfig
from splade.evaluation import plots
from splade.evaluation.runner import DatasetResult, EvalResult, SystemResult

SYSTEMS = {"bm25": 40.0, "dense": 384.0, "bm25-whitespace": 25.0, "splade-v22": 55.0, "splade-v23": 48.0}


def _system(name: str, score: float, flops: float) -> SystemResult:
    efficiency = {"flops": flops, "avg_query_terms": 1.0, "avg_doc_terms": 1.0, "index_bytes": 1.0,
                  "doc_encode_s": 1.0, "index_s": 1.0, "query_encode_s": 1.0, "search_s": 1.0, "qps": 1.0}
    metrics = {"ndcg@10": score, "mrr@10": score, "recall@100": score, "recall@1000": min(1.0, score + 0.3)}
    return SystemResult(name, "x", name, name in ("bm25", "dense"), metrics, {}, {}, efficiency)


def _result(datasets: list[str], systems: dict[str, float]) -> EvalResult:
    rows = [DatasetResult(name, "dev", 100, 1000, "own", [_system(s, 0.3 + 0.1 * j + 0.02 * d, flops)
                                                         for j, (s, flops) in enumerate(systems.items())])
            for d, name in enumerate(datasets)]
    return EvalResult(EvalConfig(datasets=["x"]), rows, "now", 1.0, {})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plots._pyplot().close("all")


def _overlapping(texts) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose drawn boxes overlap."""
    figure = texts[0].figure
    figure.canvas.draw()
    boxes = [(t.get_text(), t.get_window_extent()) for t in texts if t.get_visible() and t.get_text()]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_quality_against_cost_starts_at_zero_and_names_only_what_it_draws() -> None:
    result = _result(["sample-koen"], {**SYSTEMS, "no-flops": math.nan})
    axis = plots.quality_vs_cost_figure(result).axes[0]
    assert axis.get_ylim()[0] == 0
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend == list(SYSTEMS)  # one dataset: no marker entry for it; a system without FLOPS is not drawn
    several = plots.quality_vs_cost_figure(_result(["msmarco-koen", "msmarco-ko"], SYSTEMS)).axes[0]
    assert [t.get_text() for t in several.get_legend().get_texts()][-2:] == ["msmarco-koen", "msmarco-ko"]


def test_tick_and_value_labels_do_not_overlap() -> None:
    result = _result(["msmarco-koen", "msmarco-ko", "korquad"], SYSTEMS)
    axis = plots.quality_vs_cost_figure(result).axes[0]
    ticks = axis.get_xticklabels() + axis.get_xticklabels(minor=True)
    assert _overlapping(ticks) == []
    labels = [t.get_text() for t in ticks if t.get_text()]
    assert "50" in labels and all(re.fullmatch(r"[\d.]+k?", label) for label in labels)  # not "4×10¹"
    figure = plots.metric_bars_figure(result)
    for axis in figure.axes:
        assert _overlapping(axis.get_xticklabels()) == []
        values = [text for text in axis.texts]  # the numbers printed on the bars
        assert len(values) == len(SYSTEMS) * 3 and _overlapping(values) == []
