"""Accuracy against load: turn a loadgrade run directory into levels, statistics, charts and a verdict.

Everything here is a pure function over pandas DataFrames (data first, options
keyword-only), so a notebook can use the same pieces as ``python -m analysis``.
"""

from analysis.compare import compare_conclusion, compare_runs, format_comparison, write_comparison
from analysis.degradation import Knee, degradation_table, find_knee, load_order
from analysis.errors import AnalysisInputError
from analysis.html_report import CHART_CAPTIONS, render_html, write_html
from analysis.io import RunData, load_run, read_records, read_run_info, read_truth
from analysis.join import NO_ANSWER, JoinSummary, infer_task, join_truth, label_key, normalise_text, prediction_key
from analysis.levels import assign_levels, inflight_concurrency
from analysis.metrics import (
    classification_metrics,
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
    describe_capacity,
    describe_knee,
    format_levels,
    summarize,
    write_outputs,
)
from analysis.resources import correct_per_cpu_second, read_resources, resources_by_level
from analysis.rules import RULE_METRICS, Rule, check_rules, parse_rule
from analysis.stats import holm_adjust, mcnemar_test, newcombe_interval, two_proportion_test, wilson_interval

__all__ = [
    "CHART_CAPTIONS",
    "NO_ANSWER",
    "RULE_METRICS",
    "AnalysisInputError",
    "JoinSummary",
    "Knee",
    "LevelHeadline",
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
    "correct_per_cpu_second",
    "degradation_table",
    "describe_capacity",
    "describe_knee",
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
    "read_records",
    "read_resources",
    "read_run_info",
    "read_truth",
    "regression_metrics",
    "render_html",
    "resources_by_level",
    "summarize",
    "text_metrics",
    "two_proportion_test",
    "wilson_interval",
    "write_charts",
    "write_comparison",
    "write_html",
    "write_outputs",
]
