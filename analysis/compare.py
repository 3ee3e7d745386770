"""Compare two runs level by level: is B (e.g. model v2) worse than A (v1) under the same load?

Levels are matched by offered users; when a run visits the same user count
more than once (a ramp up and down), the k-th visit in A is matched with the
k-th in B. At each matched level the difference in accuracy gets a Newcombe
interval, and a test: McNemar on the samples answered in both runs when they
cover at least half of the smaller side (the same rule as the baseline
comparison), else the unpaired two-proportion test, because a handful of
shared samples would throw away the power of thousands of unpaired answers.
p-values are Holm-adjusted across levels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.degradation import _PAIRED_MIN_SHARE, METRICS, _Answers, _first_answers, load_order
from analysis.errors import AnalysisInputError
from analysis.io import output_dir
from analysis.plots import plot_compare
from analysis.report import ANALYSIS_VERSION, RunAnalysis, _jsonable
from analysis.stats import holm_adjust, mcnemar_test, newcombe_interval, two_proportion_test

__all__ = ["compare_conclusion", "compare_runs", "format_comparison", "write_comparison"]

_CARRIED = ("p95_ms", "throughput_rps", "error_rate")


def _check_pair(a: RunAnalysis, b: RunAnalysis, metric: str, alpha: float, tolerance: float) -> None:
    if metric not in METRICS:
        raise AnalysisInputError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0 < alpha < 1:
        raise AnalysisInputError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not 0 <= tolerance < 1:
        raise AnalysisInputError(f"tolerance must be in [0, 1) (a share, 0.01 = 1 point), got {tolerance!r}")
    tasks = {a.summary.task, b.summary.task}
    if len(tasks) > 1:
        raise AnalysisInputError(
            f"runs A and B were scored as different tasks ({a.summary.task} and {b.summary.task}); "
            "pass --task to score both the same way"
        )
    if "regression" in tasks:
        raise AnalysisInputError("compare needs an accuracy; these runs are regression (compare MAE by hand for now)")


def _visits(levels: pd.DataFrame) -> pd.DataFrame:
    """Levels in load order keyed by (users, visit): the k-th level at the same offered users."""
    ordered = load_order(levels)  # level indices are chronological, so ties in users stay in visit order
    ordered["visit"] = ordered.groupby("users").cumcount()
    return ordered


def _side(levels: pd.DataFrame, metric: str, suffix: str) -> pd.DataFrame:
    total = "n_scored" if metric == "accuracy" else "n_truth"
    side = pd.DataFrame(
        {
            "users": levels["users"].astype(float),
            "visit": levels["visit"],
            "level": levels["level"].astype("Int64"),
            "n": levels[total].astype("Int64"),
            "n_correct": levels["n_correct"].astype("Int64"),
            metric: levels[metric].astype(float),
            f"{metric}_low": levels[f"{metric}_low"].astype(float),
            f"{metric}_high": levels[f"{metric}_high"].astype(float),
        }
    )
    for column in _CARRIED:
        side[column] = levels[column].astype(float) if column in levels.columns else np.nan
    names = {c: f"{c}_{suffix}" for c in side.columns if c not in ("users", "visit")}
    names.update({f"{metric}_{bound}": f"{metric}_{suffix}_{bound}" for bound in ("low", "high")})
    return side.rename(columns=names)


def compare_runs(
    a: RunAnalysis,
    b: RunAnalysis,
    *,
    metric: str = "accuracy",
    alpha: float = 0.05,
    confidence: float = 0.95,
    tolerance: float = 0.0,
) -> pd.DataFrame:
    """Accuracy of run B against run A at each load level both runs reached.

    Parameters
    ----------
    a, b : RunAnalysis
        From :func:`analysis.analyse_run`; A is the reference (e.g. the current model).
    metric : {"accuracy", "effective_accuracy"}, default "accuracy"
        Accuracy among successful responses, or with errors counted as wrong.
    alpha : float, default 0.05
        Family-wise error rate of the Holm-adjusted tests.
    confidence : float, default 0.95
        Level of the Newcombe interval on the difference.
    tolerance : float, default 0.0
        A significant difference must also exceed this (a share) to be flagged.

    Returns
    -------
    pandas.DataFrame
        One row per matched level in load order: ``users``, ``visit`` (k-th
        level at those users), ``level_a``/``level_b``, ``n_a``/``n_b``
        (answers scored), ``n_correct_a``/``n_correct_b``, the metric of each
        run with ``_low``/``_high`` Wilson bounds (e.g. ``accuracy_a``,
        ``accuracy_a_low``), ``diff`` (B minus A) with ``diff_low`` /
        ``diff_high``, ``test`` ("mcnemar-exact", "mcnemar-chi2",
        "two-proportion-z", or "none" when a side is missing or empty),
        ``n_pairs`` (samples answered in both), ``b_worse_pairs`` (right in A,
        wrong in B) and ``b_better_pairs``, ``p_value``, ``p_holm``,
        ``verdict`` ("B worse", "B better", "no significant difference",
        "only in A", "only in B"), ``p95_ms_a``/``p95_ms_b``,
        ``throughput_rps_a``/``throughput_rps_b``, ``error_rate_a`` /
        ``error_rate_b`` and ``metric``.
    """
    _check_pair(a, b, metric, alpha, tolerance)
    table = _side(_visits(a.levels), metric, "a").merge(
        _side(_visits(b.levels), metric, "b"), on=["users", "visit"], how="outer", sort=True
    )
    joined_a = a.joined[a.joined["level"].notna()]
    joined_b = b.joined[b.joined["level"].notna()]
    codes = pd.factorize(pd.concat([joined_a["sample_id"], joined_b["sample_id"]], ignore_index=True))[0]
    codes_a, codes_b = codes[: len(joined_a)].astype(np.int64), codes[len(joined_a) :].astype(np.int64)

    class _Sent:
        """One run's scorable answers in send order, so each sample's first answer comes first."""

        def __init__(self, joined: pd.DataFrame, sample_codes: npt.NDArray[np.int64]) -> None:
            order = np.argsort(joined["t_sent"].to_numpy(dtype=float), kind="stable")
            self.codes = sample_codes[order]
            self.correct = joined["correct"].fillna(False).to_numpy(dtype=bool)[order]
            self.predictions = joined["y_pred"].to_numpy()[order]
            self.level = joined["level"].to_numpy(dtype=float)[order]
            usable = joined["has_truth"].to_numpy(dtype=bool)
            if metric == "accuracy":
                usable = usable & joined["ok"].to_numpy(dtype=bool)
            self.usable = usable[order]

        def first_answers(self, level: int) -> _Answers:
            return _first_answers(self.codes, self.correct, self.predictions, self.usable & (self.level == level))

    sent_a, sent_b = _Sent(joined_a, codes_a), _Sent(joined_b, codes_b)
    rows: list[dict[str, Any]] = []
    for row in table.to_dict("records"):
        result: dict[str, Any] = {
            "diff": np.nan,
            "diff_low": np.nan,
            "diff_high": np.nan,
            "test": "none",
            "n_pairs": 0,
            "b_worse_pairs": 0,
            "b_better_pairs": 0,
            "p_value": np.nan,
        }
        present_a, present_b = not pd.isna(row["level_a"]), not pd.isna(row["level_b"])
        if present_a and present_b and row["n_a"] > 0 and row["n_b"] > 0:
            ka, na, kb, nb = (int(row[c]) for c in ("n_correct_a", "n_a", "n_correct_b", "n_b"))
            diff, low, high = (float(x) for x in newcombe_interval(ka, na, kb, nb, confidence=confidence))
            first_a = sent_a.first_answers(int(row["level_a"]))
            first_b = sent_b.first_answers(int(row["level_b"]))
            _, in_a, in_b = np.intersect1d(first_a.codes, first_b.codes, assume_unique=True, return_indices=True)
            right_a, right_b = first_a.correct[in_a], first_b.correct[in_b]
            worse, better = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
            n_pairs = len(in_a)
            if n_pairs > 0 and n_pairs >= _PAIRED_MIN_SHARE * min(len(first_a.codes), len(first_b.codes)):
                p_value, method = mcnemar_test(worse, better)
                test = f"mcnemar-{method}"
            else:
                test, p_value = "two-proportion-z", two_proportion_test(ka, na, kb, nb)
            result.update(
                diff=diff,
                diff_low=low,
                diff_high=high,
                test=test,
                n_pairs=n_pairs,
                b_worse_pairs=worse,
                b_better_pairs=better,
                p_value=p_value,
            )
        rows.append(result)
    tests = pd.DataFrame(rows, index=table.index)
    out = pd.concat([table, tests], axis=1)
    out["p_holm"] = holm_adjust(out["p_value"].to_numpy(dtype=float))
    difference = out["diff"].to_numpy(dtype=float)
    significant = out["p_holm"].to_numpy(dtype=float) < alpha
    verdict = np.where(
        significant & (difference < -tolerance),
        "B worse",
        np.where(significant & (difference > tolerance), "B better", "no significant difference"),
    )
    verdict = np.where(out["level_b"].isna(), "only in A", np.where(out["level_a"].isna(), "only in B", verdict))
    out["verdict"] = verdict
    out["metric"] = metric
    first = ["users", "visit", "level_a", "level_b", "n_a", "n_b", "n_correct_a", "n_correct_b"]
    quality = [f"{metric}_{side}{part}" for side in ("a", "b") for part in ("", "_low", "_high")]
    carried = [f"{c}_{side}" for c in _CARRIED for side in ("a", "b")]
    tests_columns = ["diff", "diff_low", "diff_high", "test", "n_pairs", "b_worse_pairs", "b_better_pairs"]
    columns = [*first, *quality, *tests_columns, "p_value", "p_holm", "verdict", *carried, "metric"]
    return out[columns].reset_index(drop=True)


def compare_conclusion(table: pd.DataFrame) -> str:
    """One sentence summing up :func:`compare_runs`.

    Examples
    --------
    >>> compare_conclusion(pd.DataFrame({"users": [2.0, 8.0, 12.0],
    ...     "verdict": ["no significant difference", "B worse", "B worse"]}))
    'B is significantly worse than A at 8, 12 users'
    >>> compare_conclusion(pd.DataFrame({"users": [2.0], "verdict": ["no significant difference"]}))
    'no significant difference between A and B at any common load level'
    """

    def users(verdict: str) -> str:
        return ", ".join(f"{u:g}" for u in table.loc[table["verdict"] == verdict, "users"])

    matched = ~table["verdict"].isin(["only in A", "only in B"])
    if not matched.any():
        return "no load level in common: nothing to compare"
    parts = []
    if worse := users("B worse"):
        parts.append(f"B is significantly worse than A at {worse} users")
    if better := users("B better"):
        parts.append(f"B is significantly better than A at {better} users")
    return "; ".join(parts) if parts else "no significant difference between A and B at any common load level"


def _cell(value: Any, spec: str, scale: float = 1.0) -> str:
    return "-" if pd.isna(value) else format(scale * float(value), spec)


def format_comparison(table: pd.DataFrame) -> str:
    """The table printed by ``compare``: one line per matched level, in load order."""
    metric = str(table["metric"].iloc[0]) if len(table) else "accuracy"
    short = "acc" if metric == "accuracy" else "eff.acc"
    header = (
        f"{'users':>5}  {'n A':>6}  {'n B':>6}  {short + ' A':>8}  {short + ' B':>8}  {'B-A [95% CI]':<22}  "
        f"{'test':<16}  {'p Holm':>7}  {'p95 A':>7}  {'p95 B':>7}  {'req/s A':>8}  {'req/s B':>8}  verdict"
    )
    lines = [header]
    for row in table.to_dict("records"):
        interval = (
            "-"
            if pd.isna(row["diff"])
            else f"{100 * row['diff']:+.1f} [{100 * row['diff_low']:+.1f}, {100 * row['diff_high']:+.1f}]"
        )
        lines.append(
            f"{row['users']:5g}  {_cell(row['n_a'], '.0f'):>6}  {_cell(row['n_b'], '.0f'):>6}  "
            f"{_cell(row[f'{metric}_a'], '.1f', 100):>8}  {_cell(row[f'{metric}_b'], '.1f', 100):>8}  "
            f"{interval:<22}  {row['test']:<16}  {_cell(row['p_holm'], '.3g'):>7}  "
            f"{_cell(row['p95_ms_a'], '.1f'):>7}  {_cell(row['p95_ms_b'], '.1f'):>7}  "
            f"{_cell(row['throughput_rps_a'], '.1f'):>8}  {_cell(row['throughput_rps_b'], '.1f'):>8}  {row['verdict']}"
        )
    return "\n".join(lines)


def write_comparison(
    table: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    run_a: str = "A",
    run_b: str = "B",
    alpha: float = 0.05,
    chart: bool = True,
) -> dict[str, Path]:
    """Write ``compare.csv``, ``compare.json`` (settings, the conclusion and every row) and ``compare.png``.

    Returns
    -------
    dict
        Output name to path.
    """
    out = output_dir(out_dir)
    paths = {"compare.csv": out / "compare.csv", "compare.json": out / "compare.json"}
    table.to_csv(paths["compare.csv"], index=False)
    document = {
        "analysis_version": ANALYSIS_VERSION,
        "run_a": run_a,
        "run_b": run_b,
        "metric": str(table["metric"].iloc[0]) if len(table) else None,
        "alpha": alpha,
        "conclusion": compare_conclusion(table),
        "levels": [{k: _jsonable(v) for k, v in row.items()} for row in table.to_dict("records")],
    }
    paths["compare.json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if chart:
        names = (Path(run_a).name, Path(run_b).name)
        if names[0] == names[1]:
            names = ("A", "B")
        paths["compare.png"] = out / "compare.png"
        plot_compare(table, names=names).savefig(paths["compare.png"], dpi=110)
    return paths
