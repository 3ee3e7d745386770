"""Run the whole analysis of one run directory and write ``levels.csv`` and ``summary.json``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadgrade.analysis.degradation import (
    METRICS,
    Knee,
    answer_drift,
    degradation_table,
    find_knee,
    load_order,
    load_unit,
)
from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.io import Progress, RunData, load_run, output_dir, wants_progress
from loadgrade.analysis.join import JoinSummary, join_truth
from loadgrade.analysis.levels import assign_levels
from loadgrade.analysis.metrics import CUT_SHORT_REASONS, FINISH_REASONS, level_table
from loadgrade.analysis.resources import correct_per_cpu_second, read_resources, resources_by_level
from loadgrade.analysis.rules import CAPACITY_METRICS, Rule, check_rules, parse_rule

__all__ = [
    "LLMSummary",
    "LevelHeadline",
    "LevelLLM",
    "RunAnalysis",
    "Summary",
    "analyse_run",
    "confusion_level",
    "describe_capacity",
    "describe_knee",
    "describe_quality",
    "describe_run",
    "failure_shares",
    "format_levels",
    "format_limit",
    "format_measure",
    "quality_warnings",
    "rule_breaks",
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
class LevelLLM:
    """The LLM figures of one level: token latencies of streamed replies (ms), tokens, cut-short replies."""

    p50_ttft_ms: float | None
    """Median time to first token of successful streamed replies."""
    p95_ttft_ms: float | None
    """95th percentile time to first token."""
    p99_ttft_ms: float | None
    """99th percentile time to first token."""
    p50_tpot_ms: float | None
    """Median time per output token after the first."""
    p95_tpot_ms: float | None
    """95th percentile time per output token."""
    p99_tpot_ms: float | None
    """99th percentile time per output token."""
    p95_itl_ms: float | None
    """95th percentile of each reply's mean inter-token gap."""
    max_itl_ms: float | None
    """The longest gap between two tokens of any successful reply."""
    output_tokens_per_s: float | None
    """Output tokens of the successful replies per second."""
    token_goodput_tps: float | None
    """Output tokens of the correct answers within every SLO limit, per second."""
    mean_output_tokens: float | None
    """Mean completion length of a successful reply, in tokens."""
    n_cut_short: int
    """Replies cut short: lost answers, neither wrong answers nor transport failures."""
    cut_short_rate: float | None
    """Their share of the level's requests."""
    cut_short: dict[str, int]
    """The cut-short replies by reason (``empty``, ``length``, ``no_end``)."""
    finish_reasons: dict[str, int]
    """Every request by ``finish_reason``: ``stop``, ``length``, ``other``, ``none`` (none recorded)."""


@dataclass(frozen=True)
class LLMSummary:
    """The LLM figures of a whole run (``summary.json``'s ``llm``), beside each headline level's ``llm``."""

    streamed: bool
    """Whether any reply was streamed (has a time to first token)."""
    slo_ttft_ms: float | None
    """Time-to-first-token limit goodput requires, if any."""
    slo_tpot_ms: float | None
    """Time-per-output-token limit goodput requires, if any."""
    p95_ttft_ms_baseline: float | None
    """95th percentile TTFT at the baseline."""
    p95_ttft_ms_breaks_at: float | None
    """The same where quality breaks (the first degraded level); None when no level is."""
    p95_ttft_ms_highest_load: float | None
    """The same at the highest load."""
    p95_tpot_ms_baseline: float | None
    """95th percentile TPOT at the baseline."""
    p95_tpot_ms_breaks_at: float | None
    """The same where quality breaks."""
    p95_tpot_ms_highest_load: float | None
    """The same at the highest load."""
    max_output_tokens_per_s: float | None
    """Best output tokens per second over all levels."""
    max_token_goodput_tps: float | None
    """Best token goodput over all levels."""
    n_output_tokens: int
    """Output tokens of every successful reply of the levels."""
    n_cut_short: int
    """Replies cut short over the levels."""
    cut_short: dict[str, int]
    """Those by reason (``empty``, ``length``, ``no_end``; ``other`` for a reason not known)."""
    finish_reasons: dict[str, int]
    """Every request of the levels by ``finish_reason`` (``stop``, ``length``, ``other``, ``none``)."""


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
    llm: LevelLLM | None = None
    """LLM runs: token latencies, output tokens per second, token goodput, cut-short replies; None otherwise."""


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
    """Where quality breaks and why, and the worst failures, in one sentence (see :func:`describe_quality`)."""
    quality_breaks_at: LevelHeadline | None = None
    """The first degraded level in load order; None when no level is."""
    quality_caveat: str | None = None
    """Why "no level degraded" is not "quality holds": a drop beyond the tolerance on too few samples to be
    significant, or a baseline without answers; None otherwise."""
    most_failures_at: LevelHeadline | None = None
    """The level where the largest share of requests failed; None when no request failed."""
    tested: dict[str, str] = field(default_factory=dict)
    """What was tested, label to text (run, scenario, endpoint, protocol, dataset, load, load generator, started,
    duration, versions): the header of report.html (see :func:`describe_run`)."""
    llm: LLMSummary | None = None
    """LLM runs (records with token figures, a ``finish_reason`` or reply text): the run's LLM figures."""


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
        llm=_level_llm(row),
    )


def _level_llm(row: pd.Series) -> LevelLLM | None:
    """The LLM figures of a level row; None for a level table without them."""
    if "output_tokens_per_s" not in row.index:
        return None

    def get(name: str) -> float | None:
        return _optional(row[name]) if name in row.index else None

    def count(name: str) -> int:
        return _count(row[name]) or 0 if name in row.index else 0

    return LevelLLM(
        p50_ttft_ms=get("p50_ttft_ms"),
        p95_ttft_ms=get("p95_ttft_ms"),
        p99_ttft_ms=get("p99_ttft_ms"),
        p50_tpot_ms=get("p50_tpot_ms"),
        p95_tpot_ms=get("p95_tpot_ms"),
        p99_tpot_ms=get("p99_tpot_ms"),
        p95_itl_ms=get("p95_itl_ms"),
        max_itl_ms=get("max_itl_ms"),
        output_tokens_per_s=get("output_tokens_per_s"),
        token_goodput_tps=get("token_goodput_tps"),
        mean_output_tokens=get("mean_output_tokens"),
        n_cut_short=count("n_cut_short"),
        cut_short_rate=get("error_rate_cut_short"),
        cut_short={reason: count(f"n_cut_short_{reason}") for reason in CUT_SHORT_REASONS},
        finish_reasons={reason: count(f"n_finish_{reason}") for reason in FINISH_REASONS},
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seconds(value: float) -> str:
    """``12 s``, ``4 min 10 s``, ``1 h 02 min``."""
    if value < 120:
        return f"{value:.1f}".removesuffix(".0") + " s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _endpoint(scenario: Mapping[str, Any], info: Mapping[str, Any]) -> str | None:
    endpoint = _mapping(scenario.get("endpoint"))
    base = endpoint.get("base_url")
    url = info.get("endpoint_url")
    if not url and not base:
        return None
    details = []
    if not url:  # run.json before endpoint_url: the path is the scenario's, else the preset's own
        path = endpoint.get("path")
        kind = _mapping(scenario.get("protocol")).get("kind")
        url = f"{base}{path}" if path else base
        details += [] if path else [f"path: the {kind or 'protocol'} preset's default"]
    text = f"{endpoint.get('method') or 'POST'} {url}"
    if endpoint.get("timeout_s") is not None:
        details.append(f"time-out {float(endpoint['timeout_s']):g} s")
    headers = _mapping(endpoint.get("headers"))
    if headers:
        details.append("headers " + ", ".join(str(h) for h in headers))  # names only: values may be credentials
    if endpoint.get("verify_tls") is False:
        details.append("TLS not verified")
    return text + (f" ({'; '.join(details)})" if details else "")


def _protocol(scenario: Mapping[str, Any]) -> str | None:
    protocol = _mapping(scenario.get("protocol"))
    kind = protocol.get("kind")
    if not kind:
        return None
    model = protocol.get("model") or protocol.get("model_name")
    version = protocol.get("version") or protocol.get("model_version")
    if not model:
        return str(kind)
    return f"{kind}, model {model}" + (f" version {version}" if version else "")


def _dataset(scenario: Mapping[str, Any], n_samples: int | None) -> str | None:
    dataset = _mapping(scenario.get("dataset"))
    path = dataset.get("path")
    if not path:
        return None
    parts = [f"{n_samples} labelled samples"] if n_samples else []
    order = dataset.get("order")
    if order:
        parts.append(
            f"{order} order" + (f" (seed {dataset['seed']})" if order == "shuffle" and "seed" in dataset else "")
        )
    passes = dataset.get("passes")
    parts.append(
        f"at most {passes} pass{'es' if passes != 1 else ''} per stage" if passes else "replayed until each stage ends"
    )
    return f"{Path(str(path)).name}: " + ", ".join(parts)


def _stages_text(values: list[float], unit: str, durations: list[float]) -> str:
    """``2 → 4 → 8 users, 12 s each``; a long list keeps its ends."""
    shown = [f"{v:g}" for v in values]
    if len(shown) > 8:
        shown = [*shown[:3], "…", *shown[-2:]]
    text = " → ".join(shown) + f" {unit}"
    durations = [d for d in durations if d == d]
    if durations and max(durations) - min(durations) <= 0.05 * max(durations) + 0.5:
        mean = sum(durations) / len(durations)
        each = f"{_seconds(round(mean) if mean >= 10 else mean)} each"
        text += f", {each}" if len(values) > 1 else f" for {_seconds(durations[0])}"
    if len(values) > 8:
        text += f" ({len(values)} stages)"
    return text


def _load(scenario: Mapping[str, Any], info: Mapping[str, Any], stage_rates: Sequence[float] | None) -> str | None:
    load = _mapping(scenario.get("load"))
    stages = [s for s in info.get("stages") or [] if isinstance(s, Mapping)]
    rates = [_optional(s.get("target_rps")) for s in stages]
    if stage_rates is not None and len(stage_rates) == len(stages) and not any(rates):
        rates = [_optional(r) for r in stage_rates]  # older run.json: the rates only in the records
    open_model = bool(rates) and all(r is not None for r in rates)
    kind = str(load.get("kind") or ("rate" if open_model else "users"))
    values = [
        float(r) if open_model and r is not None else float(s.get("target_users", s.get("users", math.nan)))
        for s, r in zip(stages, rates, strict=True)
    ]
    durations = [float(s.get("t_end") or math.nan) - float(s.get("t_start") or math.nan) for s in stages]
    if not values:
        return kind if load else None
    text = f"{kind} " + _stages_text(values, "req/s" if open_model else "users", durations)
    cap = load.get("max_users")
    if open_model and cap:
        text += f", at most {cap} users in flight"
    return text


def _generator(info: Mapping[str, Any]) -> str | None:
    workers = _count(info.get("worker_count"))
    listed = [w for w in info.get("workers") or [] if isinstance(w, Mapping) and not w.get("refused")]
    if workers == 1 and len(listed) == 1 and listed[0].get("client_id") == "local":
        return "1 standalone Locust process"
    if workers is None:
        return None
    return f"{workers} Locust worker{'s' if workers != 1 else ''}" if workers else "no Locust worker joined"


def _versions_text(info: Mapping[str, Any]) -> str:
    names = {"loadgrade": "loadgrade", "locust": "Locust", "python": "Python"}
    versions = [
        f"{names.get(key.removesuffix('_version'), key.removesuffix('_version'))} {value}"
        for key, value in info.items()
        if key.endswith("_version") and value
    ]
    return ", ".join([*versions, f"analysis {ANALYSIS_VERSION}"])


def describe_run(
    info: Mapping[str, Any],
    *,
    run_dir: str = "",
    n_samples: int | None = None,
    stage_rates: Sequence[float] | None = None,
) -> dict[str, str]:
    """What was tested, from ``run.json``: the header of ``report.html`` and ``Summary.tested``.

    Every value comes from run.json, whose scenario is redacted when it is
    written (a header value or a password in the URL never reaches it), and
    only header names are listed. Entries run.json does not hold are left out.

    Parameters
    ----------
    info : mapping
        ``run.json``.
    run_dir : str
        The run directory, as given.
    n_samples : int or None
        Labelled samples of the dataset.
    stage_rates : sequence of float or None
        Open model: each stage's target rate from the records, for a
        run.json whose stages do not name it.

    Returns
    -------
    dict of str to str
        Label to text, in the order a reader wants them: run, scenario,
        endpoint, protocol, dataset, load, load generator, started, duration,
        versions.

    Examples
    --------
    >>> info = {"loadgrade_version": "0.1.0", "locust_version": "2.47.0", "python_version": "3.11.7",
    ...     "scenario": {"name": "digits", "endpoint": {"base_url": "http://127.0.0.1:8000", "path": "/predict",
    ...     "method": "POST", "timeout_s": 5.0}, "protocol": {"kind": "flask-predict"},
    ...     "dataset": {"path": "/data/digits_test.csv", "order": "shuffle", "seed": 1}, "load": {"kind": "steps"}},
    ...     "worker_count": 2, "started_at": "2026-12-03T09:59:17.440280Z", "t_start": 0.0, "t_end": 24.1,
    ...     "stages": [{"target_users": 2, "t_start": 0.0, "t_end": 12.0}, {"target_users": 4, "t_start": 12.0,
    ...     "t_end": 24.1}]}
    >>> for label, text in describe_run(info, run_dir="runs/digits-1", n_samples=540).items():
    ...     print(f"{label}: {text}")
    run: digits-1
    scenario: digits
    endpoint: POST http://127.0.0.1:8000/predict (time-out 5 s)
    protocol: flask-predict
    dataset: digits_test.csv: 540 labelled samples, shuffle order (seed 1), replayed until each stage ends
    load: steps 2 → 4 users, 12 s each
    load generator: 2 Locust workers
    started: 2026-12-03 09:59:17 UTC
    duration: 24.1 s
    versions: loadgrade 0.1.0, Locust 2.47.0, Python 3.11.7, analysis 0.1.0
    """
    scenario = _mapping(info.get("scenario"))
    tested: dict[str, str | None] = {}
    name = Path(run_dir).name if run_dir else ""
    run_id = info.get("run_id")
    tested["run"] = (name + (f" (id {run_id})" if run_id else "")) or (str(run_id) if run_id else None)
    if scenario.get("name"):
        description = scenario.get("description")
        tested["scenario"] = str(scenario["name"]) + (f": {description}" if description else "")
    tested["scenario file"] = str(info["scenario_path"]) if info.get("scenario_path") else None
    tested["endpoint"] = _endpoint(scenario, info)
    tested["protocol"] = _protocol(scenario)
    tested["dataset"] = _dataset(scenario, n_samples)
    tested["load"] = _load(scenario, info, stage_rates)
    tested["load generator"] = _generator(info)
    started = info.get("started_at")
    if isinstance(started, str) and started:
        tested["started"] = started.replace("T", " ").split(".")[0].removesuffix("Z") + " UTC"
    t_start, t_end = _optional(info.get("t_start")), _optional(info.get("t_end"))
    if t_start is not None and t_end is not None:
        tested["duration"] = _seconds(t_end - t_start)
    elif "ended_at" in info and info["ended_at"] is None:
        tested["duration"] = "unknown: the run did not end"
    tested["versions"] = _versions_text(info)
    return {label: text for label, text in tested.items() if text}


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


def _failure_counts(failures: Any, *, cut_short: bool = True) -> str:
    """``"http 503: 850; timeout: 12"`` as a person reads it: ``"HTTP 503 ×850, timeout ×12"``.

    ``cut_short=False`` leaves the cut-short replies out: what failed in transport or format alone.

    >>> _failure_counts("http 503: 850; timeout: 12; http: 2; cut_short: 3")
    'HTTP 503 ×850, timeout ×12, HTTP ×2, cut short ×3'
    >>> _failure_counts("cut_short: 3; timeout: 1", cut_short=False)
    'timeout ×1'
    """
    if not isinstance(failures, str) or not failures:
        return ""
    parts = []
    for part in failures.split("; "):
        name, _, count = part.rpartition(": ")
        if name == "cut_short" and not cut_short:
            continue
        name = "HTTP" + name[4:] if name == "http" or name.startswith("http ") else name
        name = "cut short" if name == "cut_short" else name
        parts.append(f"{name} ×{count}" if name and count.isdigit() else part)
    return ", ".join(parts)


#: How each reason a reply was cut short reads in a sentence.
_CUT_SHORT_WORDS = {"length": "finish_reason length", "empty": "empty", "no_end": "no end", "other": "other"}


def _n_cut(row: Mapping[Any, Any]) -> float:
    """Replies cut short at a level (0 for a table without them)."""
    n_cut = _number(row, "n_cut_short")
    if n_cut != n_cut:
        n_cut = _number(row, "error_rate_cut_short") * _number(row, "n")
    return 0.0 if n_cut != n_cut else n_cut


def _cut_reasons(row: Mapping[Any, Any]) -> str:
    """``"finish_reason length ×120, empty ×100, no end ×92"``: why a level's replies were cut short, most first.

    >>> _cut_reasons({"n_cut_short": 5, "n_cut_short_empty": 1, "n_cut_short_length": 3, "n_cut_short_no_end": 0})
    'finish_reason length ×3, empty ×1, other ×1'
    """
    counts = {reason: _number(row, f"n_cut_short_{reason}") for reason in CUT_SHORT_REASONS}
    known = {reason: count for reason, count in counts.items() if count == count}
    if not known:
        return ""
    other = _n_cut(row) - sum(known.values())
    if other > 0:
        known["other"] = other
    order = list(_CUT_SHORT_WORDS)
    ordered = sorted(((c, r) for r, c in known.items() if c > 0), key=lambda item: (-item[0], order.index(item[1])))
    return ", ".join(f"{_CUT_SHORT_WORDS[reason]} ×{count:.0f}" for count, reason in ordered)


def _failed_verb(row: Mapping[Any, Any]) -> str:
    """``failed``, ``were cut short``, or both: what happened to a level's requests without an answer."""
    n_cut = _n_cut(row)
    if not n_cut:
        return "failed"
    return "were cut short" if n_cut >= _n_failed(row) else "failed or were cut short"


def _load_words(value: float, unit: str) -> str:
    """``8 users``, ``1 user``, ``50 req/s``."""
    if value != value:
        return f"? {unit}"
    if unit == "users":
        return f"{value:g} user{'' if value == 1 else 's'}"
    return f"{value:g} {unit}"


def _load_of(row: Mapping[Any, Any], unit: str) -> float:
    load = _number(row, "load") if unit != "users" else _number(row, "users")
    return _number(row, "users") if load != load else load


def _offered(row: Mapping[Any, Any], unit: str) -> str:
    return _load_words(_load_of(row, unit), unit)


def _repeated_loads(levels: pd.DataFrame, unit: str) -> frozenset[float]:
    """Loads that more than one level offered (a step down and up again, time windows): there the load alone does
    not say which level is meant, so the level index is added."""
    column = "load" if unit != "users" and "load" in levels.columns else "users"
    counts = levels[column].round(9).value_counts()
    return frozenset(float(v) for v in counts[counts > 1].index)


def _at(row: Mapping[Any, Any], unit: str, repeated: frozenset[float] = frozenset()) -> str:
    """Where a level is, as a person reads it: its load (``8 users``), and its index only when the load repeats."""
    load = _load_of(row, unit)
    text = _load_words(load, unit)
    return f"{text} (level {int(row['level'])})" if round(load, 9) in repeated else text


def _drop(row: Mapping[Any, Any], base: Mapping[Any, Any], metric: str) -> float:
    """The drop of ``metric`` from the baseline to ``row``: paired per sample when known, else marginal."""
    paired = _number(row, "accuracy_drop" if metric == "effective_accuracy" else "answered_accuracy_drop")
    return paired if paired == paired else _number(base, metric) - _number(row, metric)


def _n_failed(row: Mapping[Any, Any]) -> float:
    n_failed = _number(row, "n_failed")
    return _number(row, "error_rate") * _number(row, "n") if n_failed != n_failed else n_failed


def _failed_clause(row: Mapping[Any, Any]) -> str:
    """``12.0 % of requests failed (HTTP 503 ×120)``; replies cut short are said apart, with their reasons."""
    n_failed, n = _n_failed(row), _number(row, "n")
    if not n_failed:
        return "no request failed"
    n_cut = _n_cut(row)
    kinds = _failure_counts(row.get("failures"), cut_short=not n_cut)
    parts = []
    if n_failed - n_cut > 0:
        parts.append(f"{_share((n_failed - n_cut) / n)} of requests failed" + (f" ({kinds})" if kinds else ""))
    if n_cut:
        reasons = _cut_reasons(row)
        of = "" if parts else " of requests"
        parts.append(f"{_share(n_cut / n)}{of} were cut short" + (f" ({reasons})" if reasons else ""))
    return ", ".join(parts)


def _change(row: Mapping[Any, Any], base: Mapping[Any, Any], metric: str, confidence: float) -> str:
    """``accuracy over every request 97.3 % → 83.0 % (-14.3 points [95 % CI -16.7, -12.0], paired on 540 samples)``."""
    prefix = "accuracy_drop" if metric == "effective_accuracy" else "answered_accuracy_drop"
    paired, low, high = (_number(row, f"{prefix}{suffix}") for suffix in ("", "_low", "_high"))
    pairs = _number(row, "vs_baseline_n_pairs")
    if paired == paired:
        interval = f" [{100 * confidence:g} % CI {_points(-high)}, {_points(-low)}]" if high == high else ""
        how = f"{interval}, paired on {pairs:.0f} samples" if pairs == pairs else interval
    else:
        how = ", not paired"
    drop = _drop(row, base, metric)
    return (
        f"{METRIC_WORDS.get(metric, metric)} {_share(_number(base, metric))} → {_share(_number(row, metric))} "
        f"({_points(-drop)} points{how})"
    )


def _points(share: float) -> str:
    """A change in percentage points with its sign, never ``-0.0``."""
    return f"{round(100 * share, 1) + 0.0:+.1f}"


#: The causes of a drop, in the order a sentence names them, and the part of a level each counts.
_CAUSES = {"failed requests": "failed", "cut-short replies": "cut_short", "wrong answers": "wrong"}


def _cause(row: Mapping[Any, Any], base: Mapping[Any, Any], metric: str, tolerance: float) -> str:
    """What the drop of a level is made of: failed requests, cut-short replies, wrong answers, or several (and
    which mostly)."""
    if metric != "effective_accuracy":
        return "wrong answers"
    drop = _drop(row, base, metric)
    base_accuracy = _number(base, "accuracy")
    base_accuracy = 1.0 if base_accuracy != base_accuracy else base_accuracy

    def share_lost(share: float, base_share: float) -> float:
        # the answers the extra losses cost, had they been answered as well as at the baseline
        lost = max(share - base_share, 0.0) * base_accuracy
        return 0.0 if lost != lost else lost

    cut, base_cut = (_n_cut(r) / _number(r, "n") if _number(r, "n") else 0.0 for r in (row, base))
    failed = share_lost(_number(row, "error_rate") - cut, _number(base, "error_rate") - base_cut)
    cut_short = share_lost(cut, base_cut)
    parts = dict(zip(_CAUSES, (failed, cut_short, drop - failed - cut_short), strict=True))
    significant = [name for name, part in parts.items() if part > tolerance]
    if not significant:
        # nothing beyond the tolerance: the larger of the losses (what the table shows most of)
        return "cut-short replies" if cut_short > failed else "failed requests"
    if len(significant) == 1:
        return significant[0]
    first, second = sorted(significant, key=lambda name: -parts[name])[:2]
    if parts[first] >= 2 * parts[second]:
        return f"mostly {first}"
    return " and ".join([", ".join(significant[:-1]), significant[-1]])


def _lead(why: str) -> str:
    """The part of a level (``failed``, ``cut_short``, ``wrong``) the cause names first.

    >>> _lead("mostly cut-short replies"), _lead("failed requests, cut-short replies and wrong answers")
    ('cut_short', 'failed')
    """
    first = why.removeprefix("mostly ").split(" and ")[0].split(", ")[0]
    return _CAUSES.get(first, "wrong")


def _composition(row: Mapping[Any, Any], base: Mapping[Any, Any], *, lead: str) -> str:
    """The requests of a level that got no right answer, by why: ``586 of 3437 requests answered wrongly (17.1 %,
    2.7 % at baseline), none failed``; replies cut short, when there are any, apart from the failed requests.
    ``lead`` (``failed``, ``cut_short`` or ``wrong``) is the part said first."""
    n = _number(row, "n")
    n_cut, base_cut = _n_cut(row), _n_cut(base)
    n_failed, base_failed = _n_failed(row) - n_cut, _n_failed(base) - base_cut
    n_wrong = _number(row, "n_wrong")
    wrong_rate, base_wrong = _number(row, "wrong_rate"), _number(base, "wrong_rate")
    if n_wrong != n_wrong and wrong_rate == wrong_rate:
        n_wrong = wrong_rate * n
    if wrong_rate != wrong_rate and n_wrong == n_wrong and n:
        wrong_rate = n_wrong / n
    kinds = _failure_counts(row.get("failures"), cut_short=not (n_cut or base_cut))
    parts: dict[str, tuple[str, str]] = {}  # part: (count, what happened to them)
    if n_failed:
        at_base = f", {_share(base_failed / _number(base, 'n'))} at baseline" if base_failed else ""
        parts["failed"] = (
            f"{n_failed:.0f}",
            f"failed ({_share(n_failed / n)}{at_base}" + (f": {kinds})" if kinds else ")"),
        )
    else:
        parts["failed"] = ("none", "failed")
    if n_cut:
        at_base = f", {_share(base_cut / _number(base, 'n'))} at baseline" if base_cut else ""
        reasons = _cut_reasons(row)
        parts["cut_short"] = (
            f"{n_cut:.0f}",
            f"cut short ({_share(n_cut / n)}{at_base}" + (f": {reasons})" if reasons else ")"),
        )
    if n_wrong == n_wrong and _number(row, "n_ok") != 0:  # nothing answered: nothing answered wrongly either
        at_base = f", {_share(base_wrong)} at baseline" if base_wrong == base_wrong else ""
        parts["wrong"] = (f"{n_wrong:.0f}", f"answered wrongly ({_share(wrong_rate)}{at_base})")
    order = [lead, *(part for part in ("failed", "cut_short", "wrong") if part != lead)]
    (count, what), *rest = [parts[part] for part in order if part in parts]
    if count == "none":
        head = f"no request {what}"
    elif count == f"{n:.0f}":
        head = f"all {count} requests {what}"
    else:
        head = f"{count} of {n:.0f} requests {what}"
    return ", ".join([head, *(f"{c} {w}" for c, w in rest)])


def _most_failed(ordered: pd.DataFrame) -> dict[str, Any] | None:
    """The level where the largest share of requests failed; None when no request did."""
    if "error_rate" not in ordered.columns:
        return None
    rates = ordered["error_rate"].to_numpy(dtype=float)
    if not np.nan_to_num(rates).any():
        return None
    return {str(k): v for k, v in ordered.iloc[int(np.nanargmax(rates))].to_dict().items()}


def _failures_at(row: Mapping[Any, Any], unit: str, repeated: frozenset[float]) -> str:
    """``72.5 % of requests failed at 16 users (HTTP 503 ×20327)``; ``were cut short`` for replies cut short."""
    kinds = _failure_counts(row.get("failures"))
    where = f"{_share(_number(row, 'error_rate'))} of requests {_failed_verb(row)} at {_at(row, unit, repeated)}"
    return where + (f" ({kinds})" if kinds else "")


def _quality_caveat(
    ordered: pd.DataFrame, *, metric: str, tolerance: float, unit: str, repeated: frozenset[float] = frozenset()
) -> str | None:
    """Why no degraded level does not mean quality held: no answer at the baseline, or a drop on too few samples."""
    base = ordered.iloc[0].to_dict()
    if _number(base, "n_ok") == 0:
        return f"the baseline, {_at(base, unit, repeated)}, answered no request: {_failed_clause(base)}"
    drops = []
    for row in ordered.iloc[1:].to_dict("records"):
        if bool(row.get("degraded", False)):
            continue
        drop = _drop(row, base, metric)
        pairs = _number(row, "vs_baseline_n_pairs")
        at = _at(row, unit, repeated)
        if drop == drop and drop > tolerance:
            on = (
                f"{pairs:.0f} paired samples: too few to be significant"
                if pairs == pairs and pairs > 0
                else "no sample shared with the baseline: not compared"
            )
            drops.append(f"at {at} {METRIC_WORDS.get(metric, metric)} fell {100 * drop:.1f} points ({on})")
        elif _number(row, "n_ok") == 0 and _number(row, "n") > 0:
            drops.append(f"at {at} no request was answered: {_failed_clause(row)}")
        elif metric != "effective_accuracy":
            # among answered requests a shed request is not counted at all: say what was lost
            lost = _number(row, "error_rate") - _number(base, "error_rate")
            if lost == lost and lost > tolerance:
                kinds = _failure_counts(row.get("failures"))
                drops.append(
                    f"at {at} {_share(lost)} more of the requests {_failed_verb(row)} than at the baseline"
                    + (f" ({kinds})" if kinds else "")
                    + f", which {METRIC_WORDS[metric]} does not count"
                )
    return "; ".join(drops) if drops else None


def describe_quality(
    levels: pd.DataFrame,
    *,
    metric: str = "effective_accuracy",
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = 0.95,
) -> str:
    """The headline: the first load where quality breaks and why, and the worst failures, in one sentence.

    Why is what the level's requests without a right answer are: wrong answers,
    or failed requests (by kind and HTTP status), and which of them made the
    drop. Loads are named in the run's unit (``8 users``, ``50 req/s``); a level
    index is added only where two levels offered the same load.

    Parameters
    ----------
    levels : pandas.DataFrame
        ``RunAnalysis.levels``: the level table with ``degraded`` and the
        drops (``accuracy_drop``, ``answered_accuracy_drop``, with their
        ``_low``/``_high`` bounds) merged in.
    metric : {"effective_accuracy", "accuracy"}
        The quality the verdict was taken on.
    tolerance : float
        The drop (a share) that counts.
    confidence : float, default 0.95
        Level of the drop's interval, for its label.

    Examples
    --------
    A server that sheds: quality breaks through failed requests, while the
    few answers it gives are as good as ever.

    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 16.0], "n": [540, 1000], "n_ok": [540, 145],
    ...     "n_failed": [0, 855], "n_wrong": [37, 6], "wrong_rate": [0.069, 0.006], "error_rate": [0.0, 0.855],
    ...     "failures": ["", "http 503: 855"], "accuracy": [0.931, 0.96], "effective_accuracy": [0.931, 0.145],
    ...     "accuracy_drop": [0.0, 0.786], "accuracy_drop_low": [0.0, 0.75], "accuracy_drop_high": [0.0, 0.82],
    ...     "answered_accuracy_drop": [0.0, -0.03], "vs_baseline_n_pairs": [540, 540], "degraded": [False, True]})
    >>> print(describe_quality(levels))  # doctest: +NORMALIZE_WHITESPACE
    quality breaks at 16 users: accuracy over every request 93.1 % → 14.5 % (-78.6 points [95 % CI -82.0, -75.0],
    paired on 540 samples), through failed requests: 855 of 1000 requests failed (85.5 %: HTTP 503 ×855),
    6 answered wrongly (0.6 %, 6.9 % at baseline); among answered requests 93.1 % → 96.0 %
    >>> print(describe_quality(levels.assign(degraded=False, accuracy_drop=[0.0, 0.004], effective_accuracy=[0.931,
    ...     0.927], n_failed=[0, 0], error_rate=0.0, failures="", accuracy=[0.931, 0.927], n_wrong=[37, 73],
    ...     wrong_rate=[0.069, 0.073], accuracy_drop_low=[0.0, -0.01], accuracy_drop_high=[0.0, 0.018])))
    ... # doctest: +NORMALIZE_WHITESPACE
    quality holds up to the highest load tested, 16 users: accuracy over every request 93.1 % → 92.7 % (-0.4 points
    [95 % CI -1.8, +1.0], paired on 540 samples); 73 of 1000 requests answered wrongly (7.3 %, 6.9 % at baseline),
    none failed
    """
    ordered = load_order(levels)
    unit = load_unit(levels)
    repeated = _repeated_loads(ordered, unit)
    base = ordered.iloc[0].to_dict()
    if _number(base, "n_ok") == 0:
        return (
            f"quality cannot be judged: the baseline, {_at(base, unit, repeated)}, answered no request; "
            f"{_failed_clause(base)}"
        )
    degraded = ordered["degraded"].to_numpy(dtype=bool) if "degraded" in ordered.columns else np.zeros(len(ordered))
    bad = np.flatnonzero(degraded)
    row = ordered.iloc[int(bad[0]) if len(bad) else -1].to_dict()
    at = _at(row, unit, repeated)
    answered = ""
    if metric == "effective_accuracy" and (_n_failed(row) or _n_failed(base)):
        answered = (
            "; no request was answered"
            if _number(row, "n_ok") == 0
            else f"; among answered requests {_share(_number(base, 'accuracy'))} → {_share(_number(row, 'accuracy'))}"
        )
    worst = _most_failed(ordered)
    elsewhere = (
        f"; {_failures_at(worst, unit, repeated)}"
        if worst is not None and int(worst["level"]) != int(row["level"])
        else ""
    )
    change = _change(row, base, metric, confidence)
    if len(bad):
        why = _cause(row, base, metric, tolerance)
        composition = _composition(row, base, lead=_lead(why))
        how = f"mostly through {why.removeprefix('mostly ')}" if why.startswith("mostly ") else f"through {why}"
        return f"quality breaks at {at}: {change}, {how}: {composition}{answered}{elsewhere}"
    composition = _composition(row, base, lead=_largest_part(row))
    caveat = _quality_caveat(ordered, metric=metric, tolerance=tolerance, unit=unit, repeated=repeated)
    if caveat is not None:
        return (
            f"no level is significantly worse than baseline, but {caveat}; at the highest load, {at}: {change}; "
            f"{composition}{elsewhere}"
        )
    return f"quality holds up to the highest load tested, {at}: {change}; {composition}{answered}{elsewhere}"


def _largest_part(row: Mapping[Any, Any]) -> str:
    """Which of a level's requests without a right answer are the most: ``failed``, ``cut_short`` or ``wrong``
    (wrong on a tie with failed, as a level with neither reads best)."""
    n_cut = _n_cut(row)
    n_failed, n_wrong = _n_failed(row) - n_cut, _number(row, "n_wrong")
    n_wrong = 0.0 if n_wrong != n_wrong else n_wrong
    if n_cut > n_wrong and n_cut > n_failed:
        return "cut_short"
    return "failed" if n_failed > n_wrong else "wrong"


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
    the level at 1 user sent 270 of 540 samples (50 %): its comparison uses only the samples both levels sent
    baseline accuracy 9.8 % is at chance level (10.0 %) for 10 classes: check the protocol's prediction: path \
(or answer_regex) that extracts the answer, and the dataset's label_column
    """
    info = info or {}
    warnings: list[str] = []
    ordered = load_order(levels)
    unit = load_unit(levels)
    repeated = _repeated_loads(ordered, unit)
    if "covered" in ordered.columns and "n_samples" in ordered.columns and n_dataset:
        short = ordered[~ordered["covered"].fillna(True).to_numpy(dtype=bool)].to_dict("records")
        if 0 < len(short) <= _COVERAGE_WARNINGS:
            warnings += [
                f"the level at {_at(r, unit, repeated)} sent {int(r['n_samples'])} of "
                f"{n_dataset} samples ({100 * int(r['n_samples']) / n_dataset:.0f} %): its comparison uses only the "
                "samples both levels sent"
                for r in short
            ]
        elif short:
            listed = ", ".join(
                f"{_at(r, unit, repeated)}: {int(r['n_samples'])} ({100 * int(r['n_samples']) / n_dataset:.0f} %)"
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
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    n_records_without_level: int = 0,
    cut_off_bytes: int = 0,
    confidence: float = 0.95,
    run_dir: str = "",
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
    slo_latency_ms, slo_ttft_ms, slo_tpot_ms : float or None
        The limits goodput was taken with (see :func:`analysis.level_table`).
    confidence : float, default 0.95
        Level of the intervals, for the headline's label.
    run_dir : str
        The run directory, for :func:`describe_run`.

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
    llm = "output_tokens_per_s" in levels.columns
    limits = [
        f"{name} ≤ {value:g} ms"
        for name, value in (("E2E", slo_latency_ms), ("TTFT", slo_ttft_ms), ("TPOT", slo_tpot_ms))
        if value is not None and (llm or name == "E2E")
    ]
    if not limits:
        assumptions.append("no latency SLO: goodput counts every correct answer")
    elif llm:
        assumptions.append(
            f"goodput counts the correct answers within {', '.join(limits)} (a reply not streamed is judged on its "
            "E2E latency for TTFT); token goodput counts their output tokens"
        )
    if llm:
        assumptions.append(
            "LLM replies: TTFT, TPOT and ITL percentiles are over successful streamed replies (ITL: each reply's mean "
            "gap; max_itl_ms the longest gap); output tokens/s counts the output tokens of successful replies"
        )
        assumptions.append(
            "a reply cut short (empty, stopped at max_tokens before its answer, or a stream without its end) is a "
            "lost answer: wrong over every request, not among the answered ones, and said apart from failed requests"
        )
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
            f"regression: MAE {base_mae} at baseline, {top_mae} at the highest load, "
            f"{_at(top, unit, _repeated_loads(ordered, unit))}; "
            f"{_failed_clause(top)}"
        )
    else:
        quality_knee = find_knee(levels, degradation=levels)
        flags = ordered["degraded"].to_numpy(dtype=bool)
        degraded = [int(v) for v in ordered.loc[flags, "level"]]
        if flags.any():
            breaks_at = _headline(ordered.loc[flags].iloc[0])
        else:
            quality_caveat = _quality_caveat(
                ordered, metric=metric, tolerance=tolerance, unit=unit, repeated=_repeated_loads(ordered, unit)
            )
        headline = describe_quality(levels, metric=metric, tolerance=tolerance, confidence=confidence)
    most_failed = _most_failed(ordered)
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
        most_failures_at=None if most_failed is None else _headline(pd.Series(most_failed)),
        tested=describe_run(
            info,
            run_dir=run_dir,
            n_samples=counts.n_truth,
            stage_rates=(
                levels.sort_values("level")["target_rps"].tolist()
                if unit == "req/s" and level_kind == "stage" and "target_rps" in levels.columns
                else None
            ),
        ),
        llm=_llm_summary(ordered, breaks_at, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms) if llm else None,
    )


def _llm_summary(
    ordered: pd.DataFrame,
    breaks_at: LevelHeadline | None,
    *,
    slo_ttft_ms: float | None,
    slo_tpot_ms: float | None,
) -> LLMSummary:
    """The run's LLM figures from its level table in load order (with the LLM columns)."""
    base, top = ordered.iloc[0], ordered.iloc[-1]
    breaking = ordered[ordered["level"] == breaks_at.level].iloc[0] if breaks_at is not None else None

    def at(row: pd.Series | None, name: str) -> float | None:
        return None if row is None or name not in row.index else _optional(row[name])

    def best(name: str) -> float | None:
        return _optional(ordered[name].max()) if name in ordered.columns else None

    def total(name: str) -> int:
        return int(ordered[name].fillna(0).sum()) if name in ordered.columns else 0

    cut_short = {reason: total(f"n_cut_short_{reason}") for reason in CUT_SHORT_REASONS}
    n_cut = total("n_cut_short")
    if n_cut > sum(cut_short.values()):
        cut_short["other"] = n_cut - sum(cut_short.values())
    return LLMSummary(
        streamed="p50_ttft_ms" in ordered.columns and bool(ordered["p50_ttft_ms"].notna().any()),
        slo_ttft_ms=slo_ttft_ms,
        slo_tpot_ms=slo_tpot_ms,
        p95_ttft_ms_baseline=at(base, "p95_ttft_ms"),
        p95_ttft_ms_breaks_at=at(breaking, "p95_ttft_ms"),
        p95_ttft_ms_highest_load=at(top, "p95_ttft_ms"),
        p95_tpot_ms_baseline=at(base, "p95_tpot_ms"),
        p95_tpot_ms_breaks_at=at(breaking, "p95_tpot_ms"),
        p95_tpot_ms_highest_load=at(top, "p95_tpot_ms"),
        max_output_tokens_per_s=best("output_tokens_per_s"),
        max_token_goodput_tps=best("token_goodput_tps"),
        n_output_tokens=total("n_output_tokens"),
        n_cut_short=n_cut,
        cut_short=cut_short,
        finish_reasons={reason: total(f"n_finish_{reason}") for reason in FINISH_REASONS},
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
    progress: bool | Progress | None = None,
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
    progress : bool, Progress or None
        Progress bars on stderr while reading records and computing levels.
        ``None`` shows them for records over 64 MiB when stderr is a terminal.
        A :class:`analysis.Progress` also prints a line as each step starts
        (reading, joining, levels, statistics), as ``report`` does.

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
        requests) with its bounds and ``answered_degraded``. For text answers
        (task text, or any scenario ``grading``) also ``answer_drift`` and
        ``n_drift_samples`` (:func:`analysis.degradation.answer_drift`).
    """
    if metric not in METRICS:
        raise AnalysisInputError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not isinstance(progress, Progress):
        bars = wants_progress(Path(run_dir) / "records.csv") if progress is None else progress
        progress = Progress(bars=bars, lines=False)
    progress.step("reading records.csv and the labels")
    run = load_run(run_dir, truth=truth, progress=progress.bars)
    slo = _slo(run.info)
    slo_latency = _optional(slo.get("latency_ms"))
    slo_ttft, slo_tpot = _optional(slo.get("ttft_ms")), _optional(slo.get("tpot_ms"))
    if tolerance is None:
        configured = _optional(slo.get("tolerance"))
        tolerance = DEFAULT_TOLERANCE if configured is None else configured
    progress.step(f"joining {len(run.records):,} records with {len(run.truth):,} labelled samples")
    joined, counts = join_truth(run.records, run.truth, task=task or run.task, grading=run.grading)
    stages = run.info.get("stages") if isinstance(run.info.get("stages"), list) else None
    level, bounds = assign_levels(
        joined,
        stages=stages,
        window_s=window_s,
        t_start=_optional(run.info.get("t_start")),
        t_end=_optional(run.info.get("t_end")),
    )
    joined["level"] = level
    kind = "load stages" if len(bounds) and bounds["kind"].iloc[0] == "stage" else "time windows"
    progress.step(f"levels: {len(bounds)} {kind}")
    levels = level_table(
        joined,
        bounds,
        task=counts.task,
        slo_latency_ms=slo_latency,
        slo_ttft_ms=slo_ttft,
        slo_tpot_ms=slo_tpot,
        confidence=confidence,
        n_dataset=counts.n_truth,
        graded=counts.grading is not None,
        progress=progress.bars,
    )
    progress.step("statistics: each level against the baseline, paired per sample")
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
    if counts.grading is not None or counts.task == "text":  # text answers: same prompt, a different answer?
        merged = merged.merge(answer_drift(joined, levels, normalise=counts.grading is None), on="level", how="left")
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
        slo_ttft_ms=slo_ttft,
        slo_tpot_ms=slo_tpot,
        n_records_without_level=int(level.isna().sum()),
        cut_off_bytes=int(run.records.attrs.get("cut_off_bytes", 0)),
        confidence=confidence,
        run_dir=str(run_dir),
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


def describe_knee(
    name: str, knee: Knee | None, *, caveat: str | None = None, levels: pd.DataFrame | None = None
) -> str:
    """One sentence about a knee, as printed by ``report`` and shown in ``report.html``.

    Loads are named in the run's unit; with ``levels`` (the level table) a
    level index is added where two levels offered the same load. ``caveat``
    (``Summary.quality_caveat``) is why no degraded level does not mean
    quality held: the sentence then never says "holds".

    Examples
    --------
    >>> describe_knee("quality knee", Knee(1, 4.0, 2, 8.0, "accuracy below baseline"))
    'quality knee: 4 users; fails from 8 users: accuracy below baseline'
    >>> describe_knee("latency knee", Knee(0, 8.0, 1, 8.0, "p95 too high", load=50.0, first_bad_load=80.0,
    ...                                    unit="req/s"))
    'latency knee: 50 req/s; fails from 80 req/s: p95 too high'
    >>> describe_knee("latency knee", None)
    'latency knee: not applicable'
    >>> describe_knee("quality knee", Knee(1, 8.0, None, None, "worse"), caveat="at 8 users it fell 40.0 points")
    'quality knee: none detected up to the highest load tested (8 users), but at 8 users it fell 40.0 points'
    >>> steps = pd.DataFrame({"level": [0, 1, 2], "users": [2.0, 8.0, 2.0]})
    >>> describe_knee("quality knee", Knee(0, 2.0, 1, 8.0, "worse"), levels=steps)
    'quality knee: 2 users (level 0); fails from 8 users: worse'
    """
    if knee is None:
        return f"{name}: not applicable"
    repeated = _repeated_loads(levels, knee.unit) if levels is not None else frozenset()

    def at(load: float | None, level: int | None) -> str:
        value = math.nan if load is None else float(load)
        text = _load_words(value, knee.unit)
        return f"{text} (level {level})" if level is not None and round(value, 9) in repeated else text

    if knee.first_bad_level is None:
        where = f"({at(knee.load, knee.level)})"
        if caveat:
            return f"{name}: none detected up to the highest load tested {where}, but {caveat}"
        return f"{name}: none, holds up to the highest load tested {where}"
    first_bad = at(knee.first_bad_load, knee.first_bad_level)
    if knee.level is None:
        return f"{name}: already failing at the lowest load ({first_bad})"
    return f"{name}: {at(knee.load, knee.level)}; fails from {first_bad}: {knee.criterion}"


# Rule metrics read as a share of requests (shown in %, as the tables show them), after the drops (in points).
_SHARE_WORDS = ("accuracy", "precision", "recall", "f1", "match", "consistency", "coverage", "rate", "share", "drift")
_CAPACITY_METRICS = CAPACITY_METRICS
_TOKEN_RATES = ("output_tokens_per_s", "token_goodput_tps")


def format_measure(metric: str, value: float) -> str:
    """A rule metric's value in the unit the tables use: a share in %, a drop in points, latency in ms, tokens.

    Examples
    --------
    >>> [format_measure(m, v) for m, v in [("accuracy_drop", 0.2561), ("shed_rate", 0.855), ("p95_ms", 33.62),
    ...     ("goodput", 461.5), ("mae", 0.01234), ("inflight_max", 7.0), ("p95_ms", float("nan"))]]
    ['25.6 points', '85.5 %', '33.6 ms', '461.5 req/s', '0.01234', '7 in flight', '–']
    >>> [format_measure(m, v) for m, v in [("p95_ttft_ms", 412.0), ("output_tokens_per_s", 1520.4),
    ...     ("token_goodput_tps", 980.0), ("cut_short_rate", 0.012), ("mean_output_tokens", 41.25)]]
    ['412.0 ms', '1520.4 tok/s', '980.0 tok/s', '1.2 %', '41.2 tokens']
    """
    if value != value:
        return "–"
    if metric.endswith("_drop"):
        return f"{100 * value:.1f} points"
    if metric.endswith("_ms"):
        return f"{value:.1f} ms"
    if metric in _TOKEN_RATES:
        return f"{value:.1f} tok/s"
    if metric.endswith("_output_tokens"):
        return f"{value:.1f} tokens"
    if metric in _CAPACITY_METRICS:
        return f"{value:.1f} req/s"
    if metric.startswith("inflight"):
        return f"{value:.3g} in flight"
    if any(word in metric for word in _SHARE_WORDS):
        return f"{100 * value:.1f} %"
    return f"{value:.4g}"


def format_limit(rule: Rule) -> str:
    """A rule's bound in the same unit: ``≤ 1.0 points``, ``≥ 90.0 %``, ``≤ 200.0 ms``.

    >>> from loadgrade.analysis.rules import parse_rule
    >>> format_limit(parse_rule("accuracy_drop<=0.01")), format_limit(parse_rule("accuracy>=90%@users>=8"))
    ('≤ 1.0 points', '≥ 90.0 % at users ≥ 8')
    """
    signs = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}
    text = f"{signs[rule.op]} {format_measure(rule.metric, rule.threshold)}"
    if rule.where_field is not None and rule.where_op is not None and rule.where_value is not None:
        text += f" at {rule.where_field} {signs[rule.where_op]} {rule.where_value:g}"
    return text


def rule_breaks(levels: pd.DataFrame, rules: Sequence[str | Rule]) -> list[str]:
    """Where each rule first breaks, in load order, as a person reads it: ``8 users``; ``""`` when it holds.

    A bound on a capacity (``goodput>=100``) is measured at the best level, so
    a failing one breaks nowhere in particular: ``"no level reaches it"``.
    Each rule is judged by :func:`analysis.check_rules` on the levels up to
    each one in turn (they always include the baseline), so the first failing
    prefix ends at the level that breaks it, as ``loadgrade``'s own gate says.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1, 2], "users": [2.0, 8.0, 16.0],
    ...     "effective_accuracy": [0.95, 0.80, 0.2], "p95_ms": [40.0, 90.0, 300.0], "goodput_rps": [30.0, 50.0, 8.0]})
    >>> rule_breaks(levels, ["accuracy_drop<=0.01", "p95_ms<=200", "p95_ms<=500", "goodput>=80"])
    ['8 users', '16 users', '', 'no level reaches it']
    """
    parsed = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
    ordered = load_order(levels)
    unit = load_unit(levels)
    repeated = _repeated_loads(ordered, unit)
    verdicts = check_rules(ordered, parsed)
    out = []
    for rule, passed in zip(parsed, verdicts["passed"].to_numpy(dtype=bool), strict=True):
        if passed:
            out.append("")
            continue
        if rule.metric in _CAPACITY_METRICS and rule.op in (">=", ">"):
            out.append("no level reaches it")
            continue
        where = ""
        for i in range(len(ordered)):
            # "fail: no data" is not a break: the rule does not apply to these levels yet
            if check_rules(ordered.iloc[: i + 1], [rule])["verdict"].iloc[0] == "fail":
                where = _at(ordered.iloc[i].to_dict(), unit, repeated)
                break
        out.append(where)
    return out


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
    scheduled time, the p99 schedule lag and the share of late arrivals. An
    LLM run adds the p95 time to first token and time per output token
    (streamed replies), the output tokens per second of the successful
    replies and ``cut%``, the replies cut short (counted in ``failed%``
    too, as they are lost answers, but no transport failure).

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
    >>> print(format_levels(levels.assign(p95_ttft_ms=[212.0], p95_tpot_ms=[18.5], output_tokens_per_s=[1520.4],
    ...     error_rate_cut_short=[0.02])))  # doctest: +NORMALIZE_WHITESPACE
    level  users      n    req/s  all requests [95% CI]  answered  failed%  shed%   p95 ms  TTFT p95  TPOT p95
        tok/s   cut%
        0      2    400     40.0   85.5 [81.7, 88.6]         95.0     10.0    8.0     61.2     212.0      18.5
       1520.4    2.0
    """
    ordered = load_order(levels)
    quality = "MAE" if task == "regression" else "all requests [95% CI]"
    rate = load_unit(levels) == "req/s"
    scheduled = "p95_sched_ms" in ordered.columns
    offered = ordered["load"] if rate else ordered["users"]
    extra = "  p95 sch  p99 sch  lag p99  late%" if scheduled else ""
    llm = "output_tokens_per_s" in ordered.columns
    extra += "  TTFT p95  TPOT p95      tok/s   cut%" if llm else ""
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
        if llm:
            tokens = get(row, "output_tokens_per_s")
            sched += (
                f"  {ms(get(row, 'p95_ttft_ms')):>8}  {ms(get(row, 'p95_tpot_ms')):>8} "
                f"{'-' if tokens != tokens else f'{tokens:.1f}':>10} {_pct(get(row, 'error_rate_cut_short')):>6}"
            )
        offered_cell = format(load, "5g" if rate else "5.0f")
        lines.append(
            f"{int(row['level']):5d}  {offered_cell}  {int(row['n']):5d}  {row['throughput_rps']:7.1f}  "
            f"{quality_cell:<21}  {_pct(get(row, 'accuracy')):>8}  {_pct(get(row, 'error_rate')):>7} "
            f"{_pct(get(row, 'error_rate_shed')):>6} {ms(get(row, 'p95_ms'))}{sched}{flag}"
        )
    return "\n".join(lines)
