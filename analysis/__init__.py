"""Accuracy against load: turn a loadgrade run directory into levels, statistics, charts and a verdict.

Everything here is a pure function over pandas DataFrames (data first, options
keyword-only), so a notebook can use the same pieces as ``python -m analysis``.
"""

# Importing the package is cheap: each name loads its module on first use (PEP 562), so a process that needs one
# function (the live figures on a Locust master) does not pay for scikit-learn, SciPy and matplotlib at start-up.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.compare import (
        compare_conclusion,
        compare_runs,
        comparison_warnings,
        format_comparison,
        write_comparison,
    )
    from analysis.degradation import Knee, degradation_table, find_knee, load_order
    from analysis.errors import AnalysisInputError
    from analysis.html_report import CHART_CAPTIONS, render_html, write_html
    from analysis.io import RunData, load_run, read_records, read_run_info, read_truth
    from analysis.join import NO_ANSWER, JoinSummary, infer_task, join_truth, label_key, normalise_text, prediction_key
    from analysis.levels import assign_levels, inflight_concurrency
    from analysis.metrics import (
        FAILURE_CLASSES,
        classification_metrics,
        failure_class,
        latency_percentiles,
        level_table,
        per_class_recall,
        regression_metrics,
        text_metrics,
    )
    from analysis.plots import (
        plot_accuracy,
        plot_class_recall,
        plot_compare,
        plot_confusion,
        plot_errors,
        plot_latency,
        plot_over_time,
        plot_resources,
        plot_throughput,
        write_charts,
    )
    from analysis.report import (
        LevelHeadline,
        RunAnalysis,
        Summary,
        analyse_run,
        confusion_level,
        describe_capacity,
        describe_knee,
        describe_quality,
        failure_shares,
        format_levels,
        quality_warnings,
        summarize,
        write_outputs,
    )
    from analysis.resources import correct_per_cpu_second, read_resources, resources_by_level
    from analysis.rules import RULE_METRICS, Rule, check_rules, parse_rule
    from analysis.stats import (
        PairedDifference,
        holm_adjust,
        mcnemar_test,
        newcombe_interval,
        paired_difference,
        sample_wilson_interval,
        two_proportion_test,
        wilson_interval,
    )

_MODULE_OF = {
    "AnalysisInputError": "analysis.errors",
    "CHART_CAPTIONS": "analysis.html_report",
    "FAILURE_CLASSES": "analysis.metrics",
    "JoinSummary": "analysis.join",
    "Knee": "analysis.degradation",
    "LevelHeadline": "analysis.report",
    "NO_ANSWER": "analysis.join",
    "RULE_METRICS": "analysis.rules",
    "Rule": "analysis.rules",
    "RunAnalysis": "analysis.report",
    "RunData": "analysis.io",
    "Summary": "analysis.report",
    "analyse_run": "analysis.report",
    "assign_levels": "analysis.levels",
    "check_rules": "analysis.rules",
    "classification_metrics": "analysis.metrics",
    "compare_conclusion": "analysis.compare",
    "compare_runs": "analysis.compare",
    "confusion_level": "analysis.report",
    "correct_per_cpu_second": "analysis.resources",
    "degradation_table": "analysis.degradation",
    "describe_capacity": "analysis.report",
    "describe_knee": "analysis.report",
    "describe_quality": "analysis.report",
    "failure_class": "analysis.metrics",
    "failure_shares": "analysis.report",
    "find_knee": "analysis.degradation",
    "format_comparison": "analysis.compare",
    "format_levels": "analysis.report",
    "holm_adjust": "analysis.stats",
    "infer_task": "analysis.join",
    "inflight_concurrency": "analysis.levels",
    "join_truth": "analysis.join",
    "label_key": "analysis.join",
    "latency_percentiles": "analysis.metrics",
    "level_table": "analysis.metrics",
    "load_order": "analysis.degradation",
    "load_run": "analysis.io",
    "mcnemar_test": "analysis.stats",
    "newcombe_interval": "analysis.stats",
    "normalise_text": "analysis.join",
    "parse_rule": "analysis.rules",
    "per_class_recall": "analysis.metrics",
    "plot_accuracy": "analysis.plots",
    "plot_class_recall": "analysis.plots",
    "plot_compare": "analysis.plots",
    "plot_confusion": "analysis.plots",
    "plot_errors": "analysis.plots",
    "plot_latency": "analysis.plots",
    "plot_over_time": "analysis.plots",
    "plot_resources": "analysis.plots",
    "plot_throughput": "analysis.plots",
    "prediction_key": "analysis.join",
    "quality_warnings": "analysis.report",
    "read_records": "analysis.io",
    "read_resources": "analysis.resources",
    "read_run_info": "analysis.io",
    "read_truth": "analysis.io",
    "regression_metrics": "analysis.metrics",
    "render_html": "analysis.html_report",
    "resources_by_level": "analysis.resources",
    "sample_wilson_interval": "analysis.stats",
    "paired_difference": "analysis.stats",
    "PairedDifference": "analysis.stats",
    "comparison_warnings": "analysis.compare",
    "summarize": "analysis.report",
    "text_metrics": "analysis.metrics",
    "two_proportion_test": "analysis.stats",
    "wilson_interval": "analysis.stats",
    "write_charts": "analysis.plots",
    "write_comparison": "analysis.compare",
    "write_html": "analysis.html_report",
    "write_outputs": "analysis.report",
}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


__all__ = [
    "CHART_CAPTIONS",
    "FAILURE_CLASSES",
    "NO_ANSWER",
    "RULE_METRICS",
    "AnalysisInputError",
    "JoinSummary",
    "Knee",
    "LevelHeadline",
    "PairedDifference",
    "Rule",
    "RunAnalysis",
    "RunData",
    "Summary",
    "analyse_run",
    "assign_levels",
    "check_rules",
    "classification_metrics",
    "compare_conclusion",
    "compare_runs",
    "comparison_warnings",
    "confusion_level",
    "correct_per_cpu_second",
    "degradation_table",
    "describe_capacity",
    "describe_knee",
    "describe_quality",
    "failure_class",
    "failure_shares",
    "find_knee",
    "format_comparison",
    "format_levels",
    "holm_adjust",
    "infer_task",
    "inflight_concurrency",
    "join_truth",
    "label_key",
    "latency_percentiles",
    "level_table",
    "load_order",
    "load_run",
    "mcnemar_test",
    "newcombe_interval",
    "normalise_text",
    "paired_difference",
    "parse_rule",
    "per_class_recall",
    "plot_accuracy",
    "plot_class_recall",
    "plot_compare",
    "plot_confusion",
    "plot_errors",
    "plot_latency",
    "plot_over_time",
    "plot_resources",
    "plot_throughput",
    "prediction_key",
    "quality_warnings",
    "read_records",
    "read_resources",
    "read_run_info",
    "read_truth",
    "regression_metrics",
    "render_html",
    "resources_by_level",
    "sample_wilson_interval",
    "summarize",
    "text_metrics",
    "two_proportion_test",
    "wilson_interval",
    "write_charts",
    "write_comparison",
    "write_html",
    "write_outputs",
]
