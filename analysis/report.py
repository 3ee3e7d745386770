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

from analysis.degradation import METRICS, Knee, degradation_table, find_knee, load_order, load_unit
from analysis.errors import AnalysisInputError
from analysis.io import RunData, load_run, output_dir, wants_progress
from analysis.join import JoinSummary, join_truth
from analysis.levels import assign_levels
from analysis.metrics import level_table
from analysis.resources import correct_per_cpu_second, read_resources, resources_by_level

__all__ = [
    "LevelHeadline",
    "RunAnalysis",
    "Summary",
    "analyse_run",
    "describe_capacity",
    "describe_knee",
    "format_levels",
    "run_warnings",
    "summarize",
    "write_outputs",
]

ANALYSIS_VERSION = "0.1.0"
DEFAULT_TOLERANCE = 0.01


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
    """Accuracy among successful responses."""
    accuracy_low: float | None
    """Lower bound of its Wilson interval."""
    accuracy_high: float | None
    """Upper bound of its Wilson interval."""
    effective_accuracy: float | None
    """Accuracy with errors counted as wrong."""
    error_rate: float | None
    """Share of requests that failed (transport or format)."""
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
    """Quality metric used for degradation and the knee."""
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
    """Comparison of each level with the baseline (see :func:`analysis.degradation_table`)."""
    summary: Summary
    """Headline numbers (``summary.json``)."""


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


def summarize(
    levels: pd.DataFrame,
    counts: JoinSummary,
    *,
    info: Mapping[str, Any] | None = None,
    truth_path: str = "",
    level_kind: str = "stage",
    window_s: float | None = None,
    metric: str = "accuracy",
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

    Returns
    -------
    Summary
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
    if counts.task == "regression":
        quality_knee = None
        degraded: list[int] = []
    else:
        quality_knee = find_knee(levels, degradation=levels)
        degraded = [int(v) for v in ordered.loc[ordered["degraded"].to_numpy(dtype=bool), "level"]]
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
    )


def analyse_run(
    run_dir: str | os.PathLike[str],
    *,
    truth: str | os.PathLike[str] | None = None,
    window_s: float = 10.0,
    task: str | None = None,
    metric: str = "accuracy",
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
    metric : {"accuracy", "effective_accuracy"}
        Quality used for degradation and the knee.
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
        joined, bounds, task=counts.task, slo_latency_ms=slo_latency, confidence=confidence, progress=progress
    )
    if counts.task == "regression":
        degradation = pd.DataFrame({"level": levels["level"], "users": levels["users"]})
        degradation["degraded"] = False
    else:
        degradation = degradation_table(
            joined,  # records without a level are never compared; filtering them out here would copy every column
            levels,
            metric=metric,
            tolerance=tolerance,
            alpha=alpha,
            confidence=confidence,
        )
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
    return RunAnalysis(run=run, joined=joined, levels=merged, degradation=degradation, summary=summary)


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


def describe_knee(name: str, knee: Knee | None) -> str:
    """One sentence about a knee, as printed by ``report`` and shown in ``report.html``.

    Examples
    --------
    >>> describe_knee("quality knee", Knee(1, 4.0, 2, 8.0, "accuracy below baseline"))
    'quality knee: 4 users (level 1); fails from 8 users (level 2): accuracy below baseline'
    >>> describe_knee("latency knee", Knee(0, 8.0, 1, 8.0, "p95 too high", load=50.0, first_bad_load=80.0,
    ...                                    unit="req/s"))
    'latency knee: 50 req/s (level 0); fails from 80 req/s (level 1): p95 too high'
    >>> describe_knee("latency knee", None)
    'latency knee: not applicable'
    """
    if knee is None:
        return f"{name}: not applicable"

    def load(value: float | None) -> str:
        return f"{value:g} {knee.unit}" if value is not None else f"? {knee.unit}"

    if knee.first_bad_level is None:
        return f"{name}: none, holds up to the highest load tested ({load(knee.load)}, level {knee.level})"
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

    The offered load is the users, or the target rate (``rate/s``) in an
    open-model run; ``req/s`` is what was achieved. With scheduled times
    (open model) the table adds p95 and p99 latency from the scheduled time,
    the p99 schedule lag and the share of late arrivals.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0], "users": [2.0], "n": [400], "throughput_rps": [40.0],
    ...     "accuracy": [0.95], "accuracy_low": [0.925], "accuracy_high": [0.967], "effective_accuracy": [0.95],
    ...     "error_rate": [0.0], "p95_ms": [61.25]})
    >>> print(format_levels(levels))
    level  users      n    req/s  accuracy [95% CI]      eff.acc  error%   p95 ms
        0      2    400     40.0   95.0 [92.5, 96.7]        95.0     0.0     61.2
    >>> print(format_levels(levels.assign(load=[50.0], load_unit="req/s", p95_sched_ms=[900.0],
    ...     p99_sched_ms=[1200.0], lag_p99_ms=[1100.0], late_share=[0.25])))
    level rate/s      n    req/s  accuracy [95% CI]      eff.acc  error%   p95 ms  p95 sch  p99 sch  lag p99  late%
        0     50    400     40.0   95.0 [92.5, 96.7]        95.0     0.0     61.2    900.0   1200.0   1100.0   25.0
    """
    ordered = load_order(levels)
    quality = "MAE" if task == "regression" else "accuracy [95% CI]"
    rate = load_unit(levels) == "req/s"
    scheduled = "p95_sched_ms" in ordered.columns
    offered = ordered["load"] if rate else ordered["users"]
    extra = "  p95 sch  p99 sch  lag p99  late%" if scheduled else ""
    lines = [f"level {'rate/s' if rate else ' users'}      n    req/s  {quality:<21}  eff.acc  error%   p95 ms{extra}"]

    def ms(value: float) -> str:
        return "       -" if value != value else f"{value:8.1f}"

    for (_, row), load in zip(ordered.iterrows(), offered, strict=True):
        if task == "regression":
            quality_cell = f"{row.get('mae', float('nan')):>21.4g}"
        else:
            quality_cell = (
                f"{_pct(row['accuracy'])} [{_pct(row['accuracy_low']).strip()}, {_pct(row['accuracy_high']).strip()}]"
            )
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
            f"{quality_cell:<21}  {_pct(row['effective_accuracy']):>7}  {_pct(row['error_rate']):>6} "
            f"{ms(row['p95_ms'])}{sched}{flag}"
        )
    return "\n".join(lines)
