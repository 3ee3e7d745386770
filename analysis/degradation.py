"""Is quality at a load level worse than at the baseline (the lowest load), and where is the knee?

Each level is compared with the baseline. When the same samples were answered
at both levels the comparison is paired (McNemar on each sample's first
answer), which removes sample difficulty from the noise; otherwise it falls
back to an unpaired two-proportion test. p-values are Holm-adjusted across
levels so that a long ramp does not produce false alarms by sheer number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.errors import AnalysisInputError
from analysis.stats import holm_adjust, mcnemar_test, newcombe_interval, two_proportion_test

__all__ = ["METRICS", "Knee", "degradation_table", "find_knee", "load_order", "load_unit"]

METRICS: tuple[str, ...] = ("accuracy", "effective_accuracy")
# Pair when at least this share of the smaller level's samples were answered at both levels.
_PAIRED_MIN_SHARE = 0.5


@dataclass(frozen=True)
class Knee:
    """Where quality or latency stops holding up as load rises."""

    level: int | None
    """Highest level (in load order) before the first degraded one; the highest level tested when none is."""
    users: float | None
    """Offered users at that level."""
    first_bad_level: int | None
    """The first degraded level, or None when no level is."""
    first_bad_users: float | None
    """Offered users at the first degraded level."""
    criterion: str
    """What "degraded" meant."""
    load: float | None = None
    """Offered load at ``level`` in ``unit`` (the arrival rate in an open-model run, else the users)."""
    first_bad_load: float | None = None
    """Offered load at ``first_bad_level``."""
    unit: str = "users"
    """Unit of the offered load: "users", or "req/s" when the run offered an arrival rate."""

    def __post_init__(self) -> None:
        # a knee built from users alone (older callers) reads the same in both fields
        if self.load is None and self.unit == "users":
            object.__setattr__(self, "load", self.users)
        if self.first_bad_load is None and self.unit == "users":
            object.__setattr__(self, "first_bad_load", self.first_bad_users)


def _check_tolerance(tolerance: float, alpha: float) -> None:
    if not 0 <= tolerance < 1:
        raise AnalysisInputError(f"tolerance must be in [0, 1) (a share, 0.01 = 1 point), got {tolerance!r}")
    if not 0 < alpha < 1:
        raise AnalysisInputError(f"alpha must be between 0 and 1, got {alpha!r}")


def load_unit(levels: pd.DataFrame) -> str:
    """Unit of the offered load of a level table: "req/s" when it has an open-model ``load``, else "users".

    Examples
    --------
    >>> load_unit(pd.DataFrame({"level": [0], "users": [4.0]}))
    'users'
    >>> load_unit(pd.DataFrame({"level": [0], "users": [4.0], "load": [50.0], "load_unit": ["req/s"]}))
    'req/s'
    """
    if "load_unit" in levels.columns and len(levels):
        return str(levels["load_unit"].iloc[0])
    return "users"


def _load_column(levels: pd.DataFrame) -> str:
    return "load" if "load" in levels.columns and levels["load"].notna().any() else "users"


def load_order(levels: pd.DataFrame) -> pd.DataFrame:
    """Levels sorted by offered load (then level index); the first row is the baseline.

    The offered load is ``load`` when the table has it (the arrival rate of an
    open-model run, else the users), otherwise ``users``.

    Examples
    --------
    >>> load_order(pd.DataFrame({"level": [0, 1, 2], "users": [8.0, 2.0, 8.0]}))["level"].tolist()
    [1, 0, 2]
    >>> load_order(pd.DataFrame({"level": [0, 1], "users": [8.0, 8.0], "load": [90.0, 30.0]}))["level"].tolist()
    [1, 0]
    """
    for column in ("level", "users"):
        if column not in levels.columns:
            raise AnalysisInputError(f"level table has no column '{column}'; columns are: {', '.join(levels.columns)}")
    return levels.sort_values([_load_column(levels), "level"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class _Answers:
    """Each sample's first answer at one level: sample codes (sorted), correctness, prediction."""

    codes: npt.NDArray[np.int64]
    correct: npt.NDArray[np.bool_]
    predictions: npt.NDArray[Any]


def _first_answers(
    codes: npt.NDArray[np.int64],
    correct: npt.NDArray[np.bool_],
    predictions: npt.NDArray[Any],
    mask: npt.NDArray[np.bool_],
) -> _Answers:
    # Rows are in send order, so the first occurrence of a code is that sample's first answer. Hashing finds
    # it in linear time; only the few thousand distinct samples are then sorted (np.unique would sort every row).
    chosen = np.flatnonzero(mask)
    rows = chosen[~pd.Index(codes[chosen]).duplicated(keep="first")]
    rows = rows[np.argsort(codes[rows], kind="stable")]
    return _Answers(codes[rows], correct[rows], predictions[rows])


def _same_prediction(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return np.isclose(a, b, rtol=1e-9, atol=0.0)
    return np.asarray(a.astype(object) == b.astype(object), dtype=bool)


def degradation_table(
    joined: pd.DataFrame,
    levels: pd.DataFrame,
    *,
    metric: str = "accuracy",
    tolerance: float = 0.01,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Compare every level's quality with the baseline (lowest offered load).

    Parameters
    ----------
    joined : pandas.DataFrame
        Scored records with a ``level`` column.
    levels : pandas.DataFrame
        From :func:`analysis.level_table`.
    metric : {"accuracy", "effective_accuracy"}, default "accuracy"
        Accuracy among successful responses (model quality) or with errors
        counted as wrong (what clients received).
    tolerance : float, default 0.01
        A drop must exceed this (as a share: 0.01 = 1 point) to count as degraded.
    alpha : float, default 0.05
        Family-wise error rate for the Holm-adjusted tests.
    confidence : float, default 0.95
        Level of the Newcombe interval on the difference.

    Returns
    -------
    pandas.DataFrame
        In load order, one row per level: ``level``, ``users``, ``baseline``
        (True on the baseline row), ``diff`` (level minus baseline) with
        ``diff_low``/``diff_high``, ``test`` ("mcnemar-exact",
        "mcnemar-chi2", "two-proportion-z"), ``n_pairs``, ``worse_pairs`` /
        ``better_pairs`` (discordant), ``p_value``, ``p_holm``,
        ``significantly_worse``, ``degraded`` (significantly worse and the
        drop exceeds ``tolerance``), ``consistency`` (share of samples whose
        successful prediction equals their baseline prediction) and
        ``n_consistency``.

    Examples
    --------
    >>> joined = pd.DataFrame({"level": [0] * 4 + [1] * 4, "sample_id": list("abcd") * 2,
    ...     "t_sent": range(8), "ok": True, "has_truth": True,
    ...     "correct": [True, True, True, False, True, False, True, False],
    ...     "y_pred": ["1", "2", "3", "4", "1", "9", "3", "4"]})
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 8.0], "n_correct": [3, 2],
    ...                        "n_scored": [4, 4], "n_truth": [4, 4]})
    >>> table = degradation_table(joined, levels)
    >>> table[["level", "diff", "n_pairs", "worse_pairs", "consistency"]].to_dict("records")
    [{'level': 0, 'diff': 0.0, 'n_pairs': 4, 'worse_pairs': 0, 'consistency': 1.0}, \
{'level': 1, 'diff': -0.25, 'n_pairs': 4, 'worse_pairs': 1, 'consistency': 0.75}]
    """
    if metric not in METRICS:
        raise AnalysisInputError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    _check_tolerance(tolerance, alpha)
    needed = ["level", "sample_id", "t_sent", "ok", "has_truth", "correct", "y_pred"]
    missing = [c for c in needed if c not in joined.columns]
    if missing:
        raise AnalysisInputError(f"joined records have no column {', '.join(repr(c) for c in missing)}")
    ordered = load_order(levels)
    total_column = "n_scored" if metric == "accuracy" else "n_truth"
    # the columns in send order, as arrays: sorting the frame itself would copy every column of every record
    in_time = np.argsort(joined["t_sent"].to_numpy(dtype=float), kind="stable")
    codes = pd.factorize(joined["sample_id"])[0].astype(np.int64)[in_time]
    correct = joined["correct"].fillna(False).to_numpy(dtype=bool)[in_time]
    predictions = joined["y_pred"].to_numpy()[in_time]
    has_truth = joined["has_truth"].to_numpy(dtype=bool)[in_time]
    ok = joined["ok"].to_numpy(dtype=bool)[in_time]
    level_of = joined["level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)[in_time]

    def answers(value: int, *, successful_only: bool) -> _Answers:
        mask = (level_of == value) & has_truth
        if successful_only:
            mask = mask & ok
        return _first_answers(codes, correct, predictions, mask)

    base_level = int(ordered["level"].iloc[0])
    base = answers(base_level, successful_only=metric == "accuracy")
    base_ok = answers(base_level, successful_only=True)
    k0 = int(ordered["n_correct"].iloc[0])
    n0 = int(ordered[total_column].iloc[0])
    rows: list[dict[str, Any]] = []
    for position, level_row in ordered.iterrows():
        value = int(level_row["level"])
        k1, n1 = int(level_row["n_correct"]), int(level_row[total_column])
        diff, low, high = (float(x) for x in newcombe_interval(k0, n0, k1, n1, confidence=confidence))
        current = answers(value, successful_only=metric == "accuracy")
        _, in_base, in_level = np.intersect1d(base.codes, current.codes, assume_unique=True, return_indices=True)
        base_correct = base.correct[in_base]
        level_correct = current.correct[in_level]
        n_pairs = len(in_base)
        worse = int((base_correct & ~level_correct).sum())
        better = int((~base_correct & level_correct).sum())
        if position == 0:
            test, p_value = "baseline", float("nan")
        elif n0 == 0 or n1 == 0:
            test, p_value = "none", float("nan")
        elif n_pairs > 0 and n_pairs >= _PAIRED_MIN_SHARE * min(len(base.codes), len(current.codes)):
            p_value, method = mcnemar_test(worse, better)
            test = f"mcnemar-{method}"
        else:
            test, p_value = "two-proportion-z", two_proportion_test(k0, n0, k1, n1)
        answered = answers(value, successful_only=True)
        _, shared_base, shared_level = np.intersect1d(
            base_ok.codes, answered.codes, assume_unique=True, return_indices=True
        )
        same = _same_prediction(base_ok.predictions[shared_base], answered.predictions[shared_level])
        rows.append(
            {
                "level": value,
                "users": float(level_row["users"]),
                "baseline": position == 0,
                "diff": diff,
                "diff_low": low,
                "diff_high": high,
                "test": test,
                "n_pairs": n_pairs,
                "worse_pairs": worse,
                "better_pairs": better,
                "p_value": p_value,
                "consistency": float(same.mean()) if len(same) else float("nan"),
                "n_consistency": len(same),
            }
        )
    table = pd.DataFrame(rows)
    table["p_holm"] = holm_adjust(table["p_value"].to_numpy(dtype=float))
    worse_direction = table["diff"].to_numpy(dtype=float) < 0
    significant = (table["p_holm"].to_numpy(dtype=float) < alpha) & worse_direction
    table["significantly_worse"] = significant
    table["degraded"] = significant & (-table["diff"].to_numpy(dtype=float) > tolerance)
    columns = [*table.columns[:11], "p_holm", "significantly_worse", "degraded", "consistency", "n_consistency"]
    return table[columns]


def find_knee(
    levels: pd.DataFrame,
    *,
    degradation: pd.DataFrame | None = None,
    slo_latency_ms: float | None = None,
    latency_column: str = "p95_ms",
) -> Knee | None:
    """The highest load level before the first degraded one.

    Give ``degradation`` (from :func:`degradation_table`) for the quality knee,
    or ``slo_latency_ms`` for the latency knee (a level is degraded when its
    ``latency_column`` exceeds the SLO). Returns None for a latency knee
    without an SLO.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1, 2], "users": [2.0, 8.0, 32.0], "p95_ms": [50.0, 90.0, 400.0]})
    >>> find_knee(levels, slo_latency_ms=200).level
    1
    """
    ordered = load_order(levels)
    if degradation is not None:
        flags = load_order(degradation)["degraded"].to_numpy(dtype=bool)
        criterion = "quality significantly worse than baseline (Holm-adjusted) by more than the tolerance"
    elif slo_latency_ms is not None:
        if latency_column not in ordered.columns:
            raise AnalysisInputError(f"level table has no column '{latency_column}'")
        flags = ordered[latency_column].to_numpy(dtype=float) > slo_latency_ms
        criterion = f"{latency_column} above the {slo_latency_ms:g} ms SLO"
    else:
        return None
    bad = np.flatnonzero(flags)
    unit = load_unit(levels)
    column = _load_column(ordered)

    def at(row: pd.Series | None) -> tuple[int | None, float | None, float | None]:
        if row is None:
            return None, None, None
        return int(row["level"]), float(row["users"]), float(row[column])

    if len(bad) == 0:
        good, worst = ordered.iloc[-1], None
    elif bad[0] == 0:
        good, worst = None, ordered.iloc[0]
    else:
        good, worst = ordered.iloc[int(bad[0]) - 1], ordered.iloc[int(bad[0])]
    level, users, load = at(good)
    bad_level, bad_users, bad_load = at(worst)
    return Knee(level, users, bad_level, bad_users, criterion, load=load, first_bad_load=bad_load, unit=unit)
