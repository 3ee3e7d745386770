"""Run the whole analysis of one run directory and write ``levels.csv`` and ``summary.json``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadgrade.analysis.degradation import METRICS, Knee, degradation_table, find_knee, load_order, load_unit
from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.io import RunData, load_run, output_dir, wants_progress
from loadgrade.analysis.join import JoinSummary, join_truth
from loadgrade.analysis.levels import assign_levels
from loadgrade.analysis.metrics import level_table
from loadgrade.analysis.resources import correct_per_cpu_second, read_resources, resources_by_level

__all__ = [
    "LevelHeadline",
    "RunAnalysis",
    "Summary",
    "analyse_run",
    "confusion_level",
    "describe_capacity",
    "describe_knee",
    "describe_quality",
    "failure_shares",
    "format_levels",
    "quality_warnings",
    "run_warnings",
    "summarize",
    "write_outputs",
]

ANALYSIS_VERSION = "0.1.0"
DEFAULT_TOLERANCE = 0.01
#: How each quality metric reads in a sentence.
METRIC_WORDS = {
    "effective_accuracy": "accuracy over every request",
    "accuracy": "accuracy among answered requests",
}
# Levels listed one warning each for not covering the dataset; more are summed up in one warning.
_COVERAGE_WARNINGS = 3


@dataclass(frozen=True)
class LevelHeadline:
    """The headline figures of one level."""

    level: int
    """Level index (stage, or time window)."""
    users: float
    """Offered users."""
    n: int
    """Requests sent at this level."""
    accuracy: float | None
    """Accuracy among successful (answered) responses: model quality."""
    accuracy_low: float | None
    """Lower bound of its Wilson interval (the sample as the unit)."""
    accuracy_high: float | None
    """Upper bound of its Wilson interval."""
    effective_accuracy: float | None
    """Accuracy over every labelled request: a failed request is a lost answer, counted as wrong."""
    error_rate: float | None
    """Share of requests that failed (transport, HTTP or format)."""
    p95_ms: float | None
    """95th percentile latency of successful responses."""
    throughput_rps: float
    """Requests per second."""
    goodput_rps: float
    """Correct answers within the latency SLO per second."""
    load: float | None = None
    """Offered load in the summary's ``load_unit``: the arrival rate in an open-model run, else the users."""
    target_rps: float | None = None
    """Open model: the offered arrival rate (requests per second)."""
    p95_sched_ms: float | None = None
    """Open model: 95th percentile latency from the scheduled time (coordinated omission corrected)."""
    p99_sched_ms: float | None = None
    """Open model: 99th percentile latency from the scheduled time."""
    lag_p99_ms: float | None = None
    """Open model: 99th percentile of the schedule lag (send time minus scheduled time)."""
    late_share: float | None = None
    """Open model: share of requests sent more than 10 ms after they were due."""
    effective_accuracy_low: float | None = None
    """Lower bound of the Wilson interval of ``effective_accuracy`` (the sample as the unit)."""
    effective_accuracy_high: float | None = None
    """Upper bound of that interval."""
    accuracy_drop: float | None = None
    """Baseline minus this level, accuracy over every request, paired per sample (0 at the baseline)."""
    answered_accuracy_drop: float | None = None
    """The same among answered requests only."""
    n_samples: int | None = None
    """Distinct labelled samples this level sent."""
    coverage: float | None = None
    """``n_samples`` over the labelled samples of the dataset."""
    n_failed: int | None = None
    """Requests that failed."""
    wrong_rate: float | None = None
    """Share of requests answered, but wrongly."""
    lost_rate: float | None = None
    """Share of requests without a right answer: wrong or failed."""
    error_rate_shed: float | None = None
    """Share of requests shed by the server (HTTP 429 or 503)."""
    error_rate_client: float | None = None
    """Share of requests the server refused as malformed (other 3xx/4xx: the scenario asks wrongly)."""
    error_rate_server: float | None = None
    """Share of requests that met another server error (other HTTP errors, e.g. 500, 502, 504)."""
    failures: str = ""
    """The failures by kind and HTTP status, most frequent first: ``"http 503: 850; timeout: 12"``."""
    chance_accuracy: float | None = None
    """Classification: what always answering the most frequent label would score here (at least 1/classes)."""


@dataclass(frozen=True)
class Summary:
    """Everything ``summary.json`` says about a run: headline numbers, the knees, counts and assumptions."""

    analysis_version: str
    """Version of this analysis."""
    scenario: str | None
    """Scenario name from run.json."""
    started_at: str | None
    """Run start (UTC, ISO 8601)."""
    truth_path: str
    """Where the labels came from."""
    task: str
    """classification, regression or text."""
    task_inferred: bool
    """True when the task was guessed from the labels."""
    level_kind: str
    """"stage" (the run's load stages) or "window" (fixed time windows)."""
    window_s: float | None
    """Window length when level_kind is "window"."""
    n_levels: int
    """Number of load levels."""
    metric: str
    """Quality metric used for degradation and the knee: "effective_accuracy" (over every request, a lost
    answer is wrong) or "accuracy" (among answered requests)."""
    tolerance: float
    """Drop (share) a level must exceed to count as degraded."""
    alpha: float
    """Family-wise error rate of the Holm-adjusted tests."""
    slo_latency_ms: float | None
    """Latency SLO used for goodput and the latency knee, if any."""
    baseline: LevelHeadline
    """The lowest-load level everything is compared with."""
    highest_load: LevelHeadline
    """The highest-load level."""
    max_throughput_rps: float
    """Best throughput over all levels."""
    max_goodput_rps: float
    """Best quality goodput over all levels."""
    quality_knee: Knee | None
    """Highest level before quality degrades (None for regression)."""
    latency_knee: Knee | None
    """Highest level before p95 latency exceeds the SLO (None without an SLO)."""
    degraded_levels: list[int]
    """Levels significantly worse than baseline by more than the tolerance."""
    counts: JoinSummary
    """Records, labels and what did not match."""
    n_records_without_level: int
    """Records sent outside every stage (e.g. during shutdown), left out of the levels."""
    assumptions: list[str] = field(default_factory=list)
    """Interpretations made along the way."""
    load_unit: str = "users"
    """Unit of the offered load of each level: "users" (closed model) or "req/s" (open model: the arrival rate)."""
    incomplete: bool = False
    """True when run.json says the run never ended (``ended_at: null``): the master died, or the run is still
    going. The figures then cover only the records written so far."""
    workers_left: list[dict[str, Any]] = field(default_factory=list)
    """Workers that left during the run, as run.json lists them: ``how`` (graceful or lost), ``rows_received``,
    ``locust_requests_reported``, ``unrecorded_estimate``."""
    records_written: int | None = None
    """Rows the master wrote, per run.json (the records read are ``counts.n_records``)."""
    locust_requests: int | None = None
    """Requests Locust counted, per run.json (None when the run did not end)."""
    unrecorded_estimate: int = 0
    """Estimated requests that were made but never recorded (lost workers' unshipped rows)."""
    warnings: list[str] = field(default_factory=list)
    """What makes the figures less than the whole run: printed first by ``report`` and shown atop report.html."""
    capacity: dict[str, Any] | None = None
    """A capacity search's outcome from run.json (``variable``, ``highest_passing``, ``lowest_failing``,
    ``levels`` tried as ``{value, passed}``) plus ``sentence``, the answer in words; None without a search."""
    headline: str = ""
    """Where quality breaks and why, in one sentence (see :func:`describe_quality`)."""
    quality_breaks_at: LevelHeadline | None = None
    """The first degraded level in load order; None when no level is."""
    quality_caveat: str | None = None
    """Why "no level degraded" is not "quality holds": a drop beyond the tolerance on too few samples to be
    significant, or a baseline without answers; None otherwise."""


@dataclass(frozen=True)
class RunAnalysis:
    """The full analysis of one run, as DataFrames for a notebook."""

    run: RunData
    """What was read."""
    joined: pd.DataFrame
    """Records with labels, scores and ``level``."""
    levels: pd.DataFrame
    """One row per level: every metric plus the comparison with the baseline."""
    degradation: pd.DataFrame
    """Comparison of each level with the baseline on the run's metric (see :func:`analysis.degradation_table`)."""
    summary: Summary
    """Headline numbers (``summary.json``)."""
    degradation_by_metric: dict[str, pd.DataFrame] = field(default_factory=dict)
    """The comparison on each metric ("effective_accuracy", "accuracy"); empty for regression."""


def _slo(info: Mapping[str, Any]) -> dict[str, Any]:
    scenario = info.get("scenario") or {}
    slo = scenario.get("slo") if isinstance(scenario, Mapping) else None
    return dict(slo) if isinstance(slo, Mapping) else {}


def _optional(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _headline(row: pd.Series) -> LevelHeadline:
    def get(name: str) -> float | None:
        return _optional(row[name]) if name in row.index else None

    return LevelHeadline(
        level=int(row["level"]),
        users=float(row["users"]),
        n=int(row["n"]),
        accuracy=_optional(row["accuracy"]),
        accuracy_low=_optional(row["accuracy_low"]),
        accuracy_high=_optional(row["accuracy_high"]),
        effective_accuracy=_optional(row["effective_accuracy"]),
        error_rate=_optional(row["error_rate"]),
        p95_ms=_optional(row["p95_ms"]),
        throughput_rps=float(row["throughput_rps"]),
        goodput_rps=float(row["goodput_rps"]),
        load=get("load") if "load" in row.index else float(row["users"]),
        target_rps=get("target_rps"),
        p95_sched_ms=get("p95_sched_ms"),
        p99_sched_ms=get("p99_sched_ms"),
        lag_p99_ms=get("lag_p99_ms"),
        late_share=get("late_share"),
        effective_accuracy_low=get("effective_accuracy_low"),
        effective_accuracy_high=get("effective_accuracy_high"),
        accuracy_drop=get("accuracy_drop"),
        answered_accuracy_drop=get("answered_accuracy_drop"),
        n_samples=_count(row["n_samples"]) if "n_samples" in row.index else None,
        coverage=get("coverage"),
        n_failed=_count(row["n_failed"]) if "n_failed" in row.index else None,
        wrong_rate=get("wrong_rate"),
        lost_rate=get("lost_rate"),
        error_rate_shed=get("error_rate_shed"),
        error_rate_client=get("error_rate_client"),
        error_rate_server=get("error_rate_server"),
        failures=str(row["failures"]) if "failures" in row.index and isinstance(row["failures"], str) else "",
        chance_accuracy=get("chance_accuracy"),
    )


def _count(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _capacity(info: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = info.get("capacity")
    if not isinstance(raw, Mapping):
        return None
    return {**raw, "sentence": describe_capacity(raw)}


def run_warnings(
    info: Mapping[str, Any], *, n_records: int, cut_off_bytes: int = 0
) -> tuple[bool, list[dict[str, Any]], int, list[str]]:
    """How complete a run is, from its run.json: the run never ended, lost workers, a count that disagrees.

    Returns
    -------
    incomplete : bool
        run.json has ``ended_at: null``.
    workers_left : list of dict
        run.json's ``workers_left``.
    unrecorded_estimate : int
        Requests lost workers made that were never recorded (run.json's estimates, summed).
    warnings : list of str
        One sentence per problem, for the console and the report.

    Examples
    --------
    >>> info = {"ended_at": None, "workers_left": [{"worker_index": 1, "how": "lost", "rows_received": 900,
    ...     "locust_requests_reported": 950, "unrecorded_estimate": 60}]}
    >>> incomplete, left, unrecorded, warnings = run_warnings(info, n_records=2000)
    >>> incomplete, unrecorded
    (True, 60)
    >>> import textwrap
    >>> print(textwrap.fill(warnings[1], 100))
    1 worker was lost without warning (worker 1): about 60 requests it made were never recorded
    (estimated from its last statistics report)
    """
    warnings: list[str] = []
    incomplete = "ended_at" in info and info["ended_at"] is None
    if incomplete:
        warnings.append(
            "the run did not finish: run.json has ended_at null (the master was killed, or the run is still going); "
            f"the figures cover only the {n_records} records written so far"
        )
    if cut_off_bytes:
        warnings.append(f"the last line of records.csv was cut off mid-write ({cut_off_bytes} bytes) and was left out")
    raw = info.get("workers_left")
    left = [dict(w) for w in raw if isinstance(w, Mapping)] if isinstance(raw, list) else []
    lost = [w for w in left if w.get("how") == "lost"]
    unrecorded = sum(_count(w.get("unrecorded_estimate")) or 0 for w in lost)
    if lost:
        names = ", ".join(f"worker {w.get('worker_index', '?')}" for w in lost)
        one = len(lost) == 1
        warnings.append(
            f"{len(lost)} worker{' was' if one else 's were'} lost without warning ({names}): "
            f"about {unrecorded} requests {'it' if one else 'they'} made were never recorded "
            f"(estimated from {'its last statistics report' if one else 'their last statistics reports'})"
        )
    locust_requests = _count(info.get("locust_requests"))
    if locust_requests is not None and locust_requests != n_records:
        more = locust_requests - n_records
        warnings.append(
            f"records.csv holds {n_records} records but Locust counted {locust_requests} requests "
            + (f"({more} not recorded)" if more > 0 else f"({-more} fewer than recorded)")
        )
    return incomplete, left, unrecorded, warnings


def describe_capacity(capacity: Mapping[str, Any] | None) -> str | None:
    """The answer of a capacity search in one sentence (None when the run was no search).

    Examples
    --------
    >>> describe_capacity({"variable": "users", "highest_passing": 4, "lowest_failing": 5,
    ...                    "levels": [{"value": 2, "passed": True}, {"value": 8, "passed": False}]})
    'highest users meeting every SLO: 4; 5 breaks'
    >>> describe_capacity({"variable": "rate", "highest_passing": None, "lowest_failing": 10.0, "levels": []})
    'highest rate meeting every SLO: none, the first level tried (10 req/s) already breaks one'
    >>> describe_capacity({"variable": "users", "highest_passing": 64, "lowest_failing": None, "levels": []})
    'highest users meeting every SLO: 64, the highest tried (none broke)'
    """
    if not isinstance(capacity, Mapping):
        return None
    variable = str(capacity.get("variable") or "load")
    unit = " req/s" if variable == "rate" else ""

    def value(v: Any) -> str:
        return f"{float(v):g}{unit}"

    best, worst = capacity.get("highest_passing"), capacity.get("lowest_failing")
    head = f"highest {variable} meeting every SLO: "
    if best is None and worst is None:
        return head + "not known (no level was judged)"
    if best is None:
        return head + f"none, the first level tried ({value(worst)}) already breaks one"
    if worst is None:
        return head + f"{value(best)}, the highest tried (none broke)"
    return head + f"{value(best)}; {value(worst)} breaks"


def _share(value: float) -> str:
    return "? %" if value != value else f"{100 * value:.1f} %"


def _number(row: Mapping[Any, Any], name: str) -> float:
    value = row.get(name, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def failure_shares(failures: str, n: float) -> str:
    """``"http 503: 850; timeout: 12"`` of ``n`` requests as shares: ``"http 503: 85.0 %; timeout: 1.2 %"``.

    Examples
    --------
    >>> failure_shares("http 503: 850; timeout: 12", 1000)
    'http 503: 85.0 %; timeout: 1.2 %'
    >>> failure_shares("", 10)
    ''
    """
    if not isinstance(failures, str) or not failures or not n:
        return ""
    parts = []
    for part in failures.split("; "):
        name, _, count = part.rpartition(": ")
        try:
            parts.append(f"{name}: {_share(int(count) / n)}")
        except ValueError:
            parts.append(part)
    return "; ".join(parts)


def _offered(row: Mapping[Any, Any], unit: str) -> str:
    load = _number(row, "load") if unit != "users" else _number(row, "users")
    if load != load:
        load = _number(row, "users")
    return f"{load:g} {unit}"


def _at(row: Mapping[Any, Any], unit: str) -> str:
    return f"{_offered(row, unit)} (level {int(row['level'])})"


def _drop(row: Mapping[Any, Any], base: Mapping[Any, Any], metric: str) -> float:
    """The drop of ``metric`` from the baseline to ``row``: paired per sample when known, else marginal."""
    paired = _number(row, "accuracy_drop" if metric == "effective_accuracy" else "answered_accuracy_drop")
    return paired if paired == paired else _number(base, metric) - _number(row, metric)


def _failed_clause(row: Mapping[Any, Any]) -> str:
    n_failed, n = _number(row, "n_failed"), _number(row, "n")
    if n_failed != n_failed:
        n_failed = _number(row, "error_rate") * n
    if not n_failed:
        return "no request failed"
    shares = failure_shares(str(row.get("failures") or ""), n)
    return f"{_share(n_failed / n)} of requests failed" + (f" ({shares})" if shares else "")


def _comparison(row: Mapping[Any, Any], base: Mapping[Any, Any], metric: str) -> str:
    drop = _drop(row, base, metric)
    pairs = _number(row, "vs_baseline_n_pairs")
    paired = _number(row, "accuracy_drop" if metric == "effective_accuracy" else "answered_accuracy_drop")
    how = f", paired on {pairs:.0f} samples" if paired == paired and pairs == pairs else ", not paired"
    return (
        f"{METRIC_WORDS.get(metric, metric)} {_share(_number(row, metric))} vs {_share(_number(base, metric))} "
        f"at baseline ({-100 * drop:+.1f} points{how})"
    )


def _cause(row: Mapping[Any, Any], base: Mapping[Any, Any], metric: str, tolerance: float) -> str:
    """Lost requests, wrong answers, or both: what the drop of a level is made of."""
    if metric != "effective_accuracy":
        return "wrong answers"
    drop = _drop(row, base, metric)
    base_accuracy = _number(base, "accuracy")
    base_accuracy = 1.0 if base_accuracy != base_accuracy else base_accuracy
    # the answers the extra failures cost, had they been answered as well as at the baseline
    lost = max(_number(row, "error_rate") - _number(base, "error_rate"), 0.0) * base_accuracy
    lost = 0.0 if lost != lost else lost
    wrong = drop - lost
    if wrong <= tolerance:
        return "lost requests (failed, never answered)"
    if lost <= tolerance:
        return "wrong answers"
    return "lost requests and wrong answers"


def _quality_caveat(ordered: pd.DataFrame, *, metric: str, tolerance: float, unit: str) -> str | None:
    """Why no degraded level does not mean quality held: no answer at the baseline, or a drop on too few samples."""
    base = ordered.iloc[0].to_dict()
    if _number(base, "n_ok") == 0:
        return f"the baseline, {_at(base, unit)}, answered no request: {_failed_clause(base)}"
    drops = []
    for row in ordered.iloc[1:].to_dict("records"):
        if bool(row.get("degraded", False)):
            continue
        drop = _drop(row, base, metric)
        pairs = _number(row, "vs_baseline_n_pairs")
        if drop == drop and drop > tolerance:
            on = (
                f"{pairs:.0f} paired samples: too few to be significant"
                if pairs == pairs and pairs > 0
                else "no sample shared with the baseline: not compared"
            )
            drops.append(f"{_at(row, unit)} fell {100 * drop:.1f} points ({on})")
        elif _number(row, "n_ok") == 0 and _number(row, "n") > 0:
            drops.append(f"{_at(row, unit)} answered no request: {_failed_clause(row)}")
        elif metric != "effective_accuracy":
            # among answered requests a shed request is not counted at all: say what was lost
            lost = _number(row, "error_rate") - _number(base, "error_rate")
            if lost == lost and lost > tolerance:
                drops.append(
                    f"{_at(row, unit)} lost {_share(lost)} more of its requests than the baseline "
                    f"({_failed_clause(row)}), which {METRIC_WORDS[metric]} does not count"
                )
    return "; ".join(drops) if drops else None


def describe_quality(
    levels: pd.DataFrame, *, metric: str = "effective_accuracy", tolerance: float = DEFAULT_TOLERANCE
) -> str:
    """The headline: the first level where quality breaks and why (lost requests or wrong answers), in one sentence.

    Parameters
    ----------
    levels : pandas.DataFrame
        ``RunAnalysis.levels``: the level table with ``degraded`` and the
        drops (``accuracy_drop``, ``answered_accuracy_drop``) merged in.
    metric : {"effective_accuracy", "accuracy"}
        The quality the verdict was taken on.
    tolerance : float
        The drop (a share) that counts.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 16.0], "n": [540, 1000], "n_ok": [540, 145],
    ...     "n_failed": [0, 855], "error_rate": [0.0, 0.855], "failures": ["", "http 503: 855"],
    ...     "accuracy": [0.931, 0.96], "effective_accuracy": [0.931, 0.145], "accuracy_drop": [0.0, 0.786],
    ...     "answered_accuracy_drop": [0.0, -0.03], "vs_baseline_n_pairs": [540, 540], "degraded": [False, True]})
    >>> print(describe_quality(levels))  # doctest: +NORMALIZE_WHITESPACE
    quality breaks at 16 users (level 1) through lost requests (failed, never answered): accuracy over every request
    14.5 % vs 93.1 % at baseline (-78.6 points, paired on 540 samples); 85.5 % of requests failed
    (http 503: 85.5 %); among answered requests accuracy 96.0 % vs 93.1 %
    >>> print(describe_quality(levels.assign(degraded=False, accuracy_drop=[0.0, 0.004], effective_accuracy=[0.931,
    ...     0.927], n_failed=[0, 0], error_rate=0.0, failures="", accuracy=[0.931, 0.927])))
    quality holds up to the highest load tested, 16 users (level 1): accuracy over every request 92.7 % vs 93.1 % at \
baseline (-0.4 points, paired on 540 samples); no request failed
    """
    ordered = load_order(levels)
    unit = load_unit(levels)
    base = ordered.iloc[0].to_dict()
    if _number(base, "n_ok") == 0:
        return f"quality cannot be judged: the baseline, {_at(base, unit)}, answered no request; {_failed_clause(base)}"
    degraded = ordered["degraded"].to_numpy(dtype=bool) if "degraded" in ordered.columns else np.zeros(len(ordered))
    bad = np.flatnonzero(degraded)
    row = ordered.iloc[int(bad[0]) if len(bad) else -1].to_dict()
    answered = ""
    if metric == "effective_accuracy":
        answered = (
            "; no request was answered"
            if _number(row, "n_ok") == 0
            else f"; among answered requests accuracy {_share(_number(row, 'accuracy'))} vs "
            f"{_share(_number(base, 'accuracy'))}"
        )
    details = f"{_comparison(row, base, metric)}; {_failed_clause(row)}"
    if len(bad):
        why = _cause(row, base, metric, tolerance)
        return f"quality breaks at {_at(row, unit)} through {why}: {details}{answered}"
    caveat = _quality_caveat(ordered, metric=metric, tolerance=tolerance, unit=unit)
    if caveat is not None:
        return f"no level is significantly worse than baseline, but {caveat}; at the highest load: {details}"
    return f"quality holds up to the highest load tested, {_at(row, unit)}: {details}"


def _protocol_hint(info: Mapping[str, Any]) -> str:
    """Which key of the scenario extracts the answer, for a warning that the answers look like chance."""
    scenario = info.get("scenario")
    protocol = scenario.get("protocol") if isinstance(scenario, Mapping) else None
    protocol = protocol if isinstance(protocol, Mapping) else {}
    kind = protocol.get("kind")
    if protocol.get("answer_regex"):
        return f"check the protocol's answer_regex ({protocol['answer_regex']!r}) that extracts the answer"
    if protocol.get("prediction"):
        return f"check the protocol's prediction: path ({protocol['prediction']!r}) that extracts the answer"
    named = f"the {kind} protocol's" if kind else "the protocol's"
    return f"check {named} prediction: path (or answer_regex) that extracts the answer, and the dataset's label_column"


def quality_warnings(
    levels: pd.DataFrame, *, info: Mapping[str, Any] | None = None, n_dataset: int | None = None, task: str = ""
) -> list[str]:
    """What makes the quality figures doubtful: levels that skipped samples, a baseline at chance, no answer at all.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 4.0], "n": [270, 540], "n_ok": [270, 540],
    ...     "n_samples": [270, 540], "covered": [False, True], "accuracy": [0.098, 0.1],
    ...     "accuracy_low": [0.07, 0.08], "chance_accuracy": [0.1, 0.1], "n_classes": [10, 10]})
    >>> for w in quality_warnings(levels, n_dataset=540, task="classification"):
    ...     print(w)
    level 0 (1 users) sent 270 of 540 samples (50 %): its comparison uses only the samples both levels sent
    baseline accuracy 9.8 % is at chance level (10.0 %) for 10 classes: check the protocol's prediction: path \
(or answer_regex) that extracts the answer, and the dataset's label_column
    """
    info = info or {}
    warnings: list[str] = []
    ordered = load_order(levels)
    unit = load_unit(levels)
    if "covered" in ordered.columns and "n_samples" in ordered.columns and n_dataset:
        short = ordered[~ordered["covered"].fillna(True).to_numpy(dtype=bool)].to_dict("records")
        if 0 < len(short) <= _COVERAGE_WARNINGS:
            warnings += [
                f"level {int(r['level'])} ({_offered(r, unit)}) sent {int(r['n_samples'])} of "
                f"{n_dataset} samples ({100 * int(r['n_samples']) / n_dataset:.0f} %): its comparison uses only the "
                "samples both levels sent"
                for r in short
            ]
        elif short:
            listed = ", ".join(
                f"level {int(r['level'])} {int(r['n_samples'])} ({100 * int(r['n_samples']) / n_dataset:.0f} %)"
                for r in short
            )
            warnings.append(
                f"{len(short)} levels did not send every one of the dataset's {n_dataset} samples ({listed}): "
                "each comparison uses only the samples both levels sent"
            )
    if "n_ok" in ordered.columns and not ordered["n_ok"].to_numpy(dtype=float).any():
        n = float(ordered["n"].sum())
        failures = _merge_failures(ordered["failures"]) if "failures" in ordered.columns else ""
        shares = failure_shares(failures, n)
        warnings.append(
            "no request of the run was answered"
            + (f" ({shares})" if shares else "")
            + ": accuracy among answered requests cannot be measured, and over every request it is 0"
        )
    base = ordered.iloc[0].to_dict()
    chance, accuracy, low = (_number(base, c) for c in ("chance_accuracy", "accuracy", "accuracy_low"))
    if task == "classification" and chance == chance and accuracy == accuracy:
        low = accuracy if low != low else low
        if low <= chance:
            classes = _number(base, "n_classes")
            where = "at" if accuracy <= chance else "not significantly above"
            warnings.append(
                f"baseline accuracy {_share(accuracy)} is {where} chance level ({_share(chance)})"
                + (f" for {classes:.0f} classes" if classes == classes and classes > 0 else "")
                + f": {_protocol_hint(info)}"
            )
    return warnings


def _merge_failures(column: pd.Series) -> str:
    """The ``failures`` texts of several levels summed into one, the most frequent first."""
    totals: dict[str, int] = {}
    for text in column:
        if not isinstance(text, str) or not text:
            continue
        for part in text.split("; "):
            name, _, count = part.rpartition(": ")
            if count.isdigit():
                totals[name] = totals.get(name, 0) + int(count)
    ordered = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return "; ".join(f"{name}: {count}" for name, count in ordered)


def _passes_warning(info: Mapping[str, Any], workers_left: list[dict[str, Any]]) -> str | None:
    """A lost worker's samples were never sent: a run of N passes is then not N complete passes."""
    scenario = info.get("scenario")
    dataset = scenario.get("dataset") if isinstance(scenario, Mapping) else None
    passes = dataset.get("passes") if isinstance(dataset, Mapping) else None
    lost = [w for w in workers_left if w.get("how") == "lost"]
    if not passes or not lost:
        return None
    names = ", ".join(f"worker {w.get('worker_index', '?')}" for w in lost)
    one = len(lost) == 1
    return (
        f"the scenario replays the dataset {passes} time{'s' if _count(passes) != 1 else ''} (dataset.passes: "
        f"{passes}), but {names} {'was' if one else 'were'} lost: the samples {'it' if one else 'they'} held were "
        "not sent, so the passes are not complete (see each level's coverage)"
    )


def summarize(
    levels: pd.DataFrame,
    counts: JoinSummary,
    *,
    info: Mapping[str, Any] | None = None,
    truth_path: str = "",
    level_kind: str = "stage",
    window_s: float | None = None,
    metric: str = "effective_accuracy",
    tolerance: float = DEFAULT_TOLERANCE,
    alpha: float = 0.05,
    slo_latency_ms: float | None = None,
    n_records_without_level: int = 0,
    cut_off_bytes: int = 0,
) -> Summary:
    """Headline numbers of a run from its level table (with the baseline comparison merged in).

    Parameters
    ----------
    levels : pandas.DataFrame
        ``RunAnalysis.levels``: :func:`analysis.level_table` plus the
        ``degraded`` column of :func:`analysis.degradation_table`.
    counts : JoinSummary
        From :func:`analysis.join_truth`.
    info : mapping or None
        ``run.json``.
    metric : {"effective_accuracy", "accuracy"}
        The quality the ``degraded`` column was taken on, for the headline.

    Returns
    -------
    Summary
        Its ``warnings`` add, to what :func:`run_warnings` finds, the levels
        that did not send every sample (:func:`quality_warnings`), a baseline
        at chance level, a run without any answer, and a lost worker in a
        run of ``dataset.passes``.
    """
    if levels.empty:
        raise AnalysisInputError("no load level has any records")
    info = info or {}
    ordered = load_order(levels)
    scenario = info.get("scenario") or {}
    assumptions = list(counts.assumptions)
    if counts.task_inferred:
        assumptions.append(f"task inferred from the labels: {counts.task}")
    if slo_latency_ms is None:
        assumptions.append("no latency SLO: goodput counts every correct answer")
    if counts.task == "regression":
        assumptions.append("regression: no accuracy, degradation or quality knee; goodput counts successful answers")
    if level_kind == "window":
        assumptions.append(f"no stages recorded: levels are {window_s:g} s time windows")
    assumptions.append("latency percentiles are over successful responses; errors are counted in error_rate")
    if counts.task != "regression":
        assumptions.append(
            "quality is judged over every request: a failed, timed-out or shed request is a lost answer, counted as "
            "wrong"
            if metric == "effective_accuracy"
            else "quality is judged among answered requests only: a failed or shed request is not counted"
        )
        assumptions.append(
            "each level is compared with the baseline per sample, on the samples both sent; accuracy intervals "
            "take the sample, not the request, as the unit"
        )
    unit = load_unit(levels)
    if unit == "req/s":
        assumptions.append("open model: the offered load of a level is its target arrival rate (req/s)")
    if "p95_sched_ms" in levels.columns:
        assumptions.append(
            "latency from the scheduled time (p*_sched_ms) adds the wait before the send to the latency "
            "(coordinated-omission corrected); an arrival sent more than 10 ms after it was due is late"
        )
    incomplete, workers_left, unrecorded, warnings = run_warnings(
        info, n_records=counts.n_records, cut_off_bytes=cut_off_bytes
    )
    passes = _passes_warning(info, workers_left)
    warnings += [passes] if passes else []
    warnings += quality_warnings(levels, info=info, n_dataset=counts.n_truth, task=counts.task)
    quality_caveat: str | None = None
    breaks_at: LevelHeadline | None = None
    if counts.task == "regression":
        quality_knee = None
        degraded: list[int] = []
        top = ordered.iloc[-1].to_dict()
        mae = [_number(r, "mae") for r in (ordered.iloc[0].to_dict(), top)]
        base_mae, top_mae = ("-" if v != v else f"{v:.4g}" for v in mae)
        headline = (
            f"regression: MAE {base_mae} at baseline, {top_mae} at the highest load, {_at(top, unit)}; "
            f"{_failed_clause(top)}"
        )
    else:
        quality_knee = find_knee(levels, degradation=levels)
        flags = ordered["degraded"].to_numpy(dtype=bool)
        degraded = [int(v) for v in ordered.loc[flags, "level"]]
        if flags.any():
            breaks_at = _headline(ordered.loc[flags].iloc[0])
        else:
            quality_caveat = _quality_caveat(ordered, metric=metric, tolerance=tolerance, unit=unit)
        headline = describe_quality(levels, metric=metric, tolerance=tolerance)
    return Summary(
        analysis_version=ANALYSIS_VERSION,
        scenario=scenario.get("name") if isinstance(scenario, Mapping) else None,
        started_at=info.get("started_at"),
        truth_path=truth_path,
        task=counts.task,
        task_inferred=counts.task_inferred,
        level_kind=level_kind,
        window_s=window_s if level_kind == "window" else None,
        n_levels=len(levels),
        metric=metric,
        tolerance=tolerance,
        alpha=alpha,
        slo_latency_ms=slo_latency_ms,
        baseline=_headline(ordered.iloc[0]),
        highest_load=_headline(ordered.iloc[-1]),
        max_throughput_rps=float(levels["throughput_rps"].max()),
        max_goodput_rps=float(levels["goodput_rps"].max()),
        quality_knee=quality_knee,
        # an open-model client waits from when its request was due: the corrected p95 is the latency it sees
        latency_knee=find_knee(
            levels,
            slo_latency_ms=slo_latency_ms,
            latency_column="p95_sched_ms" if "p95_sched_ms" in levels.columns else "p95_ms",
        ),
        degraded_levels=degraded,
        counts=counts,
        n_records_without_level=n_records_without_level,
        assumptions=assumptions,
        load_unit=unit,
        incomplete=incomplete,
        workers_left=workers_left,
        records_written=_count(info.get("records_written")),
        locust_requests=_count(info.get("locust_requests")),
        unrecorded_estimate=unrecorded,
        warnings=warnings,
        capacity=_capacity(info),
        headline=headline,
        quality_breaks_at=breaks_at,
        quality_caveat=quality_caveat,
    )


def analyse_run(
    run_dir: str | os.PathLike[str],
    *,
    truth: str | os.PathLike[str] | None = None,
    window_s: float = 10.0,
    task: str | None = None,
    metric: str = "effective_accuracy",
    tolerance: float | None = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    progress: bool | None = None,
) -> RunAnalysis:
    """Read, join, level and compare one run: the whole analysis behind ``report``.

    Parameters
    ----------
    run_dir : path-like
        Directory with ``records.csv`` and ``run.json``.
    truth : path-like or None
        Labels file; default: the scenario's dataset.
    window_s : float, default 10.0
        Time-window length when the run recorded no stages.
    task : str or None
        Override the scenario's task (else inferred from the labels).
    metric : {"effective_accuracy", "accuracy"}, default "effective_accuracy"
        Quality used for degradation, the knee and the headline: accuracy
        over every request (a failed, timed-out or shed request is a lost
        answer, counted as wrong), or among answered requests only. Both
        comparisons are computed either way: ``levels`` has
        ``accuracy_drop`` (over every request) and ``answered_accuracy_drop``.
    tolerance : float or None
        Allowed drop; default: the scenario's ``slo.tolerance``, else 0.01.
    alpha, confidence : float
        Test level and interval level.
    progress : bool or None
        Progress bars on stderr while reading records and computing levels.
        ``None`` shows them for records over 64 MiB when stderr is a terminal.

    Returns
    -------
    RunAnalysis
        Its ``levels`` is :func:`analysis.level_table` with the comparison
        on ``metric`` merged in as ``vs_baseline_<column>`` (``degraded``
        and ``consistency`` unprefixed, ``is_baseline``), plus
        ``accuracy_drop`` (baseline minus level, accuracy over every request,
        paired per sample: the mean over the samples both sent of each one's
        drop) with ``accuracy_drop_low``/``accuracy_drop_high``,
        ``marginal_accuracy_drop`` (the same unpaired, over all each level
        sent: context), ``answered_accuracy_drop`` (paired, among answered
        requests) with its bounds and ``answered_degraded``.
    """
    if metric not in METRICS:
        raise AnalysisInputError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if progress is None:
        progress = wants_progress(Path(run_dir) / "records.csv")
    run = load_run(run_dir, truth=truth, progress=progress)
    slo = _slo(run.info)
    slo_latency = _optional(slo.get("latency_ms"))
    if tolerance is None:
        configured = _optional(slo.get("tolerance"))
        tolerance = DEFAULT_TOLERANCE if configured is None else configured
    joined, counts = join_truth(run.records, run.truth, task=task or run.task)
    stages = run.info.get("stages") if isinstance(run.info.get("stages"), list) else None
    level, bounds = assign_levels(
        joined,
        stages=stages,
        window_s=window_s,
        t_start=_optional(run.info.get("t_start")),
        t_end=_optional(run.info.get("t_end")),
    )
    joined["level"] = level
    levels = level_table(
        joined,
        bounds,
        task=counts.task,
        slo_latency_ms=slo_latency,
        confidence=confidence,
        n_dataset=counts.n_truth,
        progress=progress,
    )
    tables: dict[str, pd.DataFrame] = {}
    if counts.task == "regression":
        degradation = pd.DataFrame({"level": levels["level"], "users": levels["users"]})
        degradation["degraded"] = False
    else:
        tables = {
            name: degradation_table(
                joined,  # records without a level are never compared; filtering them out would copy every column
                levels,
                metric=name,
                tolerance=tolerance,
                alpha=alpha,
                confidence=confidence,
            )
            for name in ("effective_accuracy", "accuracy")
        }
        degradation = tables[metric]
    merged = levels.merge(
        degradation.drop(columns=["users"]).rename(
            columns={c: f"vs_baseline_{c}" for c in degradation.columns if c not in ("level", "users", "baseline")}
        ),
        on="level",
        how="left",
    )
    merged = merged.rename(columns={"vs_baseline_degraded": "degraded", "vs_baseline_consistency": "consistency"})
    if "baseline" in merged.columns:
        merged = merged.rename(columns={"baseline": "is_baseline"})
    merged = merged.merge(_drop_columns(levels, tables), on="level", how="left")
    resources = read_resources(run_dir)
    if resources is not None and not resources.empty:  # what the load cost the served model, level by level
        merged = merged.merge(resources_by_level(resources, bounds), on="level", how="left")
        merged["correct_per_cpu_s"] = correct_per_cpu_second(merged)
    summary = summarize(
        merged,
        counts,
        info=run.info,
        truth_path=str(run.truth_path),
        level_kind=str(bounds["kind"].iloc[0]),
        window_s=window_s,
        metric=metric,
        tolerance=tolerance,
        alpha=alpha,
        slo_latency_ms=slo_latency,
        n_records_without_level=int(level.isna().sum()),
        cut_off_bytes=int(run.records.attrs.get("cut_off_bytes", 0)),
    )
    return RunAnalysis(
        run=run, joined=joined, levels=merged, degradation=degradation, summary=summary, degradation_by_metric=tables
    )


def _drop_columns(levels: pd.DataFrame, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``accuracy_drop`` and its kin per level: baseline minus level, so that a positive drop is a loss."""
    out = pd.DataFrame({"level": levels["level"].to_numpy()})
    for prefix, metric in (("", "effective_accuracy"), ("answered_", "accuracy")):
        table = tables.get(metric)
        if table is None:
            for suffix in ("", "_low", "_high"):
                out[f"{prefix}accuracy_drop{suffix}"] = np.nan
            if prefix:
                out["answered_degraded"] = False
            else:
                out["marginal_accuracy_drop"] = np.nan
            continue
        by_level = table.set_index("level")
        at = by_level.reindex(out["level"].to_numpy())
        # 0.0 - x, not -x: an unchanged level reads 0, never -0
        out[f"{prefix}accuracy_drop"] = 0.0 - at["diff"].to_numpy(dtype=float)
        out[f"{prefix}accuracy_drop_low"] = 0.0 - at["diff_high"].to_numpy(dtype=float)
        out[f"{prefix}accuracy_drop_high"] = 0.0 - at["diff_low"].to_numpy(dtype=float)
        if prefix:
            out["answered_degraded"] = at["degraded"].fillna(False).to_numpy(dtype=bool)
        else:
            out["marginal_accuracy_drop"] = 0.0 - at["marginal_diff"].to_numpy(dtype=float)
    return out


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_outputs(analysis: RunAnalysis, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``levels.csv`` and ``summary.json`` into ``out_dir`` (created if needed).

    Returns
    -------
    dict
        Output name to path.
    """
    out = output_dir(out_dir)
    paths = {"levels.csv": out / "levels.csv", "summary.json": out / "summary.json"}
    analysis.levels.to_csv(paths["levels.csv"], index=False)
    paths["summary.json"].write_text(json.dumps(_jsonable(analysis.summary), indent=2) + "\n", encoding="utf-8")
    return paths


def confusion_level(summary: Summary) -> tuple[LevelHeadline, str]:
    """The level the confusion matrix and the wrong answers show beside the baseline, and what it is.

    The first degraded level when there is one (where quality breaks is where its confusions matter), else the
    highest load.
    """
    if summary.quality_breaks_at is not None:
        return summary.quality_breaks_at, "first degraded level"
    return summary.highest_load, "highest load"


def describe_knee(name: str, knee: Knee | None, *, caveat: str | None = None) -> str:
    """One sentence about a knee, as printed by ``report`` and shown in ``report.html``.

    ``caveat`` (``Summary.quality_caveat``) is why no degraded level does not
    mean quality held: the sentence then never says "holds".

    Examples
    --------
    >>> describe_knee("quality knee", Knee(1, 4.0, 2, 8.0, "accuracy below baseline"))
    'quality knee: 4 users (level 1); fails from 8 users (level 2): accuracy below baseline'
    >>> describe_knee("latency knee", Knee(0, 8.0, 1, 8.0, "p95 too high", load=50.0, first_bad_load=80.0,
    ...                                    unit="req/s"))
    'latency knee: 50 req/s (level 0); fails from 80 req/s (level 1): p95 too high'
    >>> describe_knee("latency knee", None)
    'latency knee: not applicable'
    >>> describe_knee("quality knee", Knee(1, 8.0, None, None, "worse"), caveat="level 1 fell 40.0 points")
    'quality knee: none detected up to the highest load tested (8 users, level 1), but level 1 fell 40.0 points'
    """
    if knee is None:
        return f"{name}: not applicable"

    def load(value: float | None) -> str:
        return f"{value:g} {knee.unit}" if value is not None else f"? {knee.unit}"

    if knee.first_bad_level is None:
        where = f"({load(knee.load)}, level {knee.level})"
        if caveat:
            return f"{name}: none detected up to the highest load tested {where}, but {caveat}"
        return f"{name}: none, holds up to the highest load tested {where}"
    if knee.level is None:
        return f"{name}: already failing at the lowest load ({load(knee.first_bad_load)}, level {knee.first_bad_level})"
    return (
        f"{name}: {load(knee.load)} (level {knee.level}); fails from {load(knee.first_bad_load)} "
        f"(level {knee.first_bad_level}): {knee.criterion}"
    )


def _pct(value: float) -> str:
    return "    -" if value != value else f"{100 * value:5.1f}"


def format_levels(levels: pd.DataFrame, *, task: str = "classification") -> str:
    """The per-level table printed by ``report``: one line per level, in load order.

    ``all requests`` is the accuracy over every request (a failed, timed-out
    or shed request counts as a wrong answer) with its 95 % interval, which
    is what the verdict judges; ``answered`` is the accuracy among answered
    requests (model quality); ``failed%`` every failure and ``shed%`` the HTTP
    429/503 among them. The offered load is the users, or the target rate
    (``rate/s``) in an open-model run; ``req/s`` is what was achieved. With
    scheduled times (open model) the table adds p95 and p99 latency from the
    scheduled time, the p99 schedule lag and the share of late arrivals.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0], "users": [2.0], "n": [400], "throughput_rps": [40.0],
    ...     "accuracy": [0.95], "effective_accuracy": [0.855], "effective_accuracy_low": [0.817],
    ...     "effective_accuracy_high": [0.886], "error_rate": [0.1], "error_rate_shed": [0.08], "p95_ms": [61.25]})
    >>> print(format_levels(levels))
    level  users      n    req/s  all requests [95% CI]  answered  failed%  shed%   p95 ms
        0      2    400     40.0   85.5 [81.7, 88.6]         95.0     10.0    8.0     61.2
    >>> print(format_levels(levels.assign(load=[50.0], load_unit="req/s", p95_sched_ms=[900.0],
    ...     p99_sched_ms=[1200.0], lag_p99_ms=[1100.0], late_share=[0.25])))  # doctest: +NORMALIZE_WHITESPACE
    level rate/s      n    req/s  all requests [95% CI]  answered  failed%  shed%   p95 ms  p95 sch  p99 sch  lag p99
      late%
        0     50    400     40.0   85.5 [81.7, 88.6]         95.0     10.0    8.0     61.2    900.0   1200.0   1100.0
       25.0
    """
    ordered = load_order(levels)
    quality = "MAE" if task == "regression" else "all requests [95% CI]"
    rate = load_unit(levels) == "req/s"
    scheduled = "p95_sched_ms" in ordered.columns
    offered = ordered["load"] if rate else ordered["users"]
    extra = "  p95 sch  p99 sch  lag p99  late%" if scheduled else ""
    offered_head = "rate/s" if rate else " users"
    lines = [f"level {offered_head}      n    req/s  {quality:<21}  answered  failed%  shed%   p95 ms{extra}"]

    def ms(value: float) -> str:
        return "       -" if value != value else f"{value:8.1f}"

    def get(row: pd.Series, name: str) -> float:
        return float(row[name]) if name in row.index else float("nan")

    for (_, row), load in zip(ordered.iterrows(), offered, strict=True):
        if task == "regression":
            quality_cell = f"{row.get('mae', float('nan')):>21.4g}"
        else:
            low, high = get(row, "effective_accuracy_low"), get(row, "effective_accuracy_high")
            quality_cell = f"{_pct(get(row, 'effective_accuracy'))} [{_pct(low).strip()}, {_pct(high).strip()}]"
        flag = ""
        if bool(row.get("is_baseline", False)):
            flag = "  baseline"
        elif bool(row.get("degraded", False)):
            flag = "  DEGRADED"
        elif bool(row.get("vs_baseline_significantly_worse", False)):
            flag = "  worse (within tolerance)"
        sched = ""
        if scheduled:
            sched = (
                f" {ms(row['p95_sched_ms'])} {ms(row['p99_sched_ms'])} {ms(row['lag_p99_ms'])} "
                f"{_pct(row['late_share']):>6}"
            )
        offered_cell = format(load, "5g" if rate else "5.0f")
        lines.append(
            f"{int(row['level']):5d}  {offered_cell}  {int(row['n']):5d}  {row['throughput_rps']:7.1f}  "
            f"{quality_cell:<21}  {_pct(get(row, 'accuracy')):>8}  {_pct(get(row, 'error_rate')):>7} "
            f"{_pct(get(row, 'error_rate_shed')):>6} {ms(get(row, 'p95_ms'))}{sched}{flag}"
        )
    return "\n".join(lines)
