"""What the load cost the served model, per load level: CPU, memory and server metrics from ``resources.csv``.

The master samples the server while the run goes (see ``loadgrade.resources``); here the samples are joined with
the load levels by time, so CPU and queueing can be read against load next to accuracy, and quality can be
priced: correct answers per CPU-second.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from loadgrade.analysis.errors import AnalysisInputError

RESOURCE_COLUMNS = ["t", "source", "metric", "value"]


def read_resources(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """``resources.csv`` of a run as a tidy frame, or None when the run sampled no resources.

    Raises
    ------
    AnalysisInputError
        The file exists but lacks a column.
    """
    path = Path(run_dir) / "resources.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype={"source": str, "metric": str, "t": float, "value": float})
    missing = [c for c in RESOURCE_COLUMNS if c not in frame.columns]
    if missing:
        raise AnalysisInputError(
            f"{path} has no column {missing[0]!r}; columns are: {', '.join(map(str, frame.columns))}"
        )
    return frame


def resources_by_level(resources: pd.DataFrame, bounds: pd.DataFrame) -> pd.DataFrame:
    """The mean of every sampled metric over each level's time span (samples at ``t_start <= t < t_end``).

    Parameters
    ----------
    resources : pandas.DataFrame
        From :func:`read_resources` (``t``, ``source``, ``metric``, ``value``).
    bounds : pandas.DataFrame
        One row per level with ``level``, ``t_start``, ``t_end`` (as :func:`analysis.assign_levels` gives).

    Returns
    -------
    pandas.DataFrame
        One row per level: ``level``, ``resource_samples``, then one column per metric (its mean over the
        level), e.g. ``cpu_percent``, ``rss_bytes``, ``reference_in_flight``, ``reference_requests_total:rate``.

    Examples
    --------
    >>> samples = pd.DataFrame({"t": [0.5, 1.5, 10.5, 11.5], "source": "process", "metric": "cpu_percent",
    ...                         "value": [10.0, 20.0, 80.0, 100.0]})
    >>> bounds = pd.DataFrame({"level": [0, 1], "t_start": [0.0, 10.0], "t_end": [10.0, 20.0]})
    >>> resources_by_level(samples, bounds).to_dict("records")
    [{'level': 0, 'resource_samples': 2, 'cpu_percent': 15.0}, {'level': 1, 'resource_samples': 2, 'cpu_percent': 90.0}]
    """
    for column in ("level", "t_start", "t_end"):
        if column not in bounds.columns:
            raise AnalysisInputError(f"level bounds have no column {column!r}")
    starts = bounds["t_start"].to_numpy(dtype=float)
    ends = bounds["t_end"].to_numpy(dtype=float)
    order = np.argsort(starts)
    t = resources["t"].to_numpy(dtype=float)
    slot = np.searchsorted(starts[order], t, side="right") - 1
    inside = slot >= 0
    inside[inside] &= t[inside] < ends[order][slot[inside]]
    levels = bounds["level"].to_numpy()[order]
    tagged = resources.loc[inside, ["metric", "value"]].assign(level=levels[slot[inside]])
    table = tagged.pivot_table(index="level", columns="metric", values="value", aggfunc="mean")
    table.columns.name = None
    counts = tagged.groupby("level").size().rename("resource_samples")
    out = pd.DataFrame({"level": bounds["level"].to_numpy()}).merge(counts, on="level", how="left")
    out["resource_samples"] = out["resource_samples"].fillna(0).astype(int)
    return out.merge(table.reset_index(), on="level", how="left")


def correct_per_cpu_second(levels: pd.DataFrame) -> pd.Series:
    """Correct answers per CPU-second of the served model, per level: quality priced in compute.

    ``n_correct / (mean cpu_percent / 100 × duration_s)``; NaN where CPU was not sampled or was zero.

    >>> correct_per_cpu_second(pd.DataFrame({"n_correct": [900], "cpu_percent": [50.0], "duration_s": [10.0]}))
    0    180.0
    dtype: float64
    """
    if "cpu_percent" not in levels.columns:
        return pd.Series(np.nan, index=levels.index, dtype=float)
    cpu_seconds = levels["cpu_percent"].astype(float) / 100.0 * levels["duration_s"].astype(float)
    return (levels["n_correct"].astype(float) / cpu_seconds.where(cpu_seconds > 0)).astype(float)
