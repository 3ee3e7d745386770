"""Accuracy against load: turn a loadgrade run directory into levels, statistics, charts and a verdict."""

from analysis.errors import AnalysisInputError
from analysis.io import RunData, load_run, read_records, read_run_info, read_truth
from analysis.join import JoinSummary, infer_task, join_truth, normalise_text

__all__ = [
    "AnalysisInputError",
    "JoinSummary",
    "RunData",
    "infer_task",
    "join_truth",
    "load_run",
    "normalise_text",
    "read_records",
    "read_run_info",
    "read_truth",
]
