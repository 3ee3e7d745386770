"""Compare two runs level by level: is B (e.g. model v2) worse than A (v1) under the same load?

Levels are matched by offered users; when a run visits the same user count
more than once (a ramp up and down), the k-th visit in A is matched with the
k-th in B. At each matched level the comparison is paired with the *sample*
as the unit: on the samples answered at that level in both runs, each
sample's accuracy in B minus its accuracy in A, averaged over those shared
samples, with the interval and test of :func:`loadgrade.analysis.stats.paired_difference`
(McNemar and Newcombe's paired interval when each sample's outcome is fixed, a
paired t-interval and sign-flip test when repeats disagree). The two runs may
have replayed different parts of the dataset or repeated samples differently;
only the pairing keeps that from passing for a change of the model. The
marginal difference (all records of each run) is kept as context. p-values are
Holm-adjusted across levels.

A run that did not finish, or lost records, still gets compared, but never
silently: its warnings travel with the table (``table.attrs["warnings"]``),
are printed first by :func:`format_comparison`, qualify
:func:`compare_conclusion` and are written to ``compare.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loadgrade.analysis.degradation import (
    METRICS,
    _marginal_metric,
    _paired_comparison,
    _sample_codes,
    _SampleCounts,
    load_order,
)
from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.io import output_dir
from loadgrade.analysis.plots import plot_compare
from loadgrade.analysis.report import ANALYSIS_VERSION, RunAnalysis, _jsonable
from loadgrade.analysis.stats import holm_adjust

__all__ = ["compare_conclusion", "compare_runs", "comparison_warnings", "format_comparison", "write_comparison"]

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


def _run_warnings(a: RunAnalysis, b: RunAnalysis) -> list[str]:
    """What makes either run less than a whole run, one line each, naming the run."""
    warnings: list[str] = []
    for name, run in (("A", a), ("B", b)):
        summary = run.summary
        if summary.incomplete and not summary.warnings:
            warnings.append(
                f"run {name} did not finish (run.json has ended_at null): its levels cover only the records written"
            )
        warnings.extend(f"run {name}: {warning}" for warning in summary.warnings)
    return warnings


def compare_runs(
    a: RunAnalysis,
    b: RunAnalysis,
    *,
    metric: str = "effective_accuracy",
    alpha: float = 0.05,
    confidence: float = 0.95,
    tolerance: float = 0.0,
) -> pd.DataFrame:
    """Quality of run B against run A at each load level both runs reached, sample by sample.

    Parameters
    ----------
    a, b : RunAnalysis
        From :func:`analysis.analyse_run`; A is the reference (e.g. the current model).
    metric : {"effective_accuracy", "accuracy"}, default "effective_accuracy"
        With errors counted as wrong (what clients received), or among
        successful responses only (model quality).
    alpha : float, default 0.05
        Family-wise error rate of the Holm-adjusted tests.
    confidence : float, default 0.95
        Level of the interval on the paired difference.
    tolerance : float, default 0.0
        A significant difference must also exceed this (a share) to be flagged.

    Returns
    -------
    pandas.DataFrame
        One row per matched level in load order: ``users``, ``visit`` (k-th
        level at those users), ``level_a``/``level_b``, ``n_a``/``n_b``
        (answers counted for the metric), ``n_correct_a``/``n_correct_b``, the
        metric of each run with ``_low``/``_high`` bounds (e.g.
        ``effective_accuracy_a``, ``effective_accuracy_a_low``), ``diff`` (B
        minus A, paired: mean over the shared samples of each sample's
        accuracy in B minus in A) with ``diff_low``/``diff_high``,
        ``marginal_diff`` (B's metric minus A's over all their records:
        context), ``test`` ("mcnemar-exact", "mcnemar-chi2",
        "paired-t/sign-flip", or "none" when a side is missing or no sample
        was answered in both), ``n_pairs`` (shared samples),
        ``b_worse_pairs``/``b_better_pairs`` (shared samples whose accuracy
        is lower/higher in B), ``p_value``, ``p_holm``, ``verdict`` ("B worse",
        "B better", "no significant difference", "no shared samples", "only in
        A", "only in B"), ``p95_ms_a``/``p95_ms_b``,
        ``throughput_rps_a``/``throughput_rps_b``, ``error_rate_a`` /
        ``error_rate_b``, ``consistency`` (share of the samples answered
        successfully in both whose first predictions agree),
        ``n_consistency`` and ``metric``. ``table.attrs["warnings"]`` lists
        what the reader must know first: a run that did not finish or lost
        records, a level without shared samples.
    """
    _check_pair(a, b, metric, alpha, tolerance)
    visits_a, visits_b = _visits(a.levels), _visits(b.levels)
    table = _side(visits_a, metric, "a").merge(
        _side(visits_b, metric, "b"), on=["users", "visit"], how="outer", sort=True
    )
    codes_a, ids_a = _sample_codes(a.joined)
    codes_b, _ = _sample_codes(b.joined, within=ids_a)  # B's samples coded as in A, so codes compare directly
    values_a, values_b = visits_a["level"].to_numpy(dtype=float), visits_b["level"].to_numpy(dtype=float)
    counts_a = _SampleCounts(a.joined, values_a, metric=metric, codes=codes_a)
    counts_b = _SampleCounts(b.joined, values_b, metric=metric, codes=codes_b)
    position_a = {float(v): i for i, v in enumerate(values_a)}
    position_b = {float(v): i for i, v in enumerate(values_b)}
    marginal_a = dict(zip(values_a, _marginal_metric(visits_a, metric), strict=True))
    marginal_b = dict(zip(values_b, _marginal_metric(visits_b, metric), strict=True))
    rows: list[dict[str, Any]] = []
    for row in table.to_dict("records"):
        result: dict[str, Any] = {
            "diff": np.nan,
            "diff_low": np.nan,
            "diff_high": np.nan,
            "marginal_diff": np.nan,
            "test": "none",
            "n_pairs": 0,
            "b_worse_pairs": 0,
            "b_better_pairs": 0,
            "p_value": np.nan,
            "consistency": np.nan,
            "n_consistency": 0,
        }
        if not pd.isna(row["level_a"]) and not pd.isna(row["level_b"]):
            level_a, level_b = float(row["level_a"]), float(row["level_b"])
            paired = _paired_comparison(
                counts_a, position_a[level_a], counts_b, position_b[level_b], confidence=confidence
            )
            result.update(paired)
            result["b_worse_pairs"], result["b_better_pairs"] = result.pop("worse_pairs"), result.pop("better_pairs")
            result["marginal_diff"] = float(marginal_b[level_b] - marginal_a[level_a])
        rows.append(result)
    tests = pd.DataFrame(rows, index=table.index)
    out = pd.concat([table, tests], axis=1)
    out["p_holm"] = holm_adjust(out["p_value"].to_numpy(dtype=float))
    difference = out["diff"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        significant = out["p_holm"].to_numpy(dtype=float) < alpha
        verdict = np.where(
            significant & (difference < -tolerance),
            "B worse",
            np.where(significant & (difference > tolerance), "B better", "no significant difference"),
        )
    verdict = np.where(out["test"] == "none", "no shared samples", verdict)
    verdict = np.where(out["level_b"].isna(), "only in A", np.where(out["level_a"].isna(), "only in B", verdict))
    out["verdict"] = verdict
    out["metric"] = metric
    first = ["users", "visit", "level_a", "level_b", "n_a", "n_b", "n_correct_a", "n_correct_b"]
    quality = [f"{metric}_{side}{part}" for side in ("a", "b") for part in ("", "_low", "_high")]
    carried = [f"{c}_{side}" for c in _CARRIED for side in ("a", "b")]
    tests_columns = [
        "diff",
        "diff_low",
        "diff_high",
        "marginal_diff",
        "test",
        "n_pairs",
        "b_worse_pairs",
        "b_better_pairs",
    ]
    columns = [
        *first,
        *quality,
        *tests_columns,
        "p_value",
        "p_holm",
        "verdict",
        *carried,
        "consistency",
        "n_consistency",
        "metric",
    ]
    result_table = out[columns].reset_index(drop=True)
    warnings = _run_warnings(a, b)
    unpaired = result_table.loc[result_table["verdict"] == "no shared samples", "users"]
    if len(unpaired):
        warnings.append(
            f"no sample was answered in both runs at {', '.join(f'{u:g}' for u in unpaired)} users: "
            "those levels are not compared (different datasets, or nothing was answered)"
        )
    result_table.attrs["warnings"] = warnings
    return result_table


def comparison_warnings(table: pd.DataFrame) -> list[str]:
    """The warnings :func:`compare_runs` attached to its table (none for a table read back from CSV).

    Examples
    --------
    >>> table = pd.DataFrame({"users": [2.0]})
    >>> comparison_warnings(table)
    []
    >>> table.attrs["warnings"] = ["run B: the run did not finish"]
    >>> comparison_warnings(table)
    ['run B: the run did not finish']
    """
    return [str(w) for w in table.attrs.get("warnings", [])]


def compare_conclusion(table: pd.DataFrame) -> str:
    """One sentence summing up :func:`compare_runs`, qualified when a run did not finish or lost records.

    Examples
    --------
    >>> compare_conclusion(pd.DataFrame({"users": [2.0, 8.0, 12.0],
    ...     "verdict": ["no significant difference", "B worse", "B worse"]}))
    'B is significantly worse than A at 8, 12 users'
    >>> table = pd.DataFrame({"users": [2.0], "verdict": ["no significant difference"]})
    >>> compare_conclusion(table)
    'no significant difference between A and B at any common load level'
    >>> table.attrs["warnings"] = ["run B: the run did not finish"]
    >>> compare_conclusion(table)
    'no significant difference between A and B at any common load level (with 1 warning: see above)'
    """

    def users(verdict: str) -> str:
        return ", ".join(f"{u:g}" for u in table.loc[table["verdict"] == verdict, "users"])

    matched = ~table["verdict"].isin(["only in A", "only in B", "no shared samples"])
    parts = []
    if not matched.any():
        if (table["verdict"] == "no shared samples").any():
            parts.append("no sample was answered in both runs at a common load level: nothing to compare")
        else:
            parts.append("no load level in common: nothing to compare")
    else:
        if worse := users("B worse"):
            parts.append(f"B is significantly worse than A at {worse} users")
        if better := users("B better"):
            parts.append(f"B is significantly better than A at {better} users")
    sentence = "; ".join(parts) if parts else "no significant difference between A and B at any common load level"
    if warnings := comparison_warnings(table):
        sentence += f" (with {len(warnings)} warning{'' if len(warnings) == 1 else 's'}: see above)"
    return sentence


def _cell(value: Any, spec: str, scale: float = 1.0) -> str:
    return "-" if pd.isna(value) else format(scale * float(value), spec)


def format_comparison(table: pd.DataFrame) -> str:
    """The table printed by ``compare``: its warnings first, then one line per matched level, in load order.

    ``B-A`` is the paired difference on the shared samples (``pairs``), ``marg.`` the difference of the
    marginal figures, given for context.
    """
    metric = str(table["metric"].iloc[0]) if len(table) else "effective_accuracy"
    short = "acc" if metric == "accuracy" else "eff.acc"
    header = (
        f"{'users':>5}  {'n A':>6}  {'n B':>6}  {short + ' A':>8}  {short + ' B':>8}  {'B-A [95% CI]':<22}  "
        f"{'marg.':>6}  {'pairs':>6}  {'test':<18}  {'p Holm':>7}  {'p95 A':>7}  {'p95 B':>7}  "
        f"{'req/s A':>8}  {'req/s B':>8}  verdict"
    )
    lines = [f"WARNING: {warning}" for warning in comparison_warnings(table)]
    if lines:
        lines.append("")
    lines.append(header)
    for row in table.to_dict("records"):
        interval = (
            "-"
            if pd.isna(row["diff"])
            else f"{100 * row['diff']:+.1f} [{100 * row['diff_low']:+.1f}, {100 * row['diff_high']:+.1f}]"
        )
        marginal = "-" if pd.isna(row.get("marginal_diff", np.nan)) else f"{100 * row['marginal_diff']:+.1f}"
        lines.append(
            f"{row['users']:5g}  {_cell(row['n_a'], '.0f'):>6}  {_cell(row['n_b'], '.0f'):>6}  "
            f"{_cell(row[f'{metric}_a'], '.1f', 100):>8}  {_cell(row[f'{metric}_b'], '.1f', 100):>8}  "
            f"{interval:<22}  {marginal:>6}  {_cell(row['n_pairs'], '.0f'):>6}  {row['test']:<18}  "
            f"{_cell(row['p_holm'], '.3g'):>7}  "
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
    """Write ``compare.csv``, ``compare.json`` (settings, warnings, the conclusion, every row) and ``compare.png``.

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
        "warnings": comparison_warnings(table),
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
