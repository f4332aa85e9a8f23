"""Write an evaluation as a report folder: Markdown, a self-contained HTML page with plots, JSON, TREC runs.

Layout of `--out DIR` (written into a temporary folder that replaces DIR in one rename)::

    report.md            the tables (one per dataset, plus a summary) a person reads
    report.html          the same tables with the plots inlined (base64 PNG): one file to share
    results.json         everything: config, mean and per-query metrics, costs, significance tests
    plots/*.png          the figures as files
    runs/<dataset>/<system>.trec   `qid Q0 docid rank score system`, for trec_eval / ir_measures / ranx
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from splade.atomic import atomic_dir, refuse_foreign_dir, write_json
from splade.evaluation import plots
from splade.evaluation.metrics import METRIC_LABELS, METRICS, ranked
from splade.evaluation.runner import DatasetResult, EvalResult

Table = tuple[list[str], list[list[str]]]
UP, DOWN = "▲", "▼"


def write_report(result: EvalResult, out_dir: str | Path) -> Path:
    """Write the report folder atomically and return the path of `report.html`.

    An existing `out_dir` is replaced only when it is empty or an earlier report (holds `results.json`).
    """
    out_dir = Path(out_dir)
    refuse_foreign_dir(out_dir, "results.json", "--out", "evaluation report")
    figures = {"metric_bars": plots.metric_bars(result), "quality_vs_cost": plots.quality_vs_cost(result)}
    with atomic_dir(out_dir) as tmp:
        (tmp / "plots").mkdir()
        for name, png in figures.items():
            (tmp / "plots" / f"{name}.png").write_bytes(png)
        for dataset in result.datasets:
            folder = tmp / "runs" / dataset.name
            folder.mkdir(parents=True)
            for system in dataset.systems:
                write_trec_run(system.run, system.name, folder / f"{system.name}.trec")
        payload = result.to_dict()
        for d, dataset in enumerate(result.datasets):
            for s, system in enumerate(dataset.systems):
                payload["datasets"][d]["systems"][s]["run_file"] = f"runs/{dataset.name}/{system.name}.trec"
        write_json(tmp / "results.json", payload)
        (tmp / "report.md").write_text(render_markdown(result), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(result, figures), encoding="utf-8")
    return out_dir / "report.html"


def write_trec_run(run: dict[str, dict[str, float]], system: str, path: Path) -> None:
    """TREC run format, documents in trec_eval's order so ranks match what was scored."""
    with path.open("w", encoding="utf-8") as handle:
        for qid in sorted(run):
            for rank, (doc_id, score) in enumerate(ranked(run[qid]), start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {system}\n")


# -- tables -------------------------------------------------------------------------------------------------

def _baseline_marks(result: EvalResult) -> dict[str, str]:
    """A one-letter mark per baseline (B for bm25, D for dense...)."""
    marks: dict[str, str] = {}
    for name in result.baselines:
        letter = name[0].upper()
        while letter in marks.values():
            letter = f"{name[0].upper()}{len(marks)}"
        marks[name] = letter
    return marks


def _metric_cell(dataset: DatasetResult, system: str, metric: str, value: float, marks: dict[str, str],
                 alpha: float) -> str:
    signs = []
    for c in dataset.comparisons:
        if c.system == system and c.metric == metric and c.significant(alpha):
            signs.append(f"{UP if c.delta > 0 else DOWN}{marks.get(c.baseline, c.baseline)}")
    return f"{value:.3f}" + (f" {''.join(signs)}" if signs else "")


def dataset_table(result: EvalResult, dataset: DatasetResult) -> Table:
    marks = _baseline_marks(result)
    header = ["system"] + [METRIC_LABELS[m] for m in METRICS] + [
        "q terms", "d terms", "FLOPS", "index", "build index", "encode queries", "search", "QPS",
        "p50 ms", "p99 ms"]
    rows = []
    for system in dataset.systems:
        e = system.efficiency
        name = f"{system.name} ({marks[system.name]})" if system.name in marks else system.name
        alpha = result.config.alpha
        rows.append([name] + [_metric_cell(dataset, system.name, m, system.metrics[m], marks, alpha)
                              for m in METRICS] + [
            _terms(e["avg_query_terms"]), _terms(e["avg_doc_terms"]), _number(e["flops"]),
            _bytes(e["index_bytes"]), _seconds(e["doc_encode_s"] + e["index_s"]),
            _seconds(e["query_encode_s"]), _seconds(e["search_s"]), _millis(e["qps"]),
            _millis(e.get("p50_ms")), _millis(e.get("p99_ms"))])
    return header, rows


def _terms(value: float) -> str:
    """Mean active terms; "–" for a system that has none (the teacher fuses two rankings)."""
    return "–" if math.isnan(value) else f"{value:.1f}"


def _millis(value: float | None) -> str:
    """A per-query latency (or another figure with one decimal); "-" for systems that do not measure one."""
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def significance_table(dataset: DatasetResult) -> Table:
    header = ["system", "baseline", "metric", "Δ mean", "95% CI", "wins / ties / losses", "p (t-test)",
              "p (randomization)", "p (Holm)"]
    rows = [[c.system, c.baseline, METRIC_LABELS[c.metric], f"{c.delta:+.3f}",
             f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]", f"{c.wins} / {c.ties} / {c.losses}", _p(c.p_t),
             _p(c.p_random), _p(c.p_holm)] for c in dataset.comparisons]
    return header, rows


def summary_table(result: EvalResult, metric: str = "ndcg@10") -> Table:
    names = plots._system_names(result)
    header = ["system"] + [d.name for d in result.datasets] + ["mean"]
    rows = []
    for name in names:
        values = [next((s.metrics[metric] for s in d.systems if s.name == name), math.nan)
                  for d in result.datasets]
        present = [v for v in values if not math.isnan(v)]
        rows.append([name] + [f"{v:.3f}" for v in values] + [f"{sum(present) / len(present):.3f}"])
    return header, rows


def _sections(result: EvalResult) -> list[tuple[str, str, list[Table]]]:
    """(title, intro, tables) of each report section, shared by the Markdown and HTML renderers."""
    sections = [(f"Summary: {METRIC_LABELS['ndcg@10']}", "", [summary_table(result, "ndcg@10")]),
                (f"Summary: {METRIC_LABELS['recall@1000']}", "", [summary_table(result, "recall@1000")])]
    for dataset in result.datasets:
        corpus = ("merged corpus of all datasets" if dataset.corpus == "merged" else "its own corpus")
        intro = (f"{dataset.n_queries:,} judged queries ({dataset.split}) against {corpus}: "
                 f"{dataset.n_docs:,} documents.")
        tables = [dataset_table(result, dataset)]
        if dataset.comparisons:
            tables.append(significance_table(dataset))
        sections.append((dataset.name, intro, tables))
    return sections


def _legend(result: EvalResult) -> str:
    marks = _baseline_marks(result)
    names = ", ".join(f"{mark} = {name}" for name, mark in marks.items()) or "none"
    return (f"{UP}X / {DOWN}X: significantly better / worse than baseline X ({names}): paired randomization "
            f"test over queries ({result.config.trials:,} trials), Holm-corrected within each dataset and "
            f"metric, p < {result.config.alpha}. 95% CI: confidence interval of the mean difference (paired "
            "t); wins / ties / losses: queries on which the system scores above, level with, below the "
            "baseline. FLOPS: expected multiply-adds per query-document pair "
            "(sum over terms of p_q(t)·p_d(t); for dense, the embedding size). Index: size of the index "
            "holding the corpus (BM25: postings at 8 bytes each plus terms; dense: float32 matrix). "
            "Times are wall clock for all documents / queries (build index = encode documents + index "
            "them); QPS counts query encoding and search.")


def _provenance(result: EvalResult) -> str:
    """splade's and the libraries' versions, and each model's identity, in one line."""
    env = result.environment
    libraries = ", ".join(f"{name} {version}" for name, version in env.get("libraries", {}).items())
    models = "; models: " + ", ".join(f"{n} = {m}" for n, m in result.models.items()) if result.models else ""
    return f"splade {env.get('splade', '?')} ({libraries}), Python {env.get('python', '?')}{models}."


def _systems_lines(result: EvalResult) -> list[tuple[str, str]]:
    """(name, description with the input lengths the system saw) of every system."""
    seen: dict[str, str] = {}
    for dataset in result.datasets:
        for system in dataset.systems:
            seen.setdefault(system.name, system.description + length_text(system.lengths))
    return list(seen.items())


def length_text(lengths: dict[str, int | str]) -> str:
    """`; lengths: query_max_length 64, doc_max_length 512` (tokens; BM25: whole document), or ""."""
    if not lengths:
        return ""
    return "; lengths: " + ", ".join(f"{key} {value}" for key, value in lengths.items())


def render_markdown(result: EvalResult) -> str:
    config = result.config
    lines = ["# SPLADE evaluation", "",
             f"Split `{config.split}`{_half(config.query_half)}, top {config.top_k}, "
             f"{'merged corpus' if config.merged_corpus else 'each dataset on its own corpus'}; "
             f"started {result.started}, took {_seconds(result.seconds)}.", "", _provenance(result), "",
             "Systems:", ""]
    lines += [f"- **{name}**: {description}" for name, description in _systems_lines(result)]
    lines += ["", _legend(result), "", "Plots: `plots/metric_bars.png`, `plots/quality_vs_cost.png` "
              "(inlined in `report.html`).", ""]
    for title, intro, tables in _sections(result):
        lines += [f"## {title}", ""] + ([intro, ""] if intro else [])
        for header, rows in tables:
            lines += [_md_row(header), _md_row(["---"] * len(header))] + [_md_row(r) for r in rows] + [""]
    return "\n".join(lines)


def _half(half: str) -> str:
    """` (report half of the queries)` for a dev half (`splade.dev_split`), "" for all queries."""
    return "" if half == "all" else f" ({half} half of the queries)"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_html(result: EvalResult, figures: dict[str, bytes]) -> str:
    config = result.config
    esc = html.escape
    half = esc(_half(config.query_half))
    body = [f"<h1>SPLADE evaluation</h1><p>Split <code>{esc(config.split)}</code>{half}, top {config.top_k}, "
            f"{'merged corpus' if config.merged_corpus else 'each dataset on its own corpus'}; started "
            f"{esc(result.started)}, took {_seconds(result.seconds)}.</p>",
            f'<p class="legend">{esc(_provenance(result))}</p><ul>']
    body += [f"<li><b>{esc(n)}</b>: {esc(d)}</li>" for n, d in _systems_lines(result)]
    body.append("</ul>")
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        body.append(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}"></figure>')
    body.append(f'<p class="legend">{esc(_legend(result))}</p>')
    for title, intro, tables in _sections(result):
        body.append(f"<h2>{esc(title)}</h2>" + (f"<p>{esc(intro)}</p>" if intro else ""))
        for header, rows in tables:
            head = "".join(f"<th>{esc(h)}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>"
                            for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    return _PAGE.format(body="\n".join(body))


def _html_cell(cell: str) -> str:
    text = html.escape(cell)
    text = text.replace(UP, f'<span class="up">{UP}</span>')
    return text.replace(DOWN, f'<span class="down">{DOWN}</span>')


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SPLADE evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }}
th, td {{ padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
thead th {{ border-bottom: 2px solid #444; }}
tbody tr:hover {{ background: #f5f7fa; }}
.up {{ color: #1a7f37; }} .down {{ color: #cf222e; }}
.legend {{ color: #555; font-size: 0.85rem; max-width: 900px; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }}
</style></head><body>
{body}
</body></html>
"""


# -- number formats -----------------------------------------------------------------------------------------

def _number(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _seconds(value: float) -> str:
    if math.isnan(value):  # not measured (a TREC run's system)
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"
