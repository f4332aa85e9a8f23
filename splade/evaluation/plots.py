"""The report's figures (matplotlib, Agg backend): metric bars per dataset and quality against cost."""

from __future__ import annotations

import io
import math

from splade.evaluation.metrics import METRIC_LABELS

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def metric_bars(result, metrics: tuple[str, ...] = ("ndcg@10", "recall@1000")) -> bytes:
    """`metric_bars_figure` as PNG bytes."""
    return _png(metric_bars_figure(result, metrics))


def quality_vs_cost(result, metric: str = "ndcg@10") -> bytes:
    """`quality_vs_cost_figure` as PNG bytes."""
    return _png(quality_vs_cost_figure(result, metric))


def metric_bars_figure(result, metrics: tuple[str, ...] = ("ndcg@10", "recall@1000")):  # noqa: ANN201
    """One panel per metric: datasets on the x axis, one bar per system, values printed on the bars."""
    plt = _pyplot()
    datasets = [d.name for d in result.datasets]
    systems = _system_names(result)
    size = (max(5.0, 1.6 * len(datasets) * len(metrics) + 3), 4.2)
    figure, axes = plt.subplots(1, len(metrics), figsize=size, squeeze=False)
    width = 0.8 / max(len(systems), 1)
    upright = len(systems) > 3  # narrow bars: their values read upwards, not into each other
    for axis, metric in zip(axes[0], metrics, strict=True):
        for s, system in enumerate(systems):
            xs, ys = [], []
            for d, dataset in enumerate(result.datasets):
                found = next((r for r in dataset.systems if r.name == system), None)
                if found is not None:
                    xs.append(d - 0.4 + width * (s + 0.5))
                    ys.append(found.metrics[metric])
            bars = axis.bar(xs, ys, width * 0.92, label=system, color=PALETTE[s % len(PALETTE)])
            if len(systems) * len(datasets) <= 24:
                axis.bar_label(bars, fmt="%.3f", fontsize=7, padding=2, rotation=90 if upright else 0)
        axis.set_xticks(range(len(datasets)), datasets, rotation=20 if len(datasets) > 3 else 0,
                        ha="right" if len(datasets) > 3 else "center")
        axis.set_ylim(0, 1.18 if upright else 1.08)
        axis.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        axis.set_title(METRIC_LABELS[metric])
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.suptitle(f"Retrieval quality per dataset ({result.config.split} split)")
    return figure


def _flops_label(value: float, _position: float) -> str:
    """A tick label people read: 0.05, 2, 50, 1k, 20k."""
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _nice_bounds(low: float, high: float) -> tuple[float, float]:
    """The 1-2-5 steps just below `low` and just above `high`: the axis ends on labelled ticks."""
    steps = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
             for m in (1, 2, 5)]
    return max(v for v in steps if v <= low * 0.95), min(v for v in steps if v >= high * 1.05)


def quality_vs_cost_figure(result, metric: str = "ndcg@10"):  # noqa: ANN201
    """NDCG@10 (from 0) against FLOPS (log scale): up and to the left is better. Colour = system, and with
    several datasets, marker = dataset."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.0, 4.6))
    several = len(result.datasets) > 1
    names, plotted, top, costs = _system_names(result), [], 0.0, []
    for d, dataset in enumerate(result.datasets):
        for row in dataset.systems:
            cost = row.efficiency.get("flops", float("nan"))
            if not cost or math.isnan(cost):
                continue
            colour = PALETTE[names.index(row.name) % len(PALETTE)]
            value = row.metrics[metric]
            axis.scatter(cost, value, s=60, color=colour, marker=MARKERS[d % len(MARKERS)],
                         edgecolors="black", linewidths=0.5, zorder=3)
            if not several:  # with several datasets the legend names the systems; labels would pile up
                axis.annotate(row.name, (cost, value), textcoords="offset points", xytext=(5, 4), fontsize=7,
                              color="#333333")
            plotted += [row.name] if row.name not in plotted else []
            top, costs = max(top, value), costs + [cost]
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(_flops_label))
    axis.xaxis.set_minor_formatter(NullFormatter())
    if costs:
        axis.set_xlim(*_nice_bounds(min(costs), max(costs)))
    axis.set_ylim(0, min(1.0, top * 1.15) if top > 0 else 1.0)
    axis.set_xlabel("FLOPS: expected multiply-adds per query-document pair (log scale)")
    axis.set_ylabel(METRIC_LABELS[metric])
    axis.grid(alpha=0.3, which="major")
    axis.set_axisbelow(True)
    handles = [plt.Line2D([], [], color=PALETTE[names.index(name) % len(PALETTE)], marker="o", linestyle="",
                          label=name) for name in plotted]
    if several:
        handles += [plt.Line2D([], [], color="gray", marker=MARKERS[d % len(MARKERS)], linestyle="",
                               label=ds.name) for d, ds in enumerate(result.datasets)]
    axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    axis.set_title(f"{METRIC_LABELS[metric]} against retrieval cost")
    return figure


def _system_names(result) -> list[str]:
    names: list[str] = []
    for dataset in result.datasets:
        names += [r.name for r in dataset.systems if r.name not in names]
    return names
