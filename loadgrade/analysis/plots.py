"""Charts of a run, each readable on its own (title, axis labels with units, legend).

Every function takes DataFrames and returns a :class:`matplotlib.figure.Figure`
built without pyplot, so nothing depends on a display or on global state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from loadgrade.analysis.degradation import Knee, load_order, load_unit
from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.metrics import ERROR_KINDS, LabelPairs, per_class_recall, sorted_classes
from loadgrade.analysis.report import confusion_level

if TYPE_CHECKING:
    from loadgrade.analysis.report import RunAnalysis

__all__ = [
    "plot_accuracy",
    "plot_class_recall",
    "plot_compare",
    "plot_confusion",
    "plot_errors",
    "plot_latency",
    "plot_over_time",
    "plot_throughput",
    "write_charts",
]

_SIZE = (8.0, 4.8)


def _check_levels(levels: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    missing = [c for c in ["level", "users", *columns] if c not in levels.columns]
    if missing:
        raise AnalysisInputError(f"level table has no column {', '.join(repr(c) for c in missing)}")
    return load_order(levels)


def _offered(ordered: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The x axis of a chart against load: the offered users, or the target rate in an open-model run."""
    unit = load_unit(ordered)
    column = "load" if unit != "users" and "load" in ordered.columns else "users"
    return ordered[column].to_numpy(dtype=float), f"offered load ({unit})"


def _knee_line(ax: Axes, knee: Knee | None, *, label: str) -> None:
    if knee is not None and knee.first_bad_level is not None and knee.load is not None:
        ax.axvline(knee.load, color="tab:red", linestyle="--", linewidth=1.2, label=label)


def _empty_note(ax: Axes, text: str) -> None:
    """Say in the panel why there is nothing to draw, rather than draw nothing (or fail)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="tab:gray", wrap=True)


def plot_accuracy(levels: pd.DataFrame, *, knee: Knee | None = None, title: str = "") -> Figure:
    """Accuracy over every request and among answered requests against offered load, with 95 % bands and the knee.

    The verdict's curve is the one over every request (a failed, timed-out
    or shed request is a wrong answer); the one among answered requests shows
    whether the answers the server did give got worse. A level without any
    answer has no point on the second curve.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 8.0], "accuracy": [0.9, 0.8],
    ...     "accuracy_low": [0.85, 0.75], "accuracy_high": [0.93, 0.84], "effective_accuracy": [0.9, 0.7],
    ...     "effective_accuracy_low": [0.85, 0.65], "effective_accuracy_high": [0.93, 0.75]})
    >>> plot_accuracy(levels).axes[0].get_ylabel()
    'accuracy (%)'
    """
    ordered = _check_levels(levels, ["accuracy", "effective_accuracy"])
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    x, x_label = _offered(ordered)
    for name, label, color in (
        ("effective_accuracy", "over every request (failed ones count as wrong)", "tab:orange"),
        ("accuracy", "among answered requests", "tab:blue"),
    ):
        y = 100 * ordered[name].to_numpy(dtype=float)
        ax.plot(x, y, marker="o", color=color, label=label)
        if f"{name}_low" in ordered.columns:
            low = 100 * ordered[f"{name}_low"].to_numpy(dtype=float)
            high = 100 * ordered[f"{name}_high"].to_numpy(dtype=float)
            ax.fill_between(x, low, high, color=color, alpha=0.2, label=f"95% interval ({label.split(' (')[0]})")
    unanswered = ordered["accuracy"].isna().to_numpy() & ordered["effective_accuracy"].notna().to_numpy()
    if unanswered.any():
        ax.scatter(
            x[unanswered],
            np.zeros(int(unanswered.sum())),
            marker="v",
            s=60,
            color="tab:gray",
            zorder=5,
            label="no request answered",
        )
    if "degraded" in ordered.columns:
        bad = ordered["degraded"].to_numpy(dtype=bool)
        if bad.any():
            ax.scatter(
                x[bad],
                100 * ordered["effective_accuracy"].to_numpy(dtype=float)[bad],
                marker="x",
                s=80,
                color="tab:red",
                zorder=5,
                label="significantly worse than baseline",
            )
    _knee_line(ax, knee, label=f"knee: {knee.load:g} {knee.unit}" if knee and knee.load is not None else "knee")
    ax.set_xlabel(x_label)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title or "Accuracy against load")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig


def plot_latency(levels: pd.DataFrame, *, slo_latency_ms: float | None = None, title: str = "") -> Figure:
    """Latency percentiles (p50, p90, p95, p99) of successful responses against offered load.

    In an open-model run (``p50_sched_ms`` ... present) each percentile is drawn twice: from the send (solid)
    and from the scheduled time (dashed, the same colour), so a stall hidden by coordinated omission shows as
    the gap between them.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [4.0, 4.0], "load": [10.0, 20.0], "load_unit": "req/s",
    ...     "p50_ms": [5.0, 6.0], "p90_ms": [7.0, 8.0], "p95_ms": [8.0, 9.0], "p99_ms": [9.0, 10.0],
    ...     "p50_sched_ms": [5.0, 60.0], "p90_sched_ms": [7.0, 80.0], "p95_sched_ms": [8.0, 90.0],
    ...     "p99_sched_ms": [9.0, 100.0]})
    >>> ax = plot_latency(levels).axes[0]
    >>> ax.get_xlabel(), ax.get_legend_handles_labels()[1]
    ('offered load (req/s)', ['p50', 'p50 from schedule', 'p90', 'p90 from schedule', 'p95', 'p95 from schedule', \
'p99', 'p99 from schedule'])
    """
    columns = ["p50_ms", "p90_ms", "p95_ms", "p99_ms"]
    ordered = _check_levels(levels, columns)
    scheduled = all(c.replace("_ms", "_sched_ms") in ordered.columns for c in columns)
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    x, x_label = _offered(ordered)
    for column, color in zip(columns, ("tab:blue", "tab:orange", "tab:green", "tab:purple"), strict=True):
        name = column.replace("_ms", "")
        ax.plot(x, ordered[column].to_numpy(dtype=float), marker="o", color=color, label=name)
        if scheduled:
            corrected = ordered[column.replace("_ms", "_sched_ms")].to_numpy(dtype=float)
            ax.plot(x, corrected, marker="s", linestyle="--", color=color, label=f"{name} from schedule")
    if slo_latency_ms is not None:
        ax.axhline(slo_latency_ms, color="tab:red", linestyle="--", label=f"SLO {slo_latency_ms:g} ms")
    ax.set_xlabel(x_label)
    ax.set_ylabel("latency (ms)")
    what = "successful responses; dashed: from the scheduled time" if scheduled else "successful responses"
    ax.set_title(title or f"Latency percentiles against load ({what})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2 if scheduled else 1)
    return fig


def plot_throughput(levels: pd.DataFrame, *, title: str = "") -> Figure:
    """Achieved throughput and quality goodput (correct within SLO) against offered users."""
    ordered = _check_levels(levels, ["throughput_rps", "goodput_rps"])
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    x, x_label = _offered(ordered)
    if load_unit(ordered) == "req/s":
        ax.plot(x, x, color="tab:gray", linestyle=":", label="offered rate")
    ax.plot(x, ordered["throughput_rps"].to_numpy(dtype=float), marker="o", label="throughput (requests/s)")
    ax.plot(x, ordered["goodput_rps"].to_numpy(dtype=float), marker="s", label="goodput (correct within SLO/s)")
    ax.set_xlabel(x_label)
    ax.set_ylabel("per second")
    ax.set_title(title or "Throughput and quality goodput against load")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_resources(levels: pd.DataFrame, *, title: str = "") -> Figure:
    """What the load cost the served model: its CPU and memory, and its queue when it reports one, per level.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 8.0], "cpu_percent": [20.0, 90.0],
    ...                        "rss_bytes": [1e8, 1.2e8]})
    >>> [ax.get_ylabel() for ax in plot_resources(levels).axes]
    ['CPU (% of a core)', 'memory (MB)']
    """
    ordered = _check_levels(levels, [])
    x, x_label = _offered(ordered)
    queues = [c for c in ordered.columns if re.search(r"(in_flight|queue|pending)[^:]*$", str(c))]
    panels = [c for c in ("cpu_percent", "rss_bytes") if c in ordered.columns] + queues[:1]
    fig = Figure(figsize=(_SIZE[0], 2.6 * max(len(panels), 1)), layout="constrained")
    labels = {"cpu_percent": "CPU (% of a core)", "rss_bytes": "memory (MB)"}
    for i, column in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        values = ordered[column].to_numpy(dtype=float) / (1e6 if column == "rss_bytes" else 1.0)
        ax.plot(x, values, marker="o")
        ax.set_ylabel(labels.get(column, str(column)))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.set_title(title or "What the load cost the served model")
        if i == len(panels) - 1:
            ax.set_xlabel(x_label)
    return fig


#: Stacked classes of failure in the errors chart: HTTP errors split by what they mean, then the other kinds.
_ERROR_STACK = (
    ("error_rate_shed", "shed (HTTP 429/503)"),
    ("error_rate_client", "client error (other 3xx/4xx)"),
    ("error_rate_server", "server error (other HTTP)"),
    *((f"error_rate_{k}", k) for k in ERROR_KINDS if k != "http"),
)


def plot_errors(levels: pd.DataFrame, *, title: str = "") -> Figure:
    """Failed requests by class (stacked bars, % of requests) per load level.

    HTTP errors are split into shed (429/503: the server refusing load),
    client errors (other 3xx/4xx: the scenario asks wrongly) and other server
    errors when the table has those columns, else shown as one ``http`` bar.
    A class that never failed at any level is left out of the legend.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 8.0], "error_rate": [0.0, 0.6],
    ...     "error_rate_http": [0.0, 0.5], "error_rate_shed": [0.0, 0.4], "error_rate_client": [0.0, 0.1],
    ...     "error_rate_server": [0.0, 0.0], "error_rate_timeout": [0.0, 0.1]})
    >>> plot_errors(levels).axes[0].get_legend_handles_labels()[1]
    ['shed (HTTP 429/503)', 'client error (other 3xx/4xx)', 'timeout']
    """
    ordered = _check_levels(levels, ["error_rate"])
    split = "error_rate_shed" in ordered.columns
    stack = _ERROR_STACK if split else tuple((f"error_rate_{k}", k) for k in ERROR_KINDS)
    stack = tuple((column, label) for column, label in stack if column in ordered.columns)
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(ordered))
    bottom = np.zeros(len(ordered))
    for column, label in stack:
        values = 100 * ordered[column].to_numpy(dtype=float)
        if not np.nan_to_num(values).any():
            continue
        ax.bar(positions, values, bottom=bottom, label=label)
        bottom += np.nan_to_num(values)
    x, x_label = _offered(ordered)
    ax.set_xticks(positions, [f"{u:g}" for u in x])
    ax.set_xlabel(x_label)
    ax.set_ylabel("failed (% of requests)")
    ax.set_title(title or "Failed requests by kind against load")
    ax.grid(alpha=0.3, axis="y")
    if bottom.any():
        ax.legend(title="failure", fontsize="small")
    else:
        ax.set_ylim(0, 1)
        _empty_note(ax, "no request failed")
    return fig


def plot_over_time(joined: pd.DataFrame, *, bin_s: float = 5.0, title: str = "") -> Figure:
    """Accuracy over the run in ``bin_s`` bins, over every labelled request and among answered ones, against the load.

    The load is the active users; in an open-model run (``target_rps`` recorded) it is the stages' target
    rate and the rate achieved in each bin instead, since the users are only a cap there.
    """
    missing = [c for c in ("t_sent", "users_active", "ok", "has_truth", "correct") if c not in joined.columns]
    if missing:
        raise AnalysisInputError(f"joined records have no column {', '.join(repr(c) for c in missing)}")
    t = joined["t_sent"].to_numpy(dtype=float)
    elapsed = t - t.min()
    bins = np.floor(elapsed / bin_s).astype(np.int64)
    scored = joined["ok"].to_numpy(dtype=bool) & joined["has_truth"].to_numpy(dtype=bool)
    correct = joined["correct"].fillna(False).to_numpy(dtype=bool)
    rate = joined["target_rps"].to_numpy(dtype=float) if "target_rps" in joined.columns else None
    open_model = rate is not None and bool(np.isfinite(rate).any())
    frame = pd.DataFrame(
        {
            "bin": bins,
            "scored": scored,
            "labelled": joined["has_truth"].to_numpy(dtype=bool),
            "correct": correct & scored,
            "users": joined["users_active"].to_numpy(dtype=float),
            "target": rate if open_model else np.nan,
        }
    )
    grouped = frame.groupby("bin").agg(
        scored=("scored", "sum"),
        labelled=("labelled", "sum"),
        correct=("correct", "sum"),
        users=("users", "median"),
        target=("target", "median"),
        sent=("scored", "size"),
    )
    centre = (grouped.index.to_numpy(dtype=float) + 0.5) * bin_s
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = 100 * grouped["correct"].to_numpy(dtype=float) / grouped["scored"].to_numpy(dtype=float)
        effective = 100 * grouped["correct"].to_numpy(dtype=float) / grouped["labelled"].to_numpy(dtype=float)
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(centre, effective, color="tab:orange", marker=".", label="over every request")
    ax.plot(centre, accuracy, color="tab:blue", marker=".", label="among answered requests")
    ax.set_ylim(-3, 103)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_xlabel("time since first request (s)")
    ax.set_ylabel("accuracy (%)")
    load_ax = ax.twinx()
    if open_model:
        load_ax.step(centre, grouped["target"].to_numpy(dtype=float), where="mid", color="tab:gray", label="target")
        achieved = grouped["sent"].to_numpy(dtype=float) / bin_s
        load_ax.plot(centre, achieved, color="tab:gray", linestyle=":", marker=".", label="achieved")
        load_ax.set_ylabel("rate (req/s): target (step), achieved (dotted)", color="tab:gray")
        load_ax.legend(loc="lower right", fontsize="small")
    else:
        load_ax.step(centre, grouped["users"].to_numpy(dtype=float), where="mid", color="tab:gray", label="users")
        load_ax.set_ylabel("active users", color="tab:gray")
    what = "target rate" if open_model else "users"
    ax.set_title(title or f"Accuracy and {what} over time ({bin_s:g} s bins)")
    ax.grid(alpha=0.3)
    return fig


def plot_class_recall(
    recall: pd.DataFrame, *, users: pd.Series | None = None, unit: str = "users", title: str = ""
) -> Figure:
    """Heatmap of per-class recall (rows: classes, columns: load levels), from :func:`analysis.per_class_recall`."""
    fig = Figure(
        figsize=(max(6.0, 0.6 * len(recall) + 3), max(3.0, 0.35 * recall.shape[1] + 1.5)), layout="constrained"
    )
    ax = fig.add_subplot()
    values = 100 * recall.to_numpy(dtype=float).T
    image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=100)
    labels = [f"{users.get(level, level):g}" if users is not None else str(level) for level in recall.index]
    ax.set_xticks(np.arange(len(recall.index)), labels)
    ax.set_yticks(np.arange(recall.shape[1]), [str(c) for c in recall.columns])
    ax.set_xlabel(f"offered load ({unit})" if users is not None else "level")
    ax.set_ylabel("class")
    fig.colorbar(image, ax=ax, label="recall (%)")
    ax.set_title(title or "Per-class recall against load")
    return fig


def plot_confusion(
    joined: pd.DataFrame, *, levels: list[int], labels: list[str] | None = None, titles: list[str] | None = None
) -> Figure:
    """Row-normalised confusion matrices (scikit-learn) of successful responses, one panel per level.

    A level without any successful, labelled answer (every request failed)
    gets a panel that says so, with its failed requests, instead of a matrix.

    Examples
    --------
    >>> joined = pd.DataFrame({"level": [0, 0, 1, 1], "ok": [True, True, False, False], "has_truth": True,
    ...     "y_true": ["a", "b", "a", "b"], "y_pred": ["a", "b", None, None]})
    >>> fig = plot_confusion(joined, levels=[0, 1])
    >>> [t.get_text() for t in fig.axes[1].texts]
    ['no successful answer at this level (2 requests, 2 failed)']
    """
    missing = [c for c in ("level", "ok", "has_truth", "y_true", "y_pred") if c not in joined.columns]
    if missing:
        raise AnalysisInputError(f"joined records have no column {', '.join(repr(c) for c in missing)}")
    ok = joined["ok"].to_numpy(dtype=bool)
    scored = ok & joined["has_truth"].to_numpy(dtype=bool)
    y_true, y_pred = joined["y_true"].to_numpy(), joined["y_pred"].to_numpy()
    labelled = joined["has_truth"].to_numpy(dtype=bool)
    classes = labels or sorted_classes(np.concatenate([pd.unique(y_true[labelled]), pd.unique(y_pred[scored])]))
    pairs = LabelPairs(y_true, y_pred)
    level_of = joined["level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    fig = Figure(figsize=(5.2 * len(levels), 4.6), layout="constrained")
    for i, level in enumerate(levels):
        ax = fig.add_subplot(1, len(levels), i + 1)
        at_level = level_of == level
        true_keys, pred_keys, count = pairs.counts(scored & at_level)
        if count.sum() == 0 or not classes:
            n, n_failed = int(at_level.sum()), int((at_level & ~ok).sum())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[i] if titles else f"level {level}")
            _empty_note(ax, f"no successful answer at this level ({n} requests, {n_failed} failed)")
            continue
        matrix = confusion_matrix(true_keys.astype(str), pred_keys.astype(str), labels=classes, sample_weight=count)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = matrix / matrix.sum(axis=1, keepdims=True)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0)
        ax.set_yticks(ticks, classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(titles[i] if titles else f"level {level}")
        if len(classes) <= 12:
            for (r, c), count in np.ndenumerate(matrix):
                ax.text(
                    c,
                    r,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[r, c] > 0.5 else "black",
                )
    fig.suptitle("Confusion matrices (rows: true class; colour: share of the row)")
    return fig


def plot_compare(table: pd.DataFrame, *, names: tuple[str, str] = ("A", "B"), title: str = "") -> Figure:
    """Accuracy of two runs against offered users with 95 % Wilson bands, from :func:`analysis.compare_runs`.

    Levels where B is significantly worse (better) than A after Holm correction are marked.

    Examples
    --------
    >>> table = pd.DataFrame({"users": [2.0, 8.0], "metric": "accuracy", "accuracy_a": [0.9, 0.9],
    ...     "accuracy_a_low": [0.85, 0.85], "accuracy_a_high": [0.94, 0.94], "accuracy_b": [0.9, 0.7],
    ...     "accuracy_b_low": [0.85, 0.64], "accuracy_b_high": [0.94, 0.75],
    ...     "verdict": ["no significant difference", "B worse"]})
    >>> plot_compare(table, names=("v1", "v2")).axes[0].get_legend_handles_labels()[1]
    ['v1 (A)', '95% interval v1', 'v2 (B)', '95% interval v2', 'B significantly worse']
    """
    metric = str(table["metric"].iloc[0]) if "metric" in table.columns and len(table) else "accuracy"
    missing = [c for c in ("users", "verdict", f"{metric}_a", f"{metric}_b") if c not in table.columns]
    if missing:
        raise AnalysisInputError(f"comparison table has no column {', '.join(repr(c) for c in missing)}")
    ordered = table.sort_values("users", kind="stable")
    x = ordered["users"].to_numpy(dtype=float)
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    for side, name, color in (("a", names[0], "tab:blue"), ("b", names[1], "tab:orange")):
        column = f"{metric}_{side}"
        ax.plot(
            x, 100 * ordered[column].to_numpy(dtype=float), marker="o", color=color, label=f"{name} ({side.upper()})"
        )
        if f"{column}_low" in ordered.columns:
            ax.fill_between(
                x,
                100 * ordered[f"{column}_low"].to_numpy(dtype=float),
                100 * ordered[f"{column}_high"].to_numpy(dtype=float),
                color=color,
                alpha=0.2,
                label=f"95% interval {name}",
            )
    for verdict, marker, color in (("B worse", "x", "tab:red"), ("B better", "^", "tab:green")):
        flagged = (ordered["verdict"] == verdict).to_numpy()
        if flagged.any():
            ax.scatter(
                x[flagged],
                100 * ordered[f"{metric}_b"].to_numpy(dtype=float)[flagged],
                marker=marker,
                s=80,
                color=color,
                zorder=5,
                label=f"B significantly {verdict.split()[1]}",
            )
    ax.set_xlabel("offered load (users)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(title or f"{metric.replace('_', ' ').capitalize()} against load: {names[0]} (A) and {names[1]} (B)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig


def write_charts(analysis: RunAnalysis, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every chart that applies to the run as PNG into ``out_dir``; returns name to path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = analysis.summary
    levels = analysis.levels
    figures: dict[str, Figure] = {}
    if summary.task != "regression":
        figures["accuracy.png"] = plot_accuracy(levels, knee=summary.quality_knee)
    figures["latency.png"] = plot_latency(levels, slo_latency_ms=summary.slo_latency_ms)
    figures["throughput.png"] = plot_throughput(levels)
    figures["errors.png"] = plot_errors(levels)
    if "cpu_percent" in levels.columns or "rss_bytes" in levels.columns:
        figures["resources.png"] = plot_resources(levels)
    # only the columns the charts read: filtering the whole frame would copy every column of every record
    columns = ["t_sent", "users_active", "ok", "has_truth", "correct", "level", "y_true", "y_pred"]
    if summary.load_unit == "req/s":
        columns.append("target_rps")
    joined = analysis.joined[[c for c in columns if c in analysis.joined.columns]]
    if joined["level"].isna().any():
        joined = joined[joined["level"].notna()]
    if summary.task != "regression":
        figures["over_time.png"] = plot_over_time(joined)
    if summary.task == "classification":
        offered, _ = _offered(levels)
        users = pd.Series(offered, index=levels["level"].to_numpy())
        recall = per_class_recall(joined)
        if 0 < recall.shape[1] <= 100:
            figures["class_recall.png"] = plot_class_recall(recall, users=users, unit=summary.load_unit)
        classes = sorted_classes(np.concatenate([pd.unique(joined["y_true"]), pd.unique(joined["y_pred"])]))
        if len(classes) <= 30:
            base, other, which = summary.baseline, *confusion_level(summary)
            figures["confusion.png"] = plot_confusion(
                joined,
                levels=[base.level, other.level],
                labels=classes,
                titles=[
                    f"baseline: {base.load if base.load is not None else base.users:g} {summary.load_unit}",
                    f"{which}: {other.load if other.load is not None else other.users:g} {summary.load_unit}",
                ],
            )
    paths = {}
    for name, figure in figures.items():
        paths[name] = out / name
        figure.savefig(paths[name], dpi=110)
    return paths
