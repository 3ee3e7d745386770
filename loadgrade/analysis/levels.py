"""Load levels: which load each request was sent under, and how busy the server really was.

A level is a stage of the load shape when the run recorded stages, else a
fixed time window. In-flight concurrency is measured, not assumed: it is
computed exactly from each request's send time and latency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loadgrade.analysis.errors import AnalysisInputError

__all__ = ["assign_levels", "inflight_concurrency"]


def _check_window(window_s: float) -> None:
    if not (isinstance(window_s, int | float) and window_s > 0 and np.isfinite(window_s)):
        raise AnalysisInputError(f"window_s must be a positive number of seconds, got {window_s!r}")


def _check_timing(records: pd.DataFrame) -> None:
    missing = [c for c in ("t_sent", "latency_ms", "users_active") if c not in records.columns]
    if missing:
        raise AnalysisInputError(
            f"records have no column {', '.join(repr(c) for c in missing)}; "
            f"columns are: {', '.join(map(str, records.columns))}"
        )
    if records.empty:
        raise AnalysisInputError("records are empty: the run recorded no requests")


def _stage_bounds(stages: Sequence[Mapping[str, Any]] | None) -> dict[int, tuple[float, float]]:
    bounds: dict[int, tuple[float, float]] = {}
    for position, stage in enumerate(stages or []):
        try:
            index = int(stage.get("index", position))
            bounds[index] = (float(stage["t_start"]), float(stage["t_end"]))
        except (KeyError, TypeError, ValueError):
            continue
    return bounds


def assign_levels(
    records: pd.DataFrame,
    *,
    stages: Sequence[Mapping[str, Any]] | None = None,
    window_s: float = 10.0,
    t_start: float | None = None,
    t_end: float | None = None,
) -> tuple[pd.Series, pd.DataFrame]:
    """Give each record a load level and describe each level's time span.

    Parameters
    ----------
    records : pandas.DataFrame
        Records with ``t_sent``, ``latency_ms`` and ``users_active`` (and
        optionally ``stage`` / ``target_users``).
    stages : sequence of mapping or None
        ``run.json`` ``stages``; their ``t_start``/``t_end`` give each stage's
        duration. Without them a stage spans its own records.
    window_s : float, default 10.0
        Window length when the records carry no stage.
    t_start, t_end : float or None
        Run start and end (epoch seconds); windows are aligned on ``t_start``
        and the last one is cut at ``t_end``. Default: the records' own span.

    Returns
    -------
    level : pandas.Series
        Nullable ``Int64`` level per record (NA for records sent outside every
        stage, e.g. during shutdown).
    bounds : pandas.DataFrame
        One row per level: ``level``, ``kind`` ("stage" or "window"),
        ``t_start``, ``t_end``, ``duration_s``.

    Examples
    --------
    >>> records = pd.DataFrame({"t_sent": [0.0, 4.0, 12.0], "latency_ms": [100.0, 100.0, 500.0],
    ...                         "users_active": [1, 1, 2]})
    >>> level, bounds = assign_levels(records, window_s=10)
    >>> level.tolist()
    [0, 0, 1]
    >>> bounds[["level", "t_start", "t_end"]].to_dict("records")
    [{'level': 0, 't_start': 0.0, 't_end': 10.0}, {'level': 1, 't_start': 10.0, 't_end': 12.5}]
    """
    _check_timing(records)
    _check_window(window_s)
    t_sent = records["t_sent"].to_numpy(dtype=float)
    t_done = t_sent + records["latency_ms"].to_numpy(dtype=float) / 1000.0
    first = float(t_sent.min()) if t_start is None else min(float(t_start), float(t_sent.min()))
    last = float(np.nanmax(t_done)) if t_end is None else float(t_end)
    use_stages = "stage" in records.columns and bool(records["stage"].notna().any())
    if use_stages:
        level = records["stage"].astype("Int64")
        known = _stage_bounds(stages)
        rows = []
        for value in sorted(int(v) for v in pd.unique(level.dropna())):
            if value in known:
                lo, hi = known[value]
            else:
                mask = (level == value).fillna(False).to_numpy(dtype=bool)
                lo, hi = float(t_sent[mask].min()), float(t_done[mask].max())
            rows.append({"level": value, "kind": "stage", "t_start": lo, "t_end": hi})
        bounds = pd.DataFrame(rows)
    else:
        index = np.floor((t_sent - first) / window_s).astype(np.int64)
        level = pd.Series(index, index=records.index, dtype="Int64")
        values = np.unique(index)
        lo_arr = first + values * window_s
        hi_arr = np.minimum(lo_arr + window_s, max(last, float(t_sent.max())))
        bounds = pd.DataFrame({"level": values, "kind": "window", "t_start": lo_arr, "t_end": hi_arr})
    # A level must have a positive span for throughput to mean anything.
    bounds["t_end"] = np.maximum(bounds["t_end"].to_numpy(dtype=float), bounds["t_start"].to_numpy(dtype=float) + 1e-6)
    bounds["duration_s"] = bounds["t_end"] - bounds["t_start"]
    level.name = "level"
    return level, bounds.reset_index(drop=True)


def inflight_concurrency(
    records: pd.DataFrame, t_start: npt.ArrayLike, t_end: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Exact number of requests in flight, time-weighted mean and maximum per interval.

    Each request is in flight on ``[t_sent, t_sent + latency)``. The count is a
    step function; its integral and maximum over each interval are computed
    exactly with a sweep over send and completion times (completions first on
    ties, so back-to-back requests are not counted twice). Requests from any
    level count wherever they overlap the interval.

    Parameters
    ----------
    records : pandas.DataFrame
        With ``t_sent`` (epoch seconds) and ``latency_ms``.
    t_start, t_end : array-like of float
        Interval bounds, same length.

    Returns
    -------
    mean, maximum : numpy.ndarray

    Examples
    --------
    >>> records = pd.DataFrame({"t_sent": [0.0, 0.5], "latency_ms": [1000.0, 1000.0]})
    >>> mean, top = inflight_concurrency(records, [0.0], [2.0])
    >>> float(mean[0]), float(top[0])
    (1.0, 2.0)
    """
    lo = np.atleast_1d(np.asarray(t_start, dtype=float))
    hi = np.atleast_1d(np.asarray(t_end, dtype=float))
    if lo.shape != hi.shape:
        raise AnalysisInputError("t_start and t_end must have the same length")
    origin = float(records["t_sent"].min()) if len(records) else 0.0
    starts = records["t_sent"].to_numpy(dtype=float) - origin
    ends = starts + np.maximum(records["latency_ms"].to_numpy(dtype=float), 0.0) / 1000.0
    times = np.concatenate([starts, ends])
    steps = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])
    order = np.lexsort((steps, times))
    times = times[order]
    count = np.cumsum(steps[order])  # in flight on [times[i], times[i+1])
    area = np.concatenate([[0.0], np.cumsum(count[:-1] * np.diff(times))]) if len(times) else np.zeros(0)

    def integral(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        i = np.searchsorted(times, t, side="right") - 1
        inside = i >= 0
        safe = np.where(inside, i, 0)
        return np.where(inside, area[safe] + count[safe] * (t - times[safe]), 0.0)

    a, b = lo - origin, hi - origin
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (integral(b) - integral(a)) / (b - a)
    maximum = np.zeros(len(a))
    for j, (left, right) in enumerate(zip(a, b, strict=True)):
        at_left = np.searchsorted(times, left, side="right") - 1
        first = max(at_left, 0)
        stop = np.searchsorted(times, right, side="left")
        values = count[first:stop] if stop > first else np.zeros(0)
        current = count[at_left] if at_left >= 0 else 0.0
        maximum[j] = max(float(current), float(values.max()) if len(values) else 0.0)
    return mean, maximum
