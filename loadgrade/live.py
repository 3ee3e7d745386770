"""Live quality during a test: each record, as the master receives it, joined with its label and tallied.

The master (or a standalone process) feeds every batch of rows to one :class:`LiveQuality`, which keeps running
figures per load level (a stage of the load shape, or a change of the user count when there is no shape) and over
the last 10 and 30 seconds: requests, accuracy among successes and effective accuracy (errors count as wrong) with
Wilson intervals, errors by kind, p95 latency and quality goodput. Responses are scored with the analysis package's
own :func:`analysis.label_key` / :func:`analysis.prediction_key` (or, with a scenario ``grading:`` section, its own
:mod:`analysis.grading`), so the live figures of a stage are the figures
``python -m analysis report`` later writes to ``levels.csv`` for it. Each level is also compared with the baseline
(the lowest offered load) sample by sample, with the analysis's own test, Holm adjustment and tolerance, so a level
marked degraded live is the level the report marks DEGRADED on the same records.

Cost on the master is a few dictionary look-ups per row: label keys are computed once per sample, prediction keys
once per distinct prediction text. Latencies are kept per level (8 bytes a row) so percentiles are exact, as in the
analysis. Everything returned is plain dicts, so a caller (the web UI, the console, a capacity search evaluating SLOs)
needs nothing from this module but the numbers.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loadgrade.analysis import NO_ANSWER, AnalysisInputError, infer_task, label_key, prediction_key, wilson_interval
from loadgrade.analysis.grading import (
    GradingSpec,
    answer_key,
    answer_text,
    graded_task,
    grading_spec,
    judge,
    parse_label,
)
from loadgrade.analysis.stats import holm_adjust, paired_difference, sample_wilson_interval
from loadgrade.recording import WORKER_COLUMNS
from loadgrade.responses import ERROR_KINDS

__all__ = ["DEFAULT_TOLERANCE", "ROLLING_WINDOWS_S", "LiveQuality"]

ROLLING_WINDOWS_S: tuple[int, ...] = (10, 30)
"""Rolling windows (seconds of send time, up to now) reported beside the levels."""

DEFAULT_TOLERANCE = 0.01
"""Drop (a share: 0.01 = 1 point) a level must exceed to be degraded, as ``analysis.report.DEFAULT_TOLERANCE``
(not imported from there: the report module costs the master a second more at start-up)."""

_SAMPLE_ID = WORKER_COLUMNS.index("sample_id")
_T_SENT = WORKER_COLUMNS.index("t_sent")
_LATENCY = WORKER_COLUMNS.index("latency_ms")
_OK = WORKER_COLUMNS.index("ok")
_ERROR_KIND = WORKER_COLUMNS.index("error_kind")
_PREDICTION = WORKER_COLUMNS.index("prediction")

_UNSCORABLE = object()  # a label or prediction the analysis could not compare: counted as wrong, reported once
_MISSING = object()  # a sample id without a label, or a prediction not yet keyed
_PREDICTION_CACHE_MAX = 100_000  # free-text answers are rarely repeated: start afresh rather than grow forever
_KEEP_LATENCIES_S = max(ROLLING_WINDOWS_S) + 5  # per-second latencies older than this are dropped


@dataclass
class _Tally:
    """Counts of one level or one second; ``latencies`` holds successful responses' latencies (ms)."""

    n: int = 0
    n_ok: int = 0
    n_truth: int = 0
    n_scored: int = 0
    n_correct: int = 0
    n_good: int = 0
    n_no_answer: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    users: int | None = None  # seconds only: the users active when the last of its requests was sent

    def merge(self, other: _Tally) -> None:
        self.n += other.n
        self.n_ok += other.n_ok
        self.n_truth += other.n_truth
        self.n_scored += other.n_scored
        self.n_correct += other.n_correct
        self.n_good += other.n_good
        self.n_no_answer += other.n_no_answer
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)


@dataclass
class _Level:
    index: int
    t_start: float
    users: int | None
    rate: float | None
    kind: str  # "stage" (of the load shape) or "users" (a user count set by hand, no shape)
    t_end: float | None = None
    tally: _Tally = field(default_factory=_Tally)
    # per sample id: [correct, answered, sent] -- the intervals take the sample as the unit when samples repeat
    samples: dict[str, list[int]] = field(default_factory=dict)
    cached: tuple[int, float | None, dict[str, Any]] | None = None  # (n, t_end, summary) of a finished level
    per_sample: tuple[int, Any] | None = None  # (n, sorted codes and per-sample counts) for the paired comparison


def _fraction(k: int, n: int) -> float | None:
    return k / n if n else None


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined figure is None."""
    return None if math.isnan(value) else float(value)


def _interval(k: int, n: int, confidence: float) -> tuple[float | None, float | None]:
    if not n:
        return None, None
    low, high = wilson_interval(k, n, confidence=confidence)
    return float(low), float(high)


class LiveQuality:
    """Running quality figures of one test, fed with batches of records as they arrive.

    Parameters
    ----------
    ids, labels : sequence
        The dataset's sample ids and labels, in the same order (``Scenario.data()``).
    task : {"classification", "regression", "text"} or None
        How to compare; ``None`` infers it from the labels as the analysis does.
    grading : GradingSpec, mapping or None
        The scenario's ``grading:`` section: when given it decides right and wrong, with the analysis's own
        :mod:`loadgrade.analysis.grading` (each distinct answer text reduced once), as ``report`` will.
    slo_latency_ms : float or None
        Latency objective for quality goodput; ``None`` counts every correct answer.
    confidence : float, default 0.95
        Level of the Wilson intervals and of the interval on the change from the baseline.
    tolerance : float, default DEFAULT_TOLERANCE
        Drop from the baseline (a share) beyond which a significantly worse level is degraded (``slo.tolerance``);
        what :meth:`vs_baseline` (the web UI) judges with.
    t_start : float or None
        Start of the test (epoch seconds); default: now.

    Examples
    --------
    >>> live = LiveQuality(["a", "b"], [1, 2], slo_latency_ms=100, t_start=0.0)
    >>> live.start_level(0.0, users=2)
    >>> row = lambda sid, t, ok, pred, kind="": [f"0-{t}", sid, 0, 1, t, 50.0, 200, ok, kind, "", pred, 1, 1, ""]
    >>> live.add([row("a", 0.5, True, "1"), row("b", 1.0, True, "1"), row("a", 1.5, False, "", "timeout")],
    ...          [(2, 0, 2, "")] * 3)
    >>> level = live.stage_summary(0, now=2.0)
    >>> level["n"], level["accuracy"], round(level["effective_accuracy"], 3), level["errors"]
    (3, 0.5, 0.333, {'timeout': 1})
    """

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[Any],
        *,
        task: str | None = None,
        grading: GradingSpec | Mapping[str, Any] | None = None,
        slo_latency_ms: float | None = None,
        confidence: float = 0.95,
        tolerance: float = DEFAULT_TOLERANCE,
        t_start: float | None = None,
    ) -> None:
        self.grading = None if grading is None else grading_spec(grading)
        if self.grading is None:
            self.task: str = task or infer_task(pd.Series(list(labels)))
        else:
            self.task = graded_task(self.grading, task=task, labels=pd.Series(list(labels)))
        self.slo_latency_ms = slo_latency_ms
        self.confidence = confidence
        self.tolerance = tolerance
        self.t_start = time.time() if t_start is None else t_start
        self.t_end: float | None = None
        self.problems: list[str] = []
        self.rows = 0
        self._scores = self.task != "regression"
        self._label_of: dict[str, Any] = {}
        for sample_id, label in zip(ids, labels, strict=True):
            try:
                self._label_of[str(sample_id)] = (
                    label_key(label, task=self.task) if self.grading is None else parse_label(label, self.grading)
                )
            except AnalysisInputError as exc:
                self._label_of[str(sample_id)] = _UNSCORABLE
                self._problem(f"label of sample {sample_id!r}: {exc}")
        self._prediction_keys: dict[str, Any] = {}
        self._code_of: dict[str, int] | None = None  # sample id -> integer code, for the paired comparison
        self._levels: list[_Level] = []
        self._level_by_index: dict[int, _Level] = {}
        self._starts: list[float] = []  # t_start of each level, for levels that are not stamped stages
        self._seconds: dict[int, _Tally] = {}  # per second of send time, for rolling windows and the time chart
        self._seconds_with_latencies: deque[int] = deque()
        self._newest_second: int | None = None

    # ------------------------------------------------------------------------------------------ feeding

    def start_level(self, t: float, *, users: int | None, rate: float | None = None, index: int | None = None) -> None:
        """A new load level begins at ``t``: a stage of the shape (``index``: the stage's), or a new user count."""
        if self._levels and self._levels[-1].t_end is None:
            self._levels[-1].t_end = t
        level = _Level(
            index=len(self._levels) if index is None else index,
            t_start=t,
            users=users,
            rate=rate,
            kind="users" if index is None else "stage",
        )
        self._levels.append(level)
        self._level_by_index[level.index] = level
        self._starts.append(t)

    def has_level(self, index: int) -> bool:
        """Whether level ``index`` has begun (or rows stamped with it have arrived)."""
        return index in self._level_by_index

    @property
    def level_count(self) -> int:
        """Levels so far."""
        return len(self._levels)

    def finish(self, t: float) -> None:
        """The test ended at ``t``: the last level ends there too."""
        self.t_end = t
        if self._levels and self._levels[-1].t_end is None:
            self._levels[-1].t_end = t

    def add(self, rows: Iterable[Sequence[Any]], stamps: Iterable[Sequence[Any]]) -> None:
        """Tally rows (:data:`loadgrade.recording.WORKER_COLUMNS` order) with the master's stamps for them.

        ``stamps`` are ``(users_active, stage, target_users, target_rps)`` as
        :meth:`loadgrade.recording.LoadTimeline.stamp_many` gives them: a row is counted in its stamped stage,
        exactly as the analysis levels it, else in the level running when it was sent.
        """
        label_of, scores, slo, grading = self._label_of, self._scores, self.slo_latency_ms, self.grading
        seconds = self._seconds
        for row, stamp in zip(rows, stamps, strict=True):
            t_sent = float(row[_T_SENT])
            latency = float(row[_LATENCY])
            stage = stamp[1]
            level = self._level_for(t_sent, stage, stamp)
            second = int(t_sent)
            bucket = seconds.get(second)
            if bucket is None:
                bucket = seconds[second] = self._new_second(second)
            bucket.users = stamp[0] if stamp[0] != "" else bucket.users
            label = label_of.get(str(row[_SAMPLE_ID]), _MISSING)
            has_truth = label is not _MISSING
            ok = bool(row[_OK])
            correct = good = no_answer = False
            if ok:
                within = slo is None or latency <= slo
                if has_truth:
                    prediction = self._prediction_key(str(row[_PREDICTION]))
                    # a null prediction is no answer: wrong (classification, text), no error to measure (regression)
                    no_answer = prediction == NO_ANSWER if scores else prediction != prediction
                    if scores:
                        correct = (
                            not no_answer
                            and prediction is not _UNSCORABLE
                            and label is not _UNSCORABLE
                            and (prediction == label if grading is None else judge(prediction, label, grading))
                        )
                        good = correct and within
                    else:
                        good = within and not no_answer
                elif not scores:
                    good = within
            if has_truth and scores:
                counts = level.samples.get(row[_SAMPLE_ID])
                if counts is None:
                    counts = level.samples[row[_SAMPLE_ID]] = [0, 0, 0]
                counts[0] += correct
                counts[1] += ok
                counts[2] += 1
            for tally in (level.tally, bucket):
                tally.n += 1
                if has_truth:
                    tally.n_truth += 1
                if ok:
                    tally.n_ok += 1
                    tally.latencies.append(latency)
                    if has_truth:
                        tally.n_scored += 1
                else:
                    tally.errors[str(row[_ERROR_KIND])] += 1
                if correct:
                    tally.n_correct += 1
                if good:
                    tally.n_good += 1
                if no_answer:
                    tally.n_no_answer += 1
            self.rows += 1

    def _level_for(self, t_sent: float, stage: Any, stamp: Sequence[Any]) -> _Level:
        if stage != "":
            level = self._level_by_index.get(int(stage))
            if level is None:  # a stage we were not told about: its rows still count
                target_rps = stamp[3] if len(stamp) > 3 and stamp[3] != "" else None
                users = int(stamp[2]) if stamp[2] != "" else None
                self.start_level(t_sent, users=users, rate=target_rps, index=int(stage))
                level = self._level_by_index[int(stage)]
            return level
        if not self._levels:
            self.start_level(self.t_start, users=int(stamp[0]) if stamp[0] != "" else None)
        return self._levels[max(bisect_right(self._starts, t_sent) - 1, 0)]

    def _prediction_key(self, text: str) -> Any:
        key = self._prediction_keys.get(text, _MISSING)
        if key is _MISSING:
            if len(self._prediction_keys) >= _PREDICTION_CACHE_MAX:
                self._prediction_keys.clear()
            try:
                if self.grading is None:
                    key = prediction_key(text, task=self.task)
                else:  # the answer's graded key; None (no number, no letter, nothing left) is no answer
                    graded = answer_key(answer_text(text), self.grading)
                    key = NO_ANSWER if graded is None else graded
            except AnalysisInputError as exc:
                key = _UNSCORABLE
                self._problem(f"prediction {text[:80]!r}: {exc}")
            self._prediction_keys[text] = key
        return key

    def _new_second(self, second: int) -> _Tally:
        self._seconds_with_latencies.append(second)
        if self._newest_second is None or second > self._newest_second:
            self._newest_second = second
        newest = self._newest_second
        while self._seconds_with_latencies[0] < newest - _KEEP_LATENCIES_S:
            old = self._seconds.get(self._seconds_with_latencies.popleft())
            if old is not None:
                old.latencies = array("d")
        return _Tally()

    def _problem(self, message: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(message)

    # ------------------------------------------------------------------------------------------ figures

    def _figures(self, tally: _Tally, duration_s: float) -> dict[str, Any]:
        n, scores = tally.n, self._scores
        # regression has no right or wrong: its accuracy figures stay None, as the analysis leaves them NaN
        accuracy_low, accuracy_high = _interval(tally.n_correct, tally.n_scored if scores else 0, self.confidence)
        effective_low, effective_high = _interval(tally.n_correct, tally.n_truth if scores else 0, self.confidence)
        latencies = np.frombuffer(tally.latencies, dtype=np.float64) if tally.latencies else None
        figures: dict[str, Any] = {
            "n": n,
            "n_ok": tally.n_ok,
            "n_truth": tally.n_truth,
            "n_scored": tally.n_scored,
            "n_correct": tally.n_correct,
            "accuracy": _fraction(tally.n_correct, tally.n_scored) if scores else None,
            "accuracy_low": accuracy_low,
            "accuracy_high": accuracy_high,
            "effective_accuracy": _fraction(tally.n_correct, tally.n_truth) if scores else None,
            "effective_accuracy_low": effective_low,
            "effective_accuracy_high": effective_high,
            "error_rate": _fraction(n - tally.n_ok, n),
            "n_no_answer": tally.n_no_answer,
            "no_answer_rate": _fraction(tally.n_no_answer, tally.n_scored),
        }
        kinds = list(ERROR_KINDS) + sorted(set(tally.errors) - set(ERROR_KINDS) - {""})
        for kind in kinds:
            figures[f"error_rate_{kind}"] = _fraction(tally.errors.get(kind, 0), n)
        figures["errors"] = {kind: count for kind, count in sorted(tally.errors.items()) if count}
        figures["p95_ms"] = float(np.percentile(latencies, 95)) if latencies is not None else None
        figures["throughput_rps"] = n / duration_s if duration_s > 0 else None
        figures["goodput_rps"] = tally.n_good / duration_s if duration_s > 0 else None
        return figures

    def stage_summary(self, stage: int, *, now: float | None = None) -> dict[str, Any]:
        """Figures of one level (a stage index, or the n-th user count without a shape), as plain values.

        Keys: ``level``, ``kind`` ("stage" or "users"), ``users``, ``rate``, ``t_start``, ``t_end`` (None while it
        runs), ``duration_s``, ``done``, ``n``, ``n_ok``, ``n_truth``, ``n_scored``, ``n_correct``, ``accuracy`` and
        ``effective_accuracy`` with ``_low``/``_high`` Wilson bounds (the sample as the unit, as in the analysis),
        ``error_rate``, ``error_rate_<kind>``,
        ``errors`` (counts by kind), ``n_no_answer`` and ``no_answer_rate`` (successful, labelled answers that were
        ``null``), ``p95_ms`` (successful responses), ``throughput_rps`` and ``goodput_rps`` (correct within the
        latency SLO, per second; for regression answered within the SLO). None where a figure is undefined.
        """
        level = self._level_by_index.get(stage)
        if level is None:
            raise KeyError(f"no level {stage}; levels are: {sorted(self._level_by_index)}")
        if level.cached is not None and level.cached[:2] == (level.tally.n, level.t_end):
            return level.cached[2]
        end = level.t_end if level.t_end is not None else (time.time() if now is None else now)
        # as the analysis does: a level spans at least a microsecond
        duration = max(end, level.t_start + 1e-6) - level.t_start
        summary = {
            "level": level.index,
            "kind": level.kind,
            "users": level.users,
            "rate": level.rate,
            "t_start": level.t_start,
            "t_end": level.t_end,
            "duration_s": duration,
            "done": level.t_end is not None,
            **self._figures(level.tally, duration),
        }
        if level.samples:  # the sample as the unit: a sample sent 15 times is not 15 independent answers
            counts = np.asarray(list(level.samples.values()), dtype=np.float64)
            for name, total in (("accuracy", counts[:, 1]), ("effective_accuracy", counts[:, 2])):
                answered = total > 0
                if answered.any():
                    low, high, _ = sample_wilson_interval(
                        counts[answered, 0], total[answered], confidence=self.confidence
                    )
                    summary[f"{name}_low"], summary[f"{name}_high"] = float(low), float(high)
        if level.t_end is not None:
            level.cached = (level.tally.n, level.t_end, summary)
        return summary

    def baseline_comparison(
        self, *, metric: str = "effective_accuracy", tolerance: float = DEFAULT_TOLERANCE, alpha: float = 0.05
    ) -> dict[int, dict[str, Any]]:
        """Every level so far against the baseline, sample by sample, as ``python -m analysis report`` compares them.

        The baseline is the level with the lowest offered load (the arrival rate when the run has one, else the
        users; the earlier level on a tie), as in :func:`loadgrade.analysis.degradation_table`: on the samples both
        levels counted, each sample's accuracy at the level minus its accuracy at the baseline, averaged, with
        :func:`loadgrade.analysis.stats.paired_difference`'s interval and test, Holm-adjusted across the levels so
        far. A level's verdict can therefore still change while later levels join the family, and it is the
        analysis's verdict once the run is over.

        Returns, per level index: ``baseline`` (its index), ``is_baseline``, ``diff``, ``diff_low``, ``diff_high``
        (shares, level minus baseline), ``n_pairs``, ``p_value``, ``p_holm`` (NaN at the baseline),
        ``significantly_worse`` and ``degraded`` (significantly worse by more than ``tolerance``). Empty for
        regression, which has no accuracy.
        """
        if not self._scores or not self._levels:
            return {}
        if metric not in ("accuracy", "effective_accuracy"):
            raise ValueError(f"metric must be 'accuracy' or 'effective_accuracy', got {metric!r}")
        by_rate = any(level.rate is not None for level in self._levels)

        def offered(level: _Level) -> tuple[float, int]:
            value = level.rate if by_rate else level.users
            return (math.inf if value is None else float(value), level.index)

        ordered = sorted(self._levels, key=offered)
        total = 2 if metric == "effective_accuracy" else 1  # counts per sample: [correct, answered, sent]
        base_codes, base_counts = self._per_sample(ordered[0])
        base_counted = base_counts[:, total] > 0
        base_codes = base_codes[base_counted]
        base_rates = base_counts[base_counted, 0] / base_counts[base_counted, total]
        compared = []
        for level in ordered:
            codes, counts = self._per_sample(level)
            counted = counts[:, total] > 0
            _, in_base, in_level = np.intersect1d(base_codes, codes[counted], assume_unique=True, return_indices=True)
            rates = counts[counted, 0][in_level] / counts[counted, total][in_level]
            compared.append(paired_difference(base_rates[in_base], rates, confidence=self.confidence))
        p_value = np.array([np.nan] + [result.p_value for result in compared[1:]], dtype=float)
        p_holm = holm_adjust(p_value)
        comparison = {}
        for level, result, p, adjusted in zip(ordered, compared, p_value, p_holm, strict=True):
            worse = bool(adjusted < alpha and result.diff < 0)
            comparison[level.index] = {
                "baseline": ordered[0].index,
                "is_baseline": level is ordered[0],
                "diff": float(result.diff),
                "diff_low": float(result.low),
                "diff_high": float(result.high),
                "n_pairs": result.n_pairs,
                "p_value": float(p),
                "p_holm": float(adjusted),
                "significantly_worse": worse,
                "degraded": worse and -result.diff > tolerance,
            }
        return comparison

    def _per_sample(self, level: _Level) -> tuple[Any, Any]:
        """The level's sample codes (sorted) and their [correct, answered, sent] counts, cached while unchanged."""
        if level.per_sample is not None and level.per_sample[0] == level.tally.n:
            return level.per_sample[1]
        code_of = self._code_of
        if code_of is None:
            code_of = self._code_of = {sample_id: code for code, sample_id in enumerate(self._label_of)}
        codes = np.fromiter((code_of[str(s)] for s in level.samples), dtype=np.int64, count=len(level.samples))
        counts = np.asarray(list(level.samples.values()), dtype=np.float64).reshape(-1, 3)
        order = np.argsort(codes, kind="stable")
        arrays = (codes[order], counts[order])
        level.per_sample = (level.tally.n, arrays)
        return arrays

    def vs_baseline(self) -> dict[int, dict[str, Any]]:
        """:meth:`baseline_comparison` on the accuracy over every request with this test's ``tolerance``, under the
        names ``levels.csv`` gives them, and None for what is undefined (JSON has no NaN); what the web UI shows.

        Keys per level: ``is_baseline``, ``vs_baseline_diff`` (level minus baseline, a share: negative is worse)
        with ``vs_baseline_diff_low``/``_high``, ``vs_baseline_n_pairs``, ``vs_baseline_p_holm``,
        ``vs_baseline_significantly_worse`` and ``degraded``. Empty for regression.

        Examples
        --------
        >>> live = LiveQuality([f"s{i}" for i in range(40)], [1] * 40, t_start=0.0)
        >>> live.start_level(0.0, users=1, index=0)
        >>> live.start_level(10.0, users=8, index=1)
        >>> row = lambda i, stage, pred: [f"{stage}-{i}", f"s{i}", 0, 1, 10.0 * stage + i / 10, 5.0, 200, True, "",
        ...                               "", pred, 1, 1, ""]
        >>> rows = [row(i, 0, "1") for i in range(40)] + [row(i, 1, "1" if i < 20 else "2") for i in range(40)]
        >>> live.add(rows, [(1, 0, 1, "")] * 40 + [(8, 1, 8, "")] * 40)
        >>> compared = live.vs_baseline()
        >>> compared[0]["is_baseline"], compared[0]["vs_baseline_p_holm"], compared[1]["vs_baseline_diff"]
        (True, None, -0.5)
        >>> compared[1]["degraded"], compared[1]["vs_baseline_n_pairs"]
        (True, 40)
        """
        return {
            index: {
                "is_baseline": figures["is_baseline"],
                "vs_baseline_diff": _finite(figures["diff"]),
                "vs_baseline_diff_low": _finite(figures["diff_low"]),
                "vs_baseline_diff_high": _finite(figures["diff_high"]),
                "vs_baseline_n_pairs": figures["n_pairs"],
                "vs_baseline_p_holm": _finite(figures["p_holm"]),
                "vs_baseline_significantly_worse": figures["significantly_worse"],
                "degraded": figures["degraded"],
            }
            for index, figures in self.baseline_comparison(tolerance=self.tolerance).items()
        }

    def window_summary(self, seconds: float, *, now: float | None = None) -> dict[str, Any]:
        """Figures over the requests sent in the last ``seconds`` (whole seconds of send time) up to ``now``."""
        end = (self.t_end or time.time()) if now is None else now
        first = math.floor(end - seconds)
        tally = _Tally()
        users = None
        for second in range(first, math.floor(end) + 1):
            bucket = self._seconds.get(second)
            if bucket is not None:
                tally.merge(bucket)
                users = bucket.users if bucket.users is not None else users
        covered = min(float(seconds), max(end - self.t_start, 1e-6))
        return {"window_s": seconds, "t_end": end, "users": users, **self._figures(tally, covered)}

    def level_bounds(self) -> list[dict[str, Any]]:
        """Each level's ``level``, ``kind``, ``t_start`` and ``t_end`` (None while it runs), without any figures."""
        return [
            {"level": level.index, "kind": level.kind, "t_start": level.t_start, "t_end": level.t_end}
            for level in self._levels
        ]

    def levels(self, *, now: float | None = None) -> list[dict[str, Any]]:
        """Every level so far, in order: :meth:`stage_summary` with :meth:`vs_baseline` merged in."""
        compared = self.vs_baseline()
        return [{**self.stage_summary(level.index, now=now), **compared.get(level.index, {})} for level in self._levels]

    def series(self, *, window_s: int = 10, now: float | None = None, max_points: int = 600) -> list[dict[str, Any]]:
        """Accuracy over time for charts: one point per second (fewer for long runs), each over the ``window_s``
        seconds up to it, with the users active then.

        Keys: ``t`` (seconds since the start), ``users``, ``n``, ``accuracy``, ``effective_accuracy``.
        """
        if not self._seconds:
            return []
        end = (self.t_end or time.time()) if now is None else now
        first, last = min(self._seconds), min(max(self._seconds), math.floor(end))
        step = max(1, math.ceil((last - first + 1) / max_points))
        counts = np.zeros((last - first + 1, 4), dtype=np.int64)  # n, n_truth, n_scored, n_correct
        users: list[int | None] = [None] * (last - first + 1)
        for second, bucket in self._seconds.items():
            if first <= second <= last:
                counts[second - first] = (bucket.n, bucket.n_truth, bucket.n_scored, bucket.n_correct)
                users[second - first] = bucket.users
        rolling = np.cumsum(counts, axis=0)
        rolling[window_s:] = rolling[window_s:] - rolling[:-window_s]
        points = []
        current_users = None
        for offset in range(len(counts)):
            current_users = users[offset] if users[offset] is not None else current_users
            if offset % step != step - 1 and offset != len(counts) - 1:
                continue
            n, n_truth, n_scored, n_correct = (int(v) for v in rolling[offset])
            points.append(
                {
                    "t": first + offset + 1 - self.t_start,
                    "users": current_users,
                    "n": n,
                    "accuracy": _fraction(n_correct, n_scored) if self._scores else None,
                    "effective_accuracy": _fraction(n_correct, n_truth) if self._scores else None,
                }
            )
        return points

    def snapshot(self, *, now: float | None = None) -> dict[str, Any]:
        """Everything at once: ``task``, ``slo_latency_ms``, ``t_start``, ``t_end``, ``rows``, ``levels``,
        ``windows`` (``{"10s": ..., "30s": ...}``) and ``problems`` (why some answers could not be scored)."""
        now = (self.t_end or time.time()) if now is None else now
        return {
            "task": self.task,
            "slo_latency_ms": self.slo_latency_ms,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "now": now,
            "rows": self.rows,
            "levels": self.levels(now=now),
            "windows": {f"{w}s": self.window_summary(w, now=now) for w in ROLLING_WINDOWS_S},
            "problems": list(self.problems),
        }

    def run_summary(self) -> dict[str, Any]:
        """Figures over the whole test so far (every level together); costs a pass over all latencies."""
        tally = _Tally()
        for level in self._levels:
            tally.merge(level.tally)
        end = self.t_end or time.time()
        return {"levels": len(self._levels), **self._figures(tally, max(end - self.t_start, 1e-6))}
