"""Charts of a run, each readable on its own (title, axis labels with units, legend) and at a glance.

Every function takes DataFrames and returns a :class:`matplotlib.figure.Figure`
built without pyplot, so nothing depends on a display or on global state. A
``run_name`` keyword puts the run's name under the title, so a chart that
leaves the report still says which run it shows. :func:`write_charts` writes
each chart twice: an SVG (vector, with the numbers of each point as hover
text) and a PNG at HiDPI resolution.
"""

from __future__ import annotations

import html
import io
import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from loadgrade.analysis.degradation import Knee, load_order, load_unit
from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.metrics import ERROR_KINDS, LabelPairs, failure_class, per_class_recall, sorted_classes
from loadgrade.analysis.report import confusion_level

if TYPE_CHECKING:
    from loadgrade.analysis.report import LevelHeadline, RunAnalysis

__all__ = [
    "PNG_DPI",
    "plot_accuracy",
    "plot_class_recall",
    "plot_compare",
    "plot_confusion",
    "plot_errors",
    "plot_latency",
    "plot_over_time",
    "plot_resources",
    "plot_throughput",
    "plot_tokens",
    "run_title",
    "write_charts",
]

_SIZE = (8.0, 4.8)
#: Resolution of the PNG charts: 1600 pixels across an 8-inch chart, sharp on a HiDPI screen at its natural size.
PNG_DPI = 200
# One colour per quantity, the same in every chart: accuracy over every request, among answered requests, and
# a verdict of "significantly worse" (with hatching or a marker shape besides, never colour alone).
_ALL = "tab:orange"
_ANSWERED = "tab:blue"
_BAD = "tab:red"
_GOOD = "tab:green"
# What became of the requests: answered right, answered wrong, answered without a label to judge, no answer.
_CORRECT, _WRONG, _UNLABELLED, _FAILED = "#59a14f", "#edc948", "#bab0ac", "#e15759"
_OTHER_FAILED = "#9c755f"
# An LLM reply that lost its answer (empty, cut at max_tokens, a stream without its end): lost like a failure,
# told apart from one, the same colour in the throughput and the errors chart.
_CUT_SHORT = "#ff9da7"
# Token latencies: the median and the tail, the same two colours as p50 and p95 in the latency chart.
_P50, _P95 = "tab:blue", "tab:green"
# Hover texts on the points of a chart over time stop at this many bins: the SVG stays small.
_MAX_TIME_TIPS = 400


class _Chart(Figure):
    """A figure that carries hover texts for its SVG: the ``gid`` of an invisible target to the text it shows."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tips: dict[str, str] = {}


def _tip(fig: Figure, ax: Axes, x: float, y: float, text: str) -> None:
    """A hover target over the point (x, y): invisible in the PNG, a ``<title>`` tooltip in the SVG."""
    if not isinstance(fig, _Chart) or not (np.isfinite(x) and np.isfinite(y)):
        return
    gid = f"loadgrade-tip-{len(fig.tips)}"
    ax.plot([x], [y], linestyle="none", marker="o", markersize=14, alpha=0.0, gid=gid, label="_hover")
    fig.tips[gid] = text


def _svg(fig: Figure) -> bytes:
    """The figure as SVG with real text (smaller, selectable) and its hover texts as ``<title>`` elements."""
    buffer = io.BytesIO()
    with mpl.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8")
    for gid, tip in getattr(fig, "tips", {}).items():
        # the id only served to find the target: dropped, so two charts inlined in one page share no id
        text = text.replace(f'<g id="{gid}">', f"<g><title>{html.escape(tip, quote=False)}</title>", 1)
    return text.encode("utf-8")


def _title(default: str, title: str, run_name: str) -> str:
    """The chart's title (``title`` overrides the default), with the run's name on a second line."""
    text = title or default
    return f"{text}\n{run_name}" if run_name else text


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


def _column(ordered: pd.DataFrame, name: str) -> np.ndarray:
    """A column as floats, all NaN when the table lacks it (an older level table, a notebook's own)."""
    if name not in ordered.columns:
        return np.full(len(ordered), np.nan)
    return ordered[name].to_numpy(dtype=float)


def _flags(ordered: pd.DataFrame, name: str) -> np.ndarray | None:
    if name not in ordered.columns:
        return None
    return ordered[name].fillna(False).to_numpy(dtype=bool)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %" if np.isfinite(value) else "-"


def _share(value: float) -> str:
    """A share as a whole percentage, with a decimal below 1 % (where "0%" would hide what it counts)."""
    return f"{value:.0%}" if value >= 0.0095 else f"{value:.1%}"


def _interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "no answer"
    if np.isfinite(low) and np.isfinite(high):
        return f"{100 * value:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{100 * value:.1f} %"


def _count(value: float) -> str:
    return f"{value:,.0f}" if np.isfinite(value) else "?"


def _empty_note(ax: Axes, text: str) -> None:
    """Say in the panel why there is nothing to draw, rather than draw nothing (or fail)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="tab:gray", wrap=True)


def _breaks(
    ordered: pd.DataFrame, x: np.ndarray, knee: Knee | None, flags: np.ndarray | None
) -> tuple[float | None, float | None, bool]:
    """Where quality breaks (the first degraded level's load), the last good load, and whether anything was judged.

    The knee says it when given; else the level table's verdict column does (a notebook's call without a knee).
    """
    if knee is not None:
        bad = knee.first_bad_load if knee.first_bad_load is not None else knee.first_bad_users
        good = knee.load if knee.load is not None else knee.users
        if knee.first_bad_level is None:
            return None, good, True
        return bad, good if knee.level is not None else None, True
    if flags is None:
        return None, None, False
    bad_at = np.flatnonzero(flags)
    if len(bad_at) == 0:
        return None, float(x[-1]) if len(x) else None, True
    first = int(bad_at[0])
    return float(x[first]), float(x[first - 1]) if first > 0 else None, True


def plot_accuracy(
    levels: pd.DataFrame,
    *,
    knee: Knee | None = None,
    title: str = "",
    run_name: str = "",
    metric: str = "effective_accuracy",
) -> Figure:
    """Accuracy over every request and among answered requests against offered load, and where quality breaks.

    The verdict's curve is the one over every request (solid, filled
    circles, a shaded 95 % band): a failed, timed-out or shed request is a
    wrong answer there. The one among answered requests (dashed, open
    squares, a hatched band) shows whether the answers the server did give got
    worse. Each curve marks its own levels significantly worse than baseline
    (a cross on the first, a red square round the second), so where both
    curves meet, both verdicts still show. A red dashed line marks the first
    degraded level ("breaks at ..."), a dotted one the last good level. A
    level without any answer has no point on the second curve, a grey triangle
    instead.

    ``metric`` is the run's quality metric (``Summary.metric``): the level
    table's ``degraded`` column judges that curve, ``answered_degraded`` the
    curve among answered requests.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 8.0], "accuracy": [0.9, 0.8],
    ...     "accuracy_low": [0.85, 0.75], "accuracy_high": [0.93, 0.84], "effective_accuracy": [0.9, 0.7],
    ...     "effective_accuracy_low": [0.85, 0.65], "effective_accuracy_high": [0.93, 0.75],
    ...     "degraded": [False, True]})
    >>> ax = plot_accuracy(levels).axes[0]
    >>> ax.get_ylabel(), [t.get_text() for t in ax.texts]
    ('accuracy (%)', ['last good: 2 users', 'breaks at 8 users'])
    """
    if metric not in ("effective_accuracy", "accuracy"):
        raise AnalysisInputError(f"metric must be 'effective_accuracy' or 'accuracy', got {metric!r}")
    ordered = _check_levels(levels, ["accuracy", "effective_accuracy"])
    fig = _Chart(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    x, x_label = _offered(ordered)
    unit = load_unit(ordered)
    verdict = _flags(ordered, "degraded")
    answered_verdict = _flags(ordered, "answered_degraded")
    if answered_verdict is None and metric == "accuracy":
        answered_verdict = verdict
    flags = {
        "effective_accuracy": verdict if metric == "effective_accuracy" else None,
        "accuracy": answered_verdict,
    }
    handles: list[Any] = []
    labels: list[str] = []
    for name, label, color, style in (
        ("effective_accuracy", "all requests (failed or shed = wrong)", _ALL, "solid"),
        ("accuracy", "answered requests only", _ANSWERED, "dashed"),
    ):
        y = 100 * _column(ordered, name)
        low, high = 100 * _column(ordered, f"{name}_low"), 100 * _column(ordered, f"{name}_high")
        if style == "solid":
            band = ax.fill_between(x, low, high, color=color, alpha=0.25, linewidth=0, zorder=1)
            (line,) = ax.plot(x, y, color=color, linewidth=2.2, marker="o", markersize=6, zorder=3)
        else:
            band = ax.fill_between(
                x, low, high, facecolor="none", edgecolor=color, hatch="////", alpha=0.45, linewidth=0, zorder=1
            )
            (line,) = ax.plot(
                x,
                y,
                color=color,
                linewidth=1.6,
                linestyle=(0, (5, 3)),
                marker="s",
                markersize=9,
                markerfacecolor="none",
                markeredgewidth=1.4,
                zorder=4,
            )
        handles.append((band, line) if np.isfinite(low).any() else line)
        labels.append(label)
    for name, marker, what in (("effective_accuracy", "X", "all requests"), ("accuracy", "s", "answered")):
        bad = flags[name]
        if bad is None or not bad.any():
            continue
        y = 100 * _column(ordered, name)
        if marker == "X":
            mark = ax.scatter(x[bad], y[bad], marker="X", s=110, color=_BAD, edgecolors="white", linewidths=0.8)
        else:
            mark = ax.scatter(x[bad], y[bad], marker="s", s=210, facecolors="none", edgecolors=_BAD, linewidths=1.8)
        mark.set_zorder(5)
        handles.append(mark)
        labels.append(f"significantly worse ({what})")
    unanswered = np.isnan(_column(ordered, "accuracy")) & np.isfinite(_column(ordered, "effective_accuracy"))
    if unanswered.any():
        handles.append(
            ax.scatter(x[unanswered], np.zeros(int(unanswered.sum())), marker="v", s=60, color="tab:gray", zorder=5)
        )
        labels.append("no request answered")
    for handle, label in zip(handles, labels, strict=True):  # each artist says what it is, for a notebook's legend
        for artist in handle if isinstance(handle, tuple) else (handle,):
            artist.set_label(label)
    bad_load, good_load, judged = _breaks(ordered, x, knee, flags[metric])
    if bad_load is not None:
        if good_load is not None:
            ax.axvline(good_load, color=_GOOD, linestyle=":", linewidth=1.4, zorder=2)
            _line_label(ax, good_load, f"last good: {good_load:g} {unit}", color=_GOOD, left=True)
        ax.axvline(bad_load, color=_BAD, linestyle="--", linewidth=1.4, zorder=2)
        _line_label(ax, bad_load, f"breaks at {bad_load:g} {unit}", color=_BAD, bold=True)
    elif judged and len(x):
        text = f"no level significantly worse than baseline, up to {x.max():g} {unit}"
        _line_label(ax, float(x[0]), text, color=_GOOD)
    for i, row in enumerate(ordered.to_dict("records")):
        text = _accuracy_tip(row, unit, flags["effective_accuracy"], flags["accuracy"], i)
        for name in ("effective_accuracy", "accuracy"):
            _tip(fig, ax, float(x[i]), 100 * _num(row, name), text)
    ax.set_xlabel(x_label)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 112)  # the room above 100 % holds the labels of the break lines, clear of the curves
    ax.set_yticks(np.arange(0, 101, 20))
    ax.set_title(_title("Accuracy against load", title, run_name))
    ax.grid(alpha=0.3)
    ax.legend(
        handles,
        labels,
        loc="lower left",
        fontsize="small",
        title="bands: 95 % confidence intervals",
        title_fontsize="small",
        markerscale=0.7,
    )
    return fig


def _line_label(ax: Axes, x: float, text: str, *, color: str, left: bool = False, bold: bool = False) -> None:
    """A label in the room above 100 %, beside the vertical line at ``x`` (left of it, or right)."""
    ax.annotate(
        text,
        (x, 107),
        xytext=(-4 if left else 4, 0),
        textcoords="offset points",
        color=color,
        ha="right" if left else "left",
        va="center",
        fontsize="small",
        fontweight="bold" if bold else "normal",
    )


def _accuracy_tip(
    row: Mapping[Hashable, Any], unit: str, all_bad: np.ndarray | None, answered_bad: np.ndarray | None, i: int
) -> str:
    lines = [
        _level_name(row, unit),
        "all requests: " + _interval(*(_num(row, f"effective_accuracy{s}") for s in ("", "_low", "_high"))),
        "answered: " + _interval(*(_num(row, f"accuracy{s}") for s in ("", "_low", "_high"))),
    ]
    if np.isfinite(_num(row, "n")):
        right, wrong, failed = (_count(_num(row, c)) for c in ("n_correct", "n_wrong", "n_failed"))
        lines.append(f"{_count(_num(row, 'n'))} requests: {right} right, {wrong} wrong, {failed} failed")
    worse = [
        what for what, bad in (("all requests", all_bad), ("answered", answered_bad)) if bad is not None and bad[i]
    ]
    if worse:
        lines.append(f"significantly worse than baseline ({', '.join(worse)})")
    return "\n".join(lines)


def _num(row: Mapping[Hashable, Any], name: str) -> float:
    """A level's figure as a float, NaN when it is missing or not a number."""
    try:
        return float(row.get(name, np.nan))
    except (TypeError, ValueError):
        return float("nan")


def _level_name(row: Mapping[Hashable, Any], unit: str) -> str:
    load = _num(row, "load") if unit != "users" and np.isfinite(_num(row, "load")) else _num(row, "users")
    return f"{load:g} {unit} (level {row.get('level')})"


def plot_latency(
    levels: pd.DataFrame, *, slo_latency_ms: float | None = None, title: str = "", run_name: str = ""
) -> Figure:
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
    fig = _Chart(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    x, x_label = _offered(ordered)
    for column, color in zip(columns, ("tab:blue", "tab:orange", "tab:green", "tab:purple"), strict=True):
        name = column.replace("_ms", "")
        ax.plot(x, ordered[column].to_numpy(dtype=float), marker="o", color=color, label=name)
        if scheduled:
            corrected = ordered[column.replace("_ms", "_sched_ms")].to_numpy(dtype=float)
            ax.plot(x, corrected, marker="s", linestyle="--", color=color, label=f"{name} from schedule")
    if slo_latency_ms is not None:
        ax.axhline(slo_latency_ms, color=_BAD, linestyle="--", label=f"SLO {slo_latency_ms:g} ms")
    unit = load_unit(ordered)
    for i, row in enumerate(ordered.to_dict("records")):
        text = "\n".join(
            [
                _level_name(row, unit),
                ", ".join(f"{c.replace('_ms', '')} {_num(row, c):.1f} ms" for c in columns),
                *(
                    [
                        ", ".join(
                            f"{c.replace('_ms', '')} {_num(row, c.replace('_ms', '_sched_ms')):.1f} ms" for c in columns
                        )
                        + " from schedule"
                    ]
                    if scheduled
                    else []
                ),
                f"{_count(_num(row, 'n_ok'))} successful responses",
            ]
        )
        for column in columns:
            _tip(fig, ax, float(x[i]), _num(row, column), text)
    ax.set_xlabel(x_label)
    ax.set_ylabel("latency (ms)")
    what = "successful responses; dashed: from the scheduled time" if scheduled else "successful responses"
    ax.set_title(_title(f"Latency percentiles against load ({what})", title, run_name))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2 if scheduled else 1)
    return fig


def plot_throughput(levels: pd.DataFrame, *, title: str = "", run_name: str = "") -> Figure:
    """What each level's requests per second became: answered right, answered wrong, or failed (stacked bars).

    A server that sheds load (HTTP 429/503) answers its refusals fast, so the
    bare request rate climbs exactly where the service collapses; stacked by
    outcome, that climb reads as failures. LLM replies cut short (``n_cut_short``:
    empty, cut at the token limit before the answer, a stream without its end)
    are a part of their own between the wrong answers and the failures: lost
    answers, but neither. A black line is the quality goodput (correct within
    every SLO limit: latency, and for an LLM TTFT and TPOT) when it differs
    from the correct answers; in an open-model run a dash marks each level's
    offered rate. A level table
    without the outcome counts (``n_correct``, ``n_wrong``, ``n_failed``,
    ``duration_s``) gets the request rate and the goodput as lines. A
    regression run has no right or wrong: its answered requests are one part.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [2.0, 16.0], "throughput_rps": [10.0, 100.0],
    ...     "goodput_rps": [9.0, 10.0], "duration_s": 10.0, "n": [100, 1000], "n_ok": [100, 150],
    ...     "n_scored": [100, 150], "n_correct": [90, 100], "n_wrong": [10, 50], "n_failed": [0, 850],
    ...     "accuracy": [0.9, 0.67]})
    >>> ax = plot_throughput(levels).axes[0]
    >>> [(c.get_label(), [float(p.get_height()) for p in c]) for c in ax.containers]  # doctest: +NORMALIZE_WHITESPACE
    [('answered, right', [9.0, 10.0]), ('answered, wrong', [1.0, 5.0]),
     ('failed (error, timeout or shed)', [0.0, 85.0])]
    """
    ordered = _check_levels(levels, ["throughput_rps", "goodput_rps"])
    fig = _Chart(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    x, x_label = _offered(ordered)
    unit = load_unit(ordered)
    throughput = ordered["throughput_rps"].to_numpy(dtype=float)
    goodput = ordered["goodput_rps"].to_numpy(dtype=float)
    counts = ("n", "n_ok", "n_correct", "n_wrong", "n_failed", "duration_s")
    if not all(c in ordered.columns for c in counts):
        if unit == "req/s":
            ax.plot(x, x, color="tab:gray", linestyle=":", label="offered rate")
        ax.plot(x, throughput, marker="o", label="throughput (requests/s)")
        ax.plot(x, goodput, marker="s", label="goodput (correct within SLO/s)")
        ax.set_xlabel(x_label)
        ax.set_ylabel("per second")
        ax.set_title(_title("Throughput against load: answered right, wrong, failed", title, run_name))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        return fig
    # the parts from the counts, then as rates: a difference of rates leaves a rounding crumb, drawn as a part;
    # a cut-short reply is counted among the failed (it is not ok) but drawn as its own part
    cut_count = np.nan_to_num(_column(ordered, "n_cut_short"))
    derived = {
        "n_unlabelled": np.clip(
            _column(ordered, "n_ok") - _column(ordered, "n_correct") - _column(ordered, "n_wrong"), 0, None
        ),
        "n_cut_short": cut_count,
        "n_failed_other": np.clip(_column(ordered, "n_failed") - cut_count, 0, None),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        duration = ordered["duration_s"].to_numpy(dtype=float)
        per_s = {c: _column(ordered, c) / duration for c in counts[:-1]}
        per_s |= {c: values / duration for c, values in derived.items()}
    judged = bool(np.isfinite(_column(ordered, "accuracy")).any())
    if judged:
        parts = [
            ("answered, right", per_s["n_correct"], _CORRECT, ""),
            ("answered, wrong", per_s["n_wrong"], _WRONG, ""),
            ("answered, no label", per_s["n_unlabelled"], _UNLABELLED, ""),
        ]
    else:
        parts = [("answered", per_s["n_ok"], _CORRECT, "")]
    cut_short = np.nan_to_num(per_s["n_cut_short"])
    if cut_short.any():
        parts.append(("cut short (no answer in the reply)", cut_short, _CUT_SHORT, "xx"))
    parts.append(("failed (error, timeout or shed)", per_s["n_failed_other"], _FAILED, "//"))
    positions = np.arange(len(ordered))
    bottom = np.zeros(len(ordered))
    for label, values, color, hatch in parts:
        values = np.nan_to_num(values)
        if not values.any() and label not in ("answered, right", "answered"):
            continue  # a part no level has: no legend entry for nothing
        ax.bar(
            positions,
            values,
            bottom=bottom,
            color=color,
            hatch=hatch,
            edgecolor="white",
            linewidth=0.6,
            label=label,
            width=0.7,
        )
        bottom += values
    total = bottom
    if judged and not np.allclose(np.nan_to_num(goodput), np.nan_to_num(per_s["n_correct"])):
        ax.plot(
            positions,
            goodput,
            color="black",
            marker="D",
            markersize=5,
            linewidth=1.2,
            label="goodput (right within the SLO)",
        )
    if unit == "req/s":
        ax.hlines(x, positions - 0.35, positions + 0.35, color="black", linewidth=2.0, zorder=4, label="offered rate")
    failed_share = np.nan_to_num(parts[-1][1] / np.where(total > 0, total, np.nan))
    cut_share = np.nan_to_num(cut_short / np.where(total > 0, total, np.nan))
    for i, row in enumerate(ordered.to_dict("records")):
        label = f"{total[i]:,.0f}/s" + (f"\n{_share(cut_share[i])} cut short" if cut_share[i] >= 0.005 else "")
        label += f"\n{_share(failed_share[i])} failed" if failed_share[i] >= 0.005 else ""
        ax.annotate(
            label,
            (positions[i], total[i]),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
            color=_BAD if failed_share[i] + cut_share[i] >= 0.005 else "black",
        )
        text = "\n".join(
            [
                _level_name(row, unit),
                f"{throughput[i]:,.1f} requests/s",
                *(f"{label}: {np.nan_to_num(values[i]):,.1f}/s" for label, values, _, _ in parts),
                f"goodput: {goodput[i]:,.1f}/s",
            ]
        )
        _tip(fig, ax, float(positions[i]), float(total[i]) / 2, text)
    ax.set_xticks(positions, [f"{v:g}" for v in x])
    ax.set_xlabel(x_label)
    ax.set_ylabel("requests per second")
    ax.set_ylim(
        0,
        max(float(np.nanmax(total, initial=0.0)), float(np.nanmax(x, initial=0.0)) if unit == "req/s" else 0.0, 1.0)
        * 1.18,
    )
    ax.set_title(_title("Throughput against load: what the requests became", title, run_name))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small", loc="upper left")
    return fig


#: The token-latency panels of :func:`plot_tokens`: y-axis label, and each curve's column, label, colour and style.
_TOKEN_PANELS: tuple[tuple[str, tuple[tuple[str, str, str, str], ...]], ...] = (
    (
        "time to first token (ms)",
        (("p50_ttft_ms", "TTFT p50", _P50, "solid"), ("p95_ttft_ms", "TTFT p95", _P95, "dashed")),
    ),
    (
        "time per output token (ms)",
        (("p50_tpot_ms", "TPOT p50", _P50, "solid"), ("p95_tpot_ms", "TPOT p95", _P95, "dashed")),
    ),
    (
        "tokens per second",
        (
            ("output_tokens_per_s", "output tokens/s", "tab:gray", "solid"),
            ("token_goodput_tps", "token goodput (right, within the SLOs)", "black", "dashed"),
        ),
    ),
)


def _has_token_latencies(levels: pd.DataFrame) -> bool:
    """Whether a level table holds a time to first token at some level: streamed LLM replies were measured.

    >>> _has_token_latencies(pd.DataFrame({"level": [0], "p50_ttft_ms": [np.nan]}))
    False
    """
    return any(
        c in levels.columns and bool(np.isfinite(levels[c].to_numpy(dtype=float)).any())
        for c in ("p50_ttft_ms", "p95_ttft_ms")
    )


def plot_tokens(
    levels: pd.DataFrame,
    *,
    knee: Knee | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    title: str = "",
    run_name: str = "",
) -> Figure:
    """Accuracy beside the token latencies and token rates of an LLM run, on one load axis.

    Panels, top to bottom: accuracy over every request (a failed or cut-short
    reply is a wrong answer there) with its 95 % band, red crosses on the
    levels significantly worse than baseline; time to first token (TTFT) p50
    and p95; time per output token (TPOT) p50 and p95; output tokens per
    second and token goodput (output tokens of right answers within the SLOs).
    A panel whose figures no level has is left out (a run without streaming
    has no TTFT). The breaking level (red dashed) and the last good one
    (green dotted) cross every panel, so a token latency that climbs where
    accuracy falls reads as one story; the TTFT and TPOT limits of the
    scenario's SLO are red lines in their panels.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 8.0], "accuracy": [0.9, 0.8],
    ...     "effective_accuracy": [0.9, 0.6], "degraded": [False, True], "p50_ttft_ms": [40.0, 300.0],
    ...     "p95_ttft_ms": [60.0, 900.0], "p50_tpot_ms": [8.0, 20.0], "p95_tpot_ms": [10.0, 35.0]})
    >>> fig = plot_tokens(levels, slo_ttft_ms=500)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['accuracy (%)', 'time to first token (ms)', 'time per output token (ms)']
    >>> fig.axes[1].get_legend_handles_labels()[1]
    ['TTFT p50', 'TTFT p95', 'SLO 500 ms']
    """
    ordered = _check_levels(levels, ["effective_accuracy"])
    x, x_label = _offered(ordered)
    unit = load_unit(ordered)
    panels = [
        (label, curves)
        for label, curves in _TOKEN_PANELS
        if any(np.isfinite(_column(ordered, column)).any() for column, *_ in curves)
    ]
    limits = {"p50_ttft_ms": slo_ttft_ms, "p50_tpot_ms": slo_tpot_ms}
    fig = _Chart(figsize=(_SIZE[0], 3.0 + 2.3 * max(len(panels), 1)), layout="constrained")
    grid = fig.add_gridspec(1 + max(len(panels), 1), 1, height_ratios=(2.0, *([1.4] * max(len(panels), 1))))
    ax = fig.add_subplot(grid[0])
    axes = [ax] + [fig.add_subplot(grid[i + 1], sharex=ax) for i in range(max(len(panels), 1))]
    # accuracy over every request, the verdict's curve
    accuracy = 100 * _column(ordered, "effective_accuracy")
    low, high = 100 * _column(ordered, "effective_accuracy_low"), 100 * _column(ordered, "effective_accuracy_high")
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color=_ALL, alpha=0.25, linewidth=0, zorder=1, label="95 % interval")
    ax.plot(x, accuracy, color=_ALL, linewidth=2.2, marker="o", markersize=6, zorder=3, label="all requests")
    verdict = _flags(ordered, "degraded")
    if verdict is not None and verdict.any():
        ax.scatter(
            x[verdict],
            accuracy[verdict],
            marker="X",
            s=110,
            color=_BAD,
            edgecolors="white",
            linewidths=0.8,
            zorder=5,
            label="significantly worse",
        )
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 112)
    ax.set_yticks(np.arange(0, 101, 20))
    ax.legend(
        loc="lower left",
        fontsize="small",
        title="over every request (failed, cut short = wrong)",
        title_fontsize="small",
    )
    bad_load, good_load, judged = _breaks(ordered, x, knee, verdict)
    if bad_load is not None:
        if good_load is not None:
            _line_label(ax, good_load, f"last good: {good_load:g} {unit}", color=_GOOD, left=True)
        _line_label(ax, bad_load, f"breaks at {bad_load:g} {unit}", color=_BAD, bold=True)
    elif judged and len(x):
        _line_label(
            ax, float(x[0]), f"no level significantly worse than baseline, up to {x.max():g} {unit}", color=_GOOD
        )
    # token latencies and rates
    for panel, (label, curves) in zip(axes[1:], panels, strict=False):
        for column, name, color, style in curves:
            values = _column(ordered, column)
            if not np.isfinite(values).any():
                continue
            solid = style == "solid"
            panel.plot(
                x,
                values,
                color=color,
                linewidth=2.0 if solid else 1.6,
                linestyle="-" if solid else (0, (5, 3)),
                marker="o" if solid else "s",
                markersize=5 if solid else 6,
                markerfacecolor=color if solid else "none",
                label=name,
            )
        limit = limits.get(curves[0][0])
        if limit is not None:
            panel.axhline(limit, color=_BAD, linestyle="--", linewidth=1.2, label=f"SLO {limit:g} ms")
        panel.set_ylabel(label)
        # room above the highest point (or limit) for the legend, which sits where the curves start, low
        top = np.nanmax([*(np.nanmax(_column(ordered, c), initial=0.0) for c, *_ in curves), limit or 0.0, 1e-9])
        panel.set_ylim(0, 1.35 * float(top))
        panel.legend(loc="upper left", fontsize="small")
    if not panels:
        _empty_note(axes[1], "no token latencies: no level has a streamed reply")
        axes[1].set_yticks([])
    for panel in axes:
        if bad_load is not None:
            if good_load is not None:
                panel.axvline(good_load, color=_GOOD, linestyle=":", linewidth=1.4, zorder=2)
            panel.axvline(bad_load, color=_BAD, linestyle="--", linewidth=1.4, zorder=2)
        panel.grid(alpha=0.3)
        if panel is not axes[-1]:
            panel.tick_params(labelbottom=False)
    axes[-1].set_xlabel(x_label)
    for i, row in enumerate(ordered.to_dict("records")):
        text = _tokens_tip(row, unit, verdict is not None and bool(verdict[i]))
        _tip(fig, ax, float(x[i]), float(accuracy[i]), text)
        for panel, (_, curves) in zip(axes[1:], panels, strict=False):
            for column, *_ in curves:
                _tip(fig, panel, float(x[i]), _num(row, column), text)
    ax.set_title(_title("Accuracy and token latencies against load", title, run_name))
    return fig


def _tokens_tip(row: Mapping[Hashable, Any], unit: str, worse: bool) -> str:
    def ms(name: str) -> str:
        value = _num(row, name)
        return f"{value:,.1f} ms" if np.isfinite(value) else "-"

    def rate(name: str) -> str:
        value = _num(row, name)
        return f"{value:,.1f}" if np.isfinite(value) else "-"

    lines = [
        _level_name(row, unit),
        "all requests: "
        + _interval(*(_num(row, f"effective_accuracy{s}") for s in ("", "_low", "_high")))
        + (" (significantly worse than baseline)" if worse else ""),
        f"TTFT p50 {ms('p50_ttft_ms')}, p95 {ms('p95_ttft_ms')}, p99 {ms('p99_ttft_ms')}",
        f"TPOT p50 {ms('p50_tpot_ms')}, p95 {ms('p95_tpot_ms')}, p99 {ms('p99_tpot_ms')}",
        f"ITL p50 {ms('p50_itl_ms')}, p95 {ms('p95_itl_ms')}; E2E p95 {ms('p95_ms')}",
        f"output {rate('output_tokens_per_s')} tokens/s, token goodput {rate('token_goodput_tps')} tokens/s",
    ]
    cut = _num(row, "n_cut_short")
    if np.isfinite(cut) and cut > 0:
        reasons = [
            f"{reason.replace('_', ' ')} {_count(_num(row, f'n_cut_short_{reason}'))}"
            for reason in ("empty", "length", "no_end")
            if _num(row, f"n_cut_short_{reason}") > 0
        ]
        lines.append(
            f"{_count(cut)} of {_count(_num(row, 'n'))} replies cut short"
            + (f" ({', '.join(reasons)})" if reasons else "")
        )
    return "\n".join(lines)


def plot_resources(levels: pd.DataFrame, *, title: str = "", run_name: str = "") -> Figure:
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
    fig = _Chart(figsize=(_SIZE[0], 2.6 * max(len(panels), 1)), layout="constrained")
    labels = {"cpu_percent": "CPU (% of a core)", "rss_bytes": "memory (MB)"}
    for i, column in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        values = ordered[column].to_numpy(dtype=float) / (1e6 if column == "rss_bytes" else 1.0)
        ax.plot(x, values, marker="o")
        ax.set_ylabel(labels.get(column, str(column)))
        ax.grid(alpha=0.3)
        if i == 0:
            ax.set_title(_title("What the load cost the served model", title, run_name))
        if i == len(panels) - 1:
            ax.set_xlabel(x_label)
    return fig


#: Colour of each class of failure in the errors chart: shed is the failed red of every chart.
_ERROR_COLOURS = {
    "error_rate_shed": _FAILED,
    "error_rate_http": _FAILED,
    "error_rate_client": "#b07aa1",
    "error_rate_server": _OTHER_FAILED,
    "error_rate_timeout": "#f28e2b",
    "error_rate_connection": "#76b7b2",
    "error_rate_decode": "#4e79a7",
    "error_rate_extract": "#bab0ac",
    "error_rate_cut_short": _CUT_SHORT,
}
#: Stacked classes of failure in the errors chart: HTTP errors split by what they mean, then the other kinds.
_ERROR_STACK = (
    ("error_rate_shed", "shed (HTTP 429/503)"),
    ("error_rate_client", "client error (other 3xx/4xx)"),
    ("error_rate_server", "server error (other HTTP)"),
    *((f"error_rate_{k}", k.replace("_", " ")) for k in ERROR_KINDS if k != "http"),
)


def plot_errors(levels: pd.DataFrame, *, title: str = "", run_name: str = "") -> Figure:
    """Failed requests by class (stacked bars, % of requests) per load level.

    HTTP errors are split into shed (429/503: the server refusing load),
    client errors (other 3xx/4xx: the scenario asks wrongly) and other server
    errors when the table has those columns, else shown as one ``http`` bar.
    Only the classes that failed at some level are drawn and named in the
    legend; each bar carries its total.

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
    stack = _ERROR_STACK if split else tuple((f"error_rate_{k}", k.replace("_", " ")) for k in ERROR_KINDS)
    stack = tuple((column, label) for column, label in stack if column in ordered.columns)
    fig = _Chart(figsize=_SIZE, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(ordered))
    bottom = np.zeros(len(ordered))
    drawn: list[tuple[str, np.ndarray]] = []
    for column, label in stack:
        values = 100 * ordered[column].to_numpy(dtype=float)
        if not np.nan_to_num(values).any():
            continue
        hatch = {"error_rate_shed": "//", "error_rate_cut_short": "xx"}.get(column, "")
        colour = _ERROR_COLOURS.get(column)
        ax.bar(
            positions,
            values,
            bottom=bottom,
            label=label,
            width=0.7,
            hatch=hatch,
            color=colour,
            edgecolor="white",
            linewidth=0.6,
        )
        bottom += np.nan_to_num(values)
        drawn.append((label, values))
    x, x_label = _offered(ordered)
    unit = load_unit(ordered)
    for i, row in enumerate(ordered.to_dict("records")):
        if bottom[i] > 0:
            ax.annotate(
                f"{bottom[i]:.1f} %",
                (positions[i], bottom[i]),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize="small",
            )
            lines = [f"{label}: {np.nan_to_num(values[i]):.1f} %" for label, values in drawn if values[i] > 0]
            text = "\n".join([_level_name(row, unit), f"{bottom[i]:.1f} % of requests failed", *lines])
            if row.get("failures"):
                text += f"\n{row['failures']}"
            _tip(fig, ax, float(positions[i]), float(bottom[i]) / 2, text)
    ax.set_xticks(positions, [f"{u:g}" for u in x])
    ax.set_xlabel(x_label)
    ax.set_ylabel("failed (% of requests)")
    ax.set_title(_title("Failed requests by kind against load", title, run_name))
    ax.grid(alpha=0.3, axis="y")
    if bottom.any():
        ax.set_ylim(0, min(100.0, float(bottom.max())) * 1.12)
        ax.legend(title="failure", fontsize="small", loc="upper left")
    else:
        ax.set_ylim(0, 1)
        _empty_note(ax, "no request failed")
    return fig


def _recorded_steps(t: np.ndarray, values: np.ndarray, end: float) -> tuple[np.ndarray, np.ndarray]:
    """A recorded value as the steps it took: each run of one value drawn from its first request to the next run's.

    ``t`` is sorted; NaN values are skipped. Returns the corner points of the steps (two per run), so the
    step sits where the records put it, not at the middle of a time bin.
    """
    keep = np.isfinite(values)
    t, values = t[keep], values[keep]
    if not len(t):
        return np.zeros(0), np.zeros(0)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[t[starts[1:]], max(end, float(t[-1]))]
    xs = np.column_stack([t[starts], ends]).ravel()
    ys = np.repeat(values[starts], 2)
    return xs, ys


def plot_over_time(
    joined: pd.DataFrame,
    *,
    bin_s: float = 5.0,
    title: str = "",
    levels: pd.DataFrame | None = None,
    run_name: str = "",
) -> Figure:
    """The run over time on one time axis: accuracy, failures, latency, and the load as recorded.

    Panels, top to bottom, in ``bin_s`` bins: accuracy over every labelled
    request (solid) and among answered ones (dashed); the load, as the
    records give it: the active users (each step where the records show it),
    or in an open-model run (``target_rps`` recorded) the stages' target
    rate and the rate achieved in each bin; the share of requests that failed,
    shed ones (HTTP 429/503) apart; the p50 and p95 latency of successful
    responses. Thin vertical lines are the stage boundaries: the recorded
    ``t_start`` of each level when ``levels`` (the level table) is given, else
    each level's first request. Time counts from the first stage's start
    when known, else from the first request.

    Examples
    --------
    >>> joined = pd.DataFrame({"t_sent": [0.0, 1.0, 6.0, 7.0], "users_active": [2, 2, 4, 4],
    ...     "ok": [True, True, True, False], "has_truth": True, "correct": [True, False, True, None],
    ...     "latency_ms": [10.0, 12.0, 20.0, 5.0]})
    >>> fig = plot_over_time(joined)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['accuracy (%)', 'active users', 'failed (% of requests)', 'latency (ms)']
    >>> fig.axes[1].get_lines()[0].get_xydata().tolist()
    [[0.0, 2.0], [6.0, 2.0], [6.0, 4.0], [7.0, 4.0]]
    """
    missing = [c for c in ("t_sent", "users_active", "ok", "has_truth", "correct") if c not in joined.columns]
    if missing:
        raise AnalysisInputError(f"joined records have no column {', '.join(repr(c) for c in missing)}")
    if not bin_s > 0:
        raise AnalysisInputError(f"bin_s must be a positive number of seconds, got {bin_s!r}")
    order = np.argsort(joined["t_sent"].to_numpy(dtype=float), kind="stable")
    data = joined.iloc[order]
    t = data["t_sent"].to_numpy(dtype=float)
    starts: np.ndarray = np.zeros(0)
    if levels is not None and "t_start" in levels.columns:
        starts = np.sort(levels["t_start"].to_numpy(dtype=float))
        starts = starts[np.isfinite(starts)]
    elif "level" in data.columns:
        starts = np.sort(data.groupby("level")["t_sent"].min().to_numpy(dtype=float))
    origin = float(min(t.min(), starts.min())) if len(starts) and len(t) else float(t.min()) if len(t) else 0.0
    elapsed = t - origin
    end = float(elapsed.max()) if len(t) else 0.0
    if levels is not None and "t_end" in levels.columns and levels["t_end"].notna().any():
        end = max(end, float(levels["t_end"].max()) - origin)
    # bins start afresh at each stage, so that no bin mixes two loads: a stage's last bin may be short
    edges = np.unique(np.r_[0.0, starts - origin]) if len(starts) else np.zeros(1)
    segment = np.clip(np.searchsorted(edges, elapsed, side="right") - 1, 0, None)
    within = np.floor((elapsed - edges[segment]) / bin_s).astype(np.int64)
    per_segment = int(within.max()) + 1 if len(within) else 1
    bins = segment * per_segment + within
    ok = data["ok"].to_numpy(dtype=bool)
    labelled = data["has_truth"].to_numpy(dtype=bool)
    scored = ok & labelled
    correct = data["correct"].fillna(False).to_numpy(dtype=bool) & scored
    if "error_kind" in data.columns and "status_code" in data.columns:
        shed = ~ok & (failure_class(data["error_kind"].fillna("").to_numpy(), data["status_code"]) == "shed")
    else:
        shed = np.zeros(len(data), dtype=bool)
    rate = data["target_rps"].to_numpy(dtype=float) if "target_rps" in data.columns else None
    open_model = rate is not None and bool(np.isfinite(rate).any())
    frame = pd.DataFrame(
        {
            "bin": bins,
            "labelled": labelled,
            "scored": scored,
            "correct": correct,
            "failed": ~ok,
            "shed": shed,
            "users": data["users_active"].to_numpy(dtype=float),
        }
    )
    grouped = frame.groupby("bin").agg(
        labelled=("labelled", "sum"),
        scored=("scored", "sum"),
        correct=("correct", "sum"),
        failed=("failed", "sum"),
        shed=("shed", "sum"),
        users=("users", "median"),
        sent=("scored", "size"),
    )
    index = grouped.index.to_numpy(dtype=np.int64)
    left = edges[index // per_segment] + (index % per_segment) * bin_s
    stop = np.minimum(np.r_[edges[1:], max(end, float(edges[-1]))][index // per_segment], left + bin_s)
    # a floor keeps a short bin of a few requests from a wild rate
    width = np.clip(stop - left, 0.2 * bin_s, bin_s)
    centre = left + width / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = 100 * grouped["correct"].to_numpy(dtype=float) / grouped["scored"].to_numpy(dtype=float)
        effective = 100 * grouped["correct"].to_numpy(dtype=float) / grouped["labelled"].to_numpy(dtype=float)
        sent = grouped["sent"].to_numpy(dtype=float)
        failed_share = 100 * grouped["failed"].to_numpy(dtype=float) / sent
        shed_share = 100 * grouped["shed"].to_numpy(dtype=float) / sent
    latency: pd.DataFrame | None = None
    if "latency_ms" in data.columns and ok.any():
        by_bin = pd.Series(data["latency_ms"].to_numpy(dtype=float)[ok]).groupby(bins[ok])
        latency = pd.DataFrame({q: by_bin.quantile(q) for q in (0.5, 0.95)}).reindex(grouped.index)
    fig = _Chart(figsize=(_SIZE[0], 8.4), layout="constrained")
    grid = fig.add_gridspec(4, 1, height_ratios=(2.2, 1.3, 1.3, 1.3))
    ax = fig.add_subplot(grid[0])
    load_ax = fig.add_subplot(grid[1], sharex=ax)
    fail_ax = fig.add_subplot(grid[2], sharex=ax)
    latency_ax = fig.add_subplot(grid[3], sharex=ax)
    # accuracy
    ax.plot(centre, effective, color=_ALL, linewidth=2.0, marker="o", markersize=4, label="all requests")
    ax.plot(
        centre,
        accuracy,
        color=_ANSWERED,
        linewidth=1.5,
        linestyle=(0, (5, 3)),
        marker="s",
        markersize=6,
        markerfacecolor="none",
        label="answered requests only",
    )
    ax.set_ylim(-3, 103)
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="lower left", fontsize="small")
    # the load as recorded
    what = "target rate" if open_model else "users"
    if open_model and rate is not None:
        xs, ys = _recorded_steps(elapsed, rate, end)
        load_ax.plot(xs, ys, color="tab:gray", linewidth=1.8, label="target (recorded)")
        load_ax.plot(centre, sent / width, color="black", linestyle=":", marker=".", label="achieved")
        load_ax.set_ylabel("rate (req/s)")
        load_ax.legend(loc="lower right", fontsize="small")
    else:
        xs, ys = _recorded_steps(elapsed, data["users_active"].to_numpy(dtype=float), end)
        load_ax.plot(xs, ys, color="tab:gray", linewidth=1.8, label="active users (recorded)")
        load_ax.set_ylabel("active users")
    load_ax.set_ylim(bottom=0)
    # failures
    other = np.nan_to_num(failed_share - shed_share)
    if np.nan_to_num(failed_share).any():
        fail_ax.bar(
            left,
            np.nan_to_num(shed_share),
            width=width,
            align="edge",
            color=_FAILED,
            hatch="//",
            edgecolor="white",
            linewidth=0.4,
            label="shed (HTTP 429/503)",
        )
        fail_ax.bar(
            left,
            other,
            width=width,
            align="edge",
            bottom=np.nan_to_num(shed_share),
            color=_OTHER_FAILED,
            edgecolor="white",
            linewidth=0.4,
            label="other failure",
        )
        fail_ax.set_ylim(0, 105)
        handles, labels = fail_ax.get_legend_handles_labels()
        shown = [
            (h, lab)
            for h, lab, values in zip(handles, labels, (shed_share, other), strict=True)
            if np.nan_to_num(values).any()
        ]
        fail_ax.legend(*zip(*shown, strict=True), loc="upper left", fontsize="small")
    else:
        fail_ax.set_ylim(0, 1)
        _empty_note(fail_ax, "no request failed")
    fail_ax.set_ylabel("failed (% of requests)")
    # latency
    if latency is not None:
        latency_ax.plot(centre, latency[0.5].to_numpy(dtype=float), color="tab:blue", marker=".", label="p50")
        latency_ax.plot(centre, latency[0.95].to_numpy(dtype=float), color="tab:green", marker=".", label="p95")
        latency_ax.legend(loc="lower left", fontsize="small")
        latency_ax.set_ylim(bottom=0)
    else:
        _empty_note(latency_ax, "no successful response")
    latency_ax.set_ylabel("latency (ms)")
    since = "the first stage started" if levels is not None and len(starts) else "the first request"
    latency_ax.set_xlabel(f"time since {since} (s)")
    for panel in (ax, load_ax, fail_ax, latency_ax):
        for start in starts[1:] - origin:
            panel.axvline(start, color="tab:gray", linewidth=0.8, alpha=0.5, zorder=0)
        panel.grid(alpha=0.3)
        if panel is not latency_ax:
            panel.tick_params(labelbottom=False)
    ax.set_xlim(0, max(end, float(centre.max()) if len(centre) else 0.0, bin_s / 2) * 1.01)
    if len(centre) <= _MAX_TIME_TIPS:
        p95 = latency[0.95].to_numpy(dtype=float) if latency is not None else np.full(len(centre), np.nan)
        users = grouped["users"].to_numpy(dtype=float)
        for i in range(len(centre)):
            load = f"{users[i]:g} users" if not open_model else f"{sent[i] / width[i]:,.1f} req/s achieved"
            text = "\n".join(
                [
                    f"{left[i]:g}-{left[i] + width[i]:g} s: {load}, {sent[i]:,.0f} requests",
                    f"all requests: {effective[i]:.1f} %, answered: {accuracy[i]:.1f} %",
                    f"failed: {failed_share[i]:.1f} % (shed {shed_share[i]:.1f} %)",
                    f"p95: {p95[i]:.1f} ms",
                ]
            )
            _tip(fig, ax, float(centre[i]), float(effective[i]), text)
    ax.set_title(_title(f"Accuracy, failures, latency and {what} over time ({bin_s:g} s bins)", title, run_name))
    return fig


def plot_class_recall(
    recall: pd.DataFrame,
    *,
    users: pd.Series | None = None,
    unit: str = "users",
    title: str = "",
    run_name: str = "",
) -> Figure:
    """Heatmap of per-class recall (rows: classes, columns: load levels), from :func:`analysis.per_class_recall`."""
    fig = _Chart(
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
    if recall.size <= 2000:
        limits = ax.get_xlim(), ax.get_ylim()
        for (row, column), value in np.ndenumerate(values):
            if np.isfinite(value):
                where = f"{labels[column]} {unit}" if users is not None else f"level {labels[column]}"
                _tip(fig, ax, float(column), float(row), f"class {recall.columns[row]} at {where}: {value:.1f} %")
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
    ax.set_title(_title("Per-class recall against load", title, run_name))
    return fig


def plot_confusion(
    joined: pd.DataFrame,
    *,
    levels: list[int],
    labels: list[str] | None = None,
    titles: list[str] | None = None,
    run_name: str = "",
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
    fig = _Chart(
        figsize=(5.2 * len(levels), 4.8 if titles and any("\n" in t for t in titles) else 4.6), layout="constrained"
    )
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
    fig.suptitle(_title("Confusion matrices (rows: true class; colour: share of the row)", "", run_name))
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


def run_title(analysis: RunAnalysis) -> str:
    """The name a chart gives its run: the scenario's name and the run directory's (``digits · run digits-...``)."""
    folder = analysis.run.run_dir.resolve().name or str(analysis.run.info.get("run_id") or "")
    scenario = analysis.summary.scenario
    parts = [str(scenario)] if scenario else []
    if folder:
        parts.append(f"run {folder}")
    return " · ".join(parts)


def _confusion_title(which: str, headline: LevelHeadline, unit: str) -> str:
    load = headline.load if headline.load is not None else headline.users
    failed = headline.n_failed or 0
    lost = f"{failed:,} failed" if failed else "none failed"
    if failed and headline.error_rate_shed:
        lost += f" ({100 * headline.error_rate_shed:.0f} % shed)"
    return f"{which}: {load:g} {unit}\n{headline.n:,} requests, {lost}"


def _slo_limit(analysis: RunAnalysis, key: str) -> float | None:
    """A limit of the scenario's ``slo`` section (``ttft_ms``, ``tpot_ms``), None when the run set none."""
    scenario = analysis.run.info.get("scenario")
    slo = scenario.get("slo") if isinstance(scenario, Mapping) else None
    value = slo.get(key) if isinstance(slo, Mapping) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def write_charts(analysis: RunAnalysis, out_dir: str | os.PathLike[str], *, dpi: float = PNG_DPI) -> dict[str, Path]:
    """Write every chart that applies to the run into ``out_dir``, each as ``NAME.svg`` and ``NAME.png``.

    The SVG is the chart as vectors (crisp at any size), its text real text,
    each point's figures as hover text (a ``<title>``); the PNG is rendered at
    ``dpi`` (200: sharp on a HiDPI screen) for where an SVG cannot go. Each
    title names the run (:func:`run_title`).

    Returns
    -------
    dict of str to pathlib.Path
        ``NAME.png`` to the PNG written, one entry per chart, as before the
        SVGs existed; each PNG's vector twin is ``path.with_suffix(".svg")``
        beside it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = analysis.summary
    levels = analysis.levels
    name = run_title(analysis)
    figures: dict[str, Figure] = {}
    if summary.task != "regression":
        figures["accuracy.png"] = plot_accuracy(levels, knee=summary.quality_knee, run_name=name, metric=summary.metric)
    figures["latency.png"] = plot_latency(levels, slo_latency_ms=summary.slo_latency_ms, run_name=name)
    figures["throughput.png"] = plot_throughput(levels, run_name=name)
    figures["errors.png"] = plot_errors(levels, run_name=name)
    if _has_token_latencies(levels):
        figures["tokens.png"] = plot_tokens(
            levels,
            knee=summary.quality_knee,
            slo_ttft_ms=_slo_limit(analysis, "ttft_ms"),
            slo_tpot_ms=_slo_limit(analysis, "tpot_ms"),
            run_name=name,
        )
    if "cpu_percent" in levels.columns or "rss_bytes" in levels.columns:
        figures["resources.png"] = plot_resources(levels, run_name=name)
    # only the columns the charts read: filtering the whole frame would copy every column of every record
    columns = ["t_sent", "users_active", "ok", "has_truth", "correct", "level", "y_true", "y_pred"]
    columns += ["latency_ms", "error_kind", "status_code"]
    if summary.load_unit == "req/s":
        columns.append("target_rps")
    joined = analysis.joined[[c for c in columns if c in analysis.joined.columns]]
    if joined["level"].isna().any():
        joined = joined[joined["level"].notna()]
    if summary.task != "regression":
        figures["over_time.png"] = plot_over_time(joined, levels=levels, run_name=name)
    if summary.task == "classification":
        offered, _ = _offered(levels)
        users = pd.Series(offered, index=levels["level"].to_numpy())
        recall = per_class_recall(joined)
        if 0 < recall.shape[1] <= 100:
            figures["class_recall.png"] = plot_class_recall(recall, users=users, unit=summary.load_unit, run_name=name)
        classes = sorted_classes(np.concatenate([pd.unique(joined["y_true"]), pd.unique(joined["y_pred"])]))
        if len(classes) <= 30:
            base, other, which = summary.baseline, *confusion_level(summary)
            if which == "highest load":
                which = "highest load (no level degraded)"
            figures["confusion.png"] = plot_confusion(
                joined,
                levels=[base.level, other.level],
                labels=classes,
                titles=[
                    _confusion_title("baseline", base, summary.load_unit),
                    _confusion_title(which, other, summary.load_unit),
                ],
                run_name=name,
            )
    paths = {}
    for chart, figure in figures.items():
        paths[chart] = out / chart
        figure.savefig(paths[chart], dpi=dpi, metadata={"Software": None})
        paths[chart].with_suffix(".svg").write_bytes(_svg(figure))
    return paths
