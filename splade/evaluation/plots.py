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
    """One panel per metric: datasets on the x axis, one bar per system, values printed on the bars."""
    plt = _pyplot()
    datasets = [d.name for d in result.datasets]
    systems = _system_names(result)
    size = (max(5.0, 1.6 * len(datasets) * len(metrics) + 3), 4.2)
    figure, axes = plt.subplots(1, len(metrics), figsize=size, squeeze=False)
    width = 0.8 / max(len(systems), 1)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for s, system in enumerate(systems):
            xs, ys = [], []
            for d, dataset in enumerate(result.datasets):
                found = next((r for r in dataset.systems if r.name == system), None)
                if found is not None:
                    xs.append(d - 0.4 + width * (s + 0.5))
                    ys.append(found.metrics[metric])
            bars = axis.bar(xs, ys, width * 0.92, label=system, color=PALETTE[s % len(PALETTE)])
            if len(systems) * len(datasets) <= 16:
                axis.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
        axis.set_xticks(range(len(datasets)), datasets)
        axis.set_ylim(0, 1.08)
        axis.set_title(METRIC_LABELS[metric])
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.suptitle(f"Retrieval quality per dataset ({result.config.split} split)")
    return _png(figure)


def quality_vs_cost(result, metric: str = "ndcg@10") -> bytes:
    """NDCG@10 against FLOPS (log scale): up and to the left is better. Colour = system, marker = dataset."""
    plt = _pyplot()
    systems = _system_names(result)
    figure, axis = plt.subplots(figsize=(7.0, 4.6))
    for d, dataset in enumerate(result.datasets):
        for row in dataset.systems:
            cost = row.efficiency.get("flops", float("nan"))
            if not cost or math.isnan(cost):
                continue
            s = systems.index(row.name)
            axis.scatter(cost, row.metrics[metric], s=60, color=PALETTE[s % len(PALETTE)],
                         marker=MARKERS[d % len(MARKERS)], edgecolors="black", linewidths=0.5, zorder=3)
            axis.annotate(row.name, (cost, row.metrics[metric]), textcoords="offset points", xytext=(5, 4),
                          fontsize=7, color="#333333")
    axis.set_xscale("log")
    axis.set_xlabel("FLOPS: expected multiply-adds per query-document pair (log)")
    axis.set_ylabel(METRIC_LABELS[metric])
    axis.grid(alpha=0.3, which="both")
    axis.set_axisbelow(True)
    handles = [plt.Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", linestyle="", label=name)
               for i, name in enumerate(systems)]
    handles += [plt.Line2D([], [], color="gray", marker=MARKERS[d % len(MARKERS)], linestyle="",
                           label=ds.name) for d, ds in enumerate(result.datasets)]
    axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    axis.set_title(f"{METRIC_LABELS[metric]} against retrieval cost")
    return _png(figure)


def _system_names(result) -> list[str]:
    names: list[str] = []
    for dataset in result.datasets:
        names += [r.name for r in dataset.systems if r.name not in names]
    return names
