"""Evaluation: SPLADE against BM25 and dense retrieval, with metrics, significance, costs and a report.

`run_evaluation(EvalConfig) -> EvalResult` runs every system on every dataset;
`write_report(result, out_dir) -> Path` writes Markdown, HTML (with plots), JSON and TREC runs.
"""

from splade.evaluation.runner import EvalConfig, EvalResult, run_evaluation

__all__ = ["EvalConfig", "EvalResult", "run_evaluation", "write_report"]


def write_report(result: EvalResult, out_dir):  # noqa: ANN001 - thin lazy wrapper (matplotlib loads late)
    """See `splade.evaluation.report.write_report`."""
    from splade.evaluation.report import write_report as _write

    return _write(result, out_dir)
