"""Live quality in Locust's web UI: a "Quality" tab, CSV downloads and a ``/quality`` page with charts.

The tab uses the extension points of Locust's own React bundle (``extended_tabs``/``extended_tables`` in the
template arguments, ``extended_stats`` added to each ``/stats/requests`` poll), so it refreshes with the rest of the
UI. Its cells are plain text, the verdict included ("baseline", "DEGRADED" in the "vs baseline" column); a small
stylesheet and script added to Locust's page colour those rows and put the legend and a link to the charts above
the table. ``/quality`` is a page of our own: server-rendered SVG charts refreshed by a few lines of inline script;
nothing is fetched from the internet. Every route sits behind ``--web-login`` when it is on.

The start form's ``POST /swarm`` goes through a check first (``check_start``): a scenario that cannot be read or
an endpoint that fails the pre-flight refuses the start the way Locust refuses a bad user count, so the form shows
the message and the terminal gets one log line rather than a traceback from every user that could not start.

This module knows Flask and the shape of Locust's ``WebUI`` object, not Locust itself: :func:`install` is called by
``loadgrade.locust_plugin`` with functions that return the current :class:`~loadgrade.live.LiveQuality` and
``records.csv``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Response, request

from loadgrade.live import ROLLING_WINDOWS_S, LiveQuality

__all__ = ["QUALITY_TAB", "install", "legend_html", "level_csv", "render_panel", "tab_assets", "tab_rows"]

QUALITY_TAB = "quality"
"""Key of the Quality tab (``/?tab=quality``) and of its rows in ``extended_stats``."""

FLAG_TITLE = "vs baseline"
"""Title of the column that marks the baseline and the degraded levels (the tab's script finds the table by it)."""

TABLE_STRUCTURE: list[dict[str, str]] = [
    {"key": "level", "title": "Level"},
    {"key": "load", "title": "Load"},
    {"key": "n", "title": "Requests"},
    {"key": "effective", "title": "Accuracy over every request % [95% CI]"},
    {"key": "change", "title": "Change vs baseline, points [95% CI]"},
    {"key": "flag", "title": FLAG_TITLE},
    {"key": "accuracy", "title": "Accuracy among answered % [95% CI]"},
    {"key": "errors", "title": "Errors"},
    {"key": "p95", "title": "p95 ms"},
    {"key": "goodput", "title": "Goodput/s"},
]
"""Columns of the Quality tab; keys without underscores, so the bundle's camel-casing leaves them alone.

Each row also has a ``name``, its position zero-padded: the bundle sorts rows by ``name`` unless a header is clicked,
so levels stay in order (``stage 10`` after ``stage 9``) with the rolling windows last."""

LEVEL_CSV_COLUMNS: tuple[str, ...] = (
    "level",
    "users",
    "rate",
    "t_start",
    "t_end",
    "duration_s",
    "done",
    "n",
    "n_ok",
    "n_truth",
    "n_scored",
    "n_correct",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "effective_accuracy",
    "effective_accuracy_low",
    "effective_accuracy_high",
    "error_rate",
    "p95_ms",
    "throughput_rps",
    "goodput_rps",
    "is_baseline",
    "vs_baseline_diff",
    "vs_baseline_diff_low",
    "vs_baseline_diff_high",
    "vs_baseline_n_pairs",
    "vs_baseline_p_holm",
    "degraded",
)

LiveSource = Callable[[], LiveQuality | None]
RecordsSource = Callable[[], Path | None]
StartCheck = Callable[[Mapping[str, str]], str | None]
"""Given the start form's fields, why the test must not start (shown in the form), or None to let it start."""

SWARM_ENDPOINT = "locust.swarm"
"""Flask endpoint of Locust's ``POST /swarm`` (its start and edit forms)."""


# ---------------------------------------------------------------------------------------------------- formatting


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _with_interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "–"
    return f"{_pct(value)} [{_pct(low)}, {_pct(high)}]"


def _errors(figures: dict[str, Any]) -> str:
    rate = figures.get("error_rate")
    if rate is None:
        return "–"
    kinds = ", ".join(f"{kind} {count}" for kind, count in figures.get("errors", {}).items())
    return f"{_pct(rate)}%" + (f" ({kinds})" if kinds else "")


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _load(figures: dict[str, Any]) -> str:
    if figures.get("rate") is not None:
        return f"{figures['rate']:g}/s (≤{figures['users']} users)"
    return "–" if figures.get("users") is None else f"{figures['users']} users"


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _change(figures: dict[str, Any]) -> str:
    """Level minus baseline in percentage points, with its interval; "–" at the baseline and where undefined."""
    diff = figures.get("vs_baseline_diff")
    if diff is None or figures.get("is_baseline"):
        return "–"
    low, high = figures.get("vs_baseline_diff_low"), figures.get("vs_baseline_diff_high")
    interval = f" [{_points(low)}, {_points(high)}]" if low is not None and high is not None else ""
    return f"{_points(diff)}{interval}"


def _flag(figures: dict[str, Any]) -> tuple[str, str]:
    """The text of the "vs baseline" cell and the row's mark ("baseline", "degraded" or ""), as the report's."""
    if "is_baseline" not in figures:  # a rolling window: not a level
        return "", ""
    if figures["is_baseline"]:
        return "baseline", "baseline"
    if figures.get("degraded"):
        return "DEGRADED", "degraded"
    if figures.get("vs_baseline_significantly_worse"):
        return "worse (within tolerance)", ""
    if figures.get("vs_baseline_diff") is None:
        return "–", ""
    return "ok", ""


def _tab_row(label: str, load: str, figures: dict[str, Any]) -> dict[str, Any]:
    flag, mark = _flag(figures)
    return {
        "level": label,
        "load": load,
        "n": figures["n"],
        "effective": _with_interval(
            figures["effective_accuracy"], figures["effective_accuracy_low"], figures["effective_accuracy_high"]
        ),
        "change": _change(figures),
        "flag": flag,
        "accuracy": _with_interval(figures["accuracy"], figures["accuracy_low"], figures["accuracy_high"]),
        "errors": _errors(figures),
        "p95": _number(figures["p95_ms"]),
        "goodput": _number(figures["goodput_rps"]),
        "mark": mark,
    }


def tab_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the Quality tab from :meth:`LiveQuality.snapshot`: one per level, then the rolling windows.

    Accuracy figures are percentages with one decimal, the change from the baseline percentage points, as in the
    console and the analysis report. ``mark`` (not a column) is "baseline", "degraded" or "".

    Examples
    --------
    >>> live = LiveQuality(["a"], [1], t_start=0.0)
    >>> live.add([["0-1", "a", 0, 1, 0.5, 12.0, 200, True, "", "", "1", 1, 1, ""]], [(2, "", "", "")])
    >>> [row["level"] for row in tab_rows(live.snapshot(now=1.0))]
    ['level 0 (running)', 'last 10 s', 'last 30 s']
    >>> first = tab_rows(live.snapshot(now=1.0))[0]
    >>> first["effective"], first["change"], first["flag"], first["mark"]
    ('100.0 [20.7, 100.0]', '–', 'baseline', 'baseline')
    """
    rows = []
    for level in snapshot["levels"]:
        kind = "stage" if level["kind"] == "stage" else "level"
        suffix = "" if level["done"] else " (running)"
        rows.append(_tab_row(f"{kind} {level['level']}{suffix}", _load(level), level))
    for window in ROLLING_WINDOWS_S:
        figures = snapshot["windows"][f"{window}s"]
        load = "–" if figures.get("users") is None else f"{figures['users']} users active"
        rows.append(_tab_row(f"last {window} s", load, figures))
    for position, row in enumerate(rows):
        row["name"] = f"{position:06d}"
    return rows


def level_csv(levels: list[dict[str, Any]]) -> str:
    """The live per-level table as CSV (the ``levels.csv`` names for the figures it shares with the analysis).

    Examples
    --------
    >>> print(level_csv([]).strip())  # doctest: +ELLIPSIS
    level,users,rate,t_start,...,goodput_rps,is_baseline,...,degraded,error_rate_http,...,error_rate_cut_short
    """
    kinds = ["http", "timeout", "connection", "decode", "extract", "cut_short"]
    kinds += sorted(
        {key[len("error_rate_") :] for level in levels for key in level if key.startswith("error_rate_")} - set(kinds)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [*LEVEL_CSV_COLUMNS, *(f"error_rate_{kind}" for kind in kinds)]
    writer.writerow(columns)
    for level in levels:
        writer.writerow(["" if level.get(c) is None else level.get(c, "") for c in columns])
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------- SVG charts

_WIDTH, _HEIGHT = 720, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 52, 28, 34
_ACCURACY_COLOUR, _EFFECTIVE_COLOUR, _USERS_COLOUR = "#1f77b4", "#d62728", "#7f7f7f"
_DEGRADED_COLOUR = "#b3261e"  # the offline report's


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    return out_lo if hi <= lo else out_lo + (value - lo) / (hi - lo) * (out_hi - out_lo)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]  # 1e-9: keep 1.0 after 0.9


def _frame(title: str, x_label: str, y_label: str, right_label: str | None) -> list[str]:
    plot_right = _WIDTH - _RIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="100%" role="img" '
        f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
        f"<title>{html.escape(title)}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_right - _LEFT}" height="{_HEIGHT - _TOP - _BOTTOM}" '
        'fill="none" stroke="#999"/>',
        f'<text x="{(_LEFT + plot_right) / 2}" y="{_HEIGHT - 4}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="12" y="{(_TOP + _HEIGHT - _BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(_TOP + _HEIGHT - _BOTTOM) / 2})">{html.escape(y_label)}</text>',
    ]
    if right_label:
        x = _WIDTH - 10
        y = (_TOP + _HEIGHT - _BOTTOM) / 2
        parts.append(
            f'<text x="{x}" y="{y}" text-anchor="middle" fill="{_USERS_COLOUR}" '
            f'transform="rotate(90 {x} {y})">{html.escape(right_label)}</text>'
        )
    return parts


def _y_axis(lo: float, hi: float, *, right: bool = False, percent: bool = True) -> list[str]:
    bottom, plot_right = _HEIGHT - _BOTTOM, _WIDTH - _RIGHT
    parts = []
    for tick in _ticks(lo, hi):
        y = _scale(tick, lo, hi, bottom, _TOP)
        label = f"{100 * tick:.0f}%" if percent else f"{tick:g}"
        if right:
            parts.append(f'<text x="{plot_right + 4}" y="{y + 4:.1f}" fill="{_USERS_COLOUR}">{label}</text>')
        else:
            parts.append(f'<line x1="{_LEFT}" x2="{plot_right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            parts.append(f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    return parts


def _x_axis(lo: float, hi: float, fmt: Callable[[float], str]) -> list[str]:
    bottom, plot_right = _HEIGHT - _BOTTOM, _WIDTH - _RIGHT
    parts = []
    for tick in _ticks(lo, hi):
        x = _scale(tick, lo, hi, _LEFT, plot_right)
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{fmt(tick)}</text>')
    return parts


def _polyline(points: list[tuple[float, float]], colour: str, *, dashed: bool = False, name: str = "") -> str:
    if not points:
        return ""
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    return (
        f'<polyline data-series="{name}" points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
    )


def _legend(entries: list[tuple[str, str]]) -> str:
    parts, x = [], _LEFT + 8
    for label, colour in entries:
        # above the plot, where no line can hide it
        parts.append(f'<rect x="{x}" y="{_TOP - 13}" width="12" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{_TOP - 8}">{html.escape(label)}</text>')
        x += 24 + 7 * len(label)
    return "".join(parts)


def _accuracy_range(values: list[float]) -> tuple[float, float]:
    """A y range that shows a few points of change: from just below the lowest value to 100 %."""
    if not values:
        return 0.0, 1.0
    low = min(values)
    return max(0.0, math.floor((low - 0.02) * 20) / 20), 1.0


def chart_over_time(snapshot: dict[str, Any], series: list[dict[str, Any]]) -> str:
    """Accuracy and effective accuracy (over the last 10 s at each second) with the users active, as SVG."""
    title = "Accuracy over time (rolling 10 s) with the user count"
    parts = _frame(title, "seconds since the start", "accuracy", "users")
    points = [p for p in series if p["accuracy"] is not None or p["effective_accuracy"] is not None]
    if not points:
        parts.append(f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle">no answers yet</text></svg>')
        return "".join(parts)
    t_hi = max(p["t"] for p in series)
    t_lo = min(p["t"] for p in series)
    values = [p[k] for p in points for k in ("accuracy", "effective_accuracy") if p[k] is not None]
    y_lo, y_hi = _accuracy_range(values)
    users = [p["users"] for p in series if p["users"] is not None]
    u_hi = max([*users, 1])
    bottom, plot_right = _HEIGHT - _BOTTOM, _WIDTH - _RIGHT
    parts += _y_axis(y_lo, y_hi) + _y_axis(0, u_hi, right=True, percent=False) + _x_axis(t_lo, t_hi, lambda t: f"{t:g}")
    for level in snapshot["levels"][1:]:  # where each level began
        x = _scale(level["t_start"] - snapshot["t_start"], t_lo, t_hi, _LEFT, plot_right)
        if _LEFT <= x <= plot_right:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{bottom}" stroke="#ccc" stroke-dasharray="2 2"/>'
            )

    def xy(p: dict[str, Any], key: str, lo: float, hi: float) -> tuple[float, float]:
        return _scale(p["t"], t_lo, t_hi, _LEFT, plot_right), _scale(p[key], lo, hi, bottom, _TOP)

    parts.append(
        _polyline(
            [xy(p, "users", 0, u_hi) for p in series if p["users"] is not None],
            _USERS_COLOUR,
            dashed=True,
            name="users",
        )
    )
    # effective accuracy dashed and underneath: without errors the two lines are one
    for key, colour, dashed in (("effective_accuracy", _EFFECTIVE_COLOUR, True), ("accuracy", _ACCURACY_COLOUR, False)):
        line = [xy(p, key, y_lo, y_hi) for p in points if p[key] is not None]
        parts.append(_polyline(line, colour, dashed=dashed, name=key))
    parts.append(
        _legend([("accuracy", _ACCURACY_COLOUR), ("effective accuracy", _EFFECTIVE_COLOUR), ("users", _USERS_COLOUR)])
    )
    parts.append("</svg>")
    return "".join(parts)


def chart_against_load(snapshot: dict[str, Any]) -> str:
    """Accuracy (with its Wilson interval) and effective accuracy of each level against its load, as SVG."""
    levels = [lv for lv in snapshot["levels"] if lv["accuracy"] is not None]
    by_rate = any(lv.get("rate") is not None for lv in levels)
    x_key = "rate" if by_rate else "users"
    title = "Accuracy against load level"
    parts = _frame(title, "arrivals per second" if by_rate else "users", "accuracy", None)
    levels = [lv for lv in levels if lv.get(x_key) is not None]
    if not levels:
        parts.append(f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle">no levels yet</text></svg>')
        return "".join(parts)
    xs = [float(lv[x_key]) for lv in levels]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    pad = (x_hi - x_lo) * 0.05
    x_lo, x_hi = x_lo - pad, x_hi + pad
    values = [v for lv in levels for v in (lv["accuracy_low"], lv["effective_accuracy"]) if v is not None]
    y_lo, y_hi = _accuracy_range(values)
    bottom, plot_right = _HEIGHT - _BOTTOM, _WIDTH - _RIGHT
    parts += _y_axis(y_lo, y_hi) + _x_axis(x_lo, x_hi, lambda x: f"{x:g}")

    def sx(x: float) -> float:
        return _scale(x, x_lo, x_hi, _LEFT, plot_right)

    def sy(y: float) -> float:
        return _scale(y, y_lo, y_hi, bottom, _TOP)

    for key, colour, dashed in (("effective_accuracy", _EFFECTIVE_COLOUR, True), ("accuracy", _ACCURACY_COLOUR, False)):
        line = [(sx(x), sy(lv[key])) for x, lv in zip(xs, levels, strict=True) if lv[key] is not None]
        parts.append(_polyline(line, colour, dashed=dashed, name=key))
    for x, lv in zip(xs, levels, strict=True):
        cx = sx(x)
        if lv["accuracy_low"] is not None:
            parts.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{sy(lv["accuracy_low"]):.1f}" '
                f'y2="{sy(lv["accuracy_high"]):.1f}" '
                f'stroke="{_ACCURACY_COLOUR}"/>'
            )
        flag, mark = _flag(lv)
        if lv.get("effective_accuracy") is not None and mark:  # the level's verdict, on the metric it is taken on
            ring = _DEGRADED_COLOUR if mark == "degraded" else _ACCURACY_COLOUR
            parts.append(
                f'<circle data-mark="{mark}" cx="{cx:.1f}" cy="{sy(lv["effective_accuracy"]):.1f}" r="7" '
                f'fill="none" stroke="{ring}" stroke-width="2"><title>level {lv["level"]}: {flag}</title></circle>'
            )
        parts.append(
            f'<circle data-level="{lv["level"]}" cx="{cx:.1f}" cy="{sy(lv["accuracy"]):.1f}" r="3.5" '
            f'fill="{_ACCURACY_COLOUR}"><title>level {lv["level"]}: {_pct(lv["accuracy"])}% '
            f"[{_pct(lv['accuracy_low'])}, {_pct(lv['accuracy_high'])}], n={lv['n']}</title></circle>"
        )
    legend = [("accuracy (95% CI)", _ACCURACY_COLOUR), ("effective accuracy", _EFFECTIVE_COLOUR)]
    marks = {_flag(lv)[1] for lv in levels}
    legend += [("ring: baseline", _ACCURACY_COLOUR)] if "baseline" in marks else []
    legend += [("ring: degraded", _DEGRADED_COLOUR)] if "degraded" in marks else []
    parts.append(_legend(legend))
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------- pages

_BADGE_CSS = """
.loadgrade-badge { display: inline-block; padding: 0 0.45em; border-radius: 0.7em; font-size: 0.85em;
  font-weight: bold; color: #fff; }
.loadgrade-badge.degraded { background: #b3261e; }
.loadgrade-badge.baseline { background: #1a5fb4; }
"""

# Locust's React bundle renders the tab's cells as plain text: the colours, the legend and the link to the charts
# are added to its page by this script and stylesheet (the text of the "vs baseline" column says it all without
# them). The script only sets data attributes on the rows and puts one note of ours before the table; React never
# owns either, so its re-renders leave them alone, and the note goes when the table does.
_TAB_CSS = (
    _BADGE_CSS
    + """
tr[data-loadgrade="degraded"] td { background: rgba(211, 47, 47, 0.13); }
tr[data-loadgrade="baseline"] td { background: rgba(26, 95, 180, 0.10); }
td[data-loadgrade-flag="degraded"] { color: #b3261e; font-weight: bold; }
td[data-loadgrade-flag="baseline"] { color: #1a5fb4; font-weight: bold; }
td[data-loadgrade-flag="degraded"]::before { content: "\\25BC\\00A0"; }
#loadgrade-quality-notes { margin: 0.8em 0; padding: 0.6em 0.9em; border-left: 4px solid #1a5fb4;
  background: rgba(26, 95, 180, 0.06); font-family: inherit; font-size: 0.9rem; line-height: 1.6; }
#loadgrade-quality-notes a.loadgrade-charts { font-weight: bold; margin-right: 0.3em; }
"""
)

_TAB_SCRIPT = """
(() => {
  const flagTitle = %(flag_title)s;
  const marks = {"baseline": "baseline", "DEGRADED": "degraded"};
  const notes = %(notes)s;
  let pending = false;
  function isQualityTable(table) {
    return [...table.querySelectorAll("thead th")].some((th) => th.textContent.trim() === flagTitle);
  }
  function apply() {
    pending = false;
    for (const note of document.querySelectorAll("#loadgrade-quality-notes")) {
      const next = note.nextElementSibling;
      const table = next && (next.matches("table") ? next : next.querySelector("table"));
      if (!table || !isQualityTable(table)) note.remove();
    }
    for (const table of document.querySelectorAll("#root table")) {
      const titles = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
      const flag = titles.indexOf(flagTitle);
      if (flag < 0) continue;
      for (const tr of table.querySelectorAll("tbody tr")) {
        const cell = tr.children[flag];
        const mark = (cell && marks[cell.textContent.trim()]) || "";
        if ((tr.dataset.loadgrade || "") !== mark) tr.dataset.loadgrade = mark;
        if (cell && (cell.dataset.loadgradeFlag || "") !== mark) cell.dataset.loadgradeFlag = mark;
      }
      const holder = table.parentElement && table.parentElement.matches("div") ? table.parentElement : table;
      const before = holder.previousElementSibling;
      if (!before || before.id !== "loadgrade-quality-notes") holder.insertAdjacentHTML("beforebegin", notes);
    }
  }
  const observer = new MutationObserver(() => {
    if (!pending) { pending = true; setTimeout(apply, 30); }
  });
  observer.observe(document.getElementById("root") || document.body,
                   {childList: true, subtree: true, characterData: true});
  apply();
})();
"""


def tab_assets() -> str:
    """The stylesheet and script added to Locust's page for the Quality tab (see ``_TAB_SCRIPT``)."""
    notes = f'<div id="loadgrade-quality-notes" role="note">{legend_html(charts_href="./quality")}</div>'
    script = _TAB_SCRIPT % {"flag_title": json.dumps(FLAG_TITLE), "notes": json.dumps(notes)}
    script = script.replace("</", "<\\/")  # json.dumps leaves "/" alone: no "</div>" may end the script early
    return f"<style>{_TAB_CSS}</style><script>{script}</script>"


def legend_html(*, tolerance: float | None = None, charts_href: str | None = None) -> str:
    """What the marks of the level table mean (the Quality tab and ``/quality`` show the same words)."""
    drop = (
        f"{100 * tolerance:g} point{'' if 100 * tolerance == 1 else 's'}"
        if tolerance is not None
        else "the scenario's slo.tolerance (1 point unless set)"
    )
    link = (
        f'<a class="loadgrade-charts" href="{html.escape(charts_href)}">Open the live quality charts</a> '
        "(accuracy over time and against load). "
        if charts_href
        else ""
    )
    return (
        f"{link}"
        '<span class="loadgrade-badge baseline">baseline</span> the level with the lowest offered load; every other '
        "level is compared with it on the samples both sent. "
        '<span class="loadgrade-badge degraded">DEGRADED</span> significantly worse than the baseline '
        f"(a paired test per sample, Holm-adjusted, as in the offline report) by more than {drop}. "
        "Change vs baseline: the level minus the baseline, in percentage points of accuracy over every request "
        "(a failed request counts as wrong), with its 95% interval."
    )


def _table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(c['title'])}</th>" for c in TABLE_STRUCTURE)
    body = "".join(
        (f'<tr class="{row["mark"]}">' if row.get("mark") else "<tr>")
        + "".join(f"<td>{html.escape(str(row[c['key']]))}</td>" for c in TABLE_STRUCTURE)
        + "</tr>"
        for row in rows
    )
    return f'<table id="levels"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_panel(live: LiveQuality | None, *, now: float | None = None) -> str:
    """The live part of ``/quality``: both charts and the table (an HTML fragment)."""
    if live is None:
        return '<p id="status">No test has started yet: start one from the main page.</p>'
    snapshot = live.snapshot(now=now)
    series = live.series(now=snapshot["now"])
    state = "finished" if snapshot["t_end"] is not None else "running"
    slo = snapshot["slo_latency_ms"]
    status = (
        f"Test {state}: {snapshot['rows']} answers scored as {snapshot['task']}"
        + (f"; goodput counts correct answers within {slo:g} ms" if slo is not None else "")
        + "."
    )
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in snapshot["problems"])
    return (
        f'<p id="status" data-rows="{snapshot["rows"]}" data-now="{snapshot["now"]}">{html.escape(status)}</p>'
        + (f'<ul class="problems">{problems}</ul>' if problems else "")
        + '<figure id="over-time"><figcaption>Accuracy over time (each point: the 10 s up to it), with the users'
        + f" active</figcaption>{chart_over_time(snapshot, series)}</figure>"
        + '<figure id="against-load"><figcaption>Accuracy against load level (bars: 95% Wilson interval)'
        + f"</figcaption>{chart_against_load(snapshot)}</figure>"
        + _table(tab_rows(snapshot))
        + f'<p class="legend">{legend_html(tolerance=live.tolerance)}</p>'
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadgrade: live quality</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 80em; }}
figure {{ margin: 1em 0; }}
figcaption {{ font-weight: bold; margin-bottom: 0.3em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }}
td {{ white-space: nowrap; }}
figure svg {{ max-width: 60em; }}
th:first-child, td:first-child {{ text-align: left; }}
.problems {{ color: #a00; }}
nav a {{ margin-right: 1em; }}
tr.degraded td {{ background: #fdecea; }}
tr.baseline td {{ background: #eef5ff; }}
tr.degraded td:nth-child({flag_column}) {{ color: #b3261e; font-weight: bold; }}
tr.baseline td:nth-child({flag_column}) {{ color: #1a5fb4; font-weight: bold; }}
.legend {{ font-size: 0.9em; color: #444; }}
{badge_css}
</style></head>
<body>
<h1>Live quality</h1>
<nav><a href="./">Locust</a><a href="./?tab=quality">Quality tab</a><a href="quality/stages.csv">per-level CSV</a>
<a href="quality/records.csv">records.csv</a><a href="quality/data.json">JSON</a></nav>
<p>Accuracy among successful answers and effective accuracy (errors count as wrong), scored as the analysis scores
them; intervals are 95% Wilson intervals. Refreshes every {refresh_s:g} s.</p>
<div id="panel">{panel}</div>
<script>
async function refresh() {{
  try {{
    const response = await fetch("quality/panel", {{cache: "no-store"}});
    if (response.ok) document.getElementById("panel").innerHTML = await response.text();
  }} catch (error) {{}}
}}
setInterval(refresh, {refresh_ms});
</script>
</body></html>
"""

REFRESH_S = 2.0


def render_page(live: LiveQuality | None) -> str:
    """The ``/quality`` page: the panel now, refreshed in place every few seconds."""
    return _PAGE.format(
        panel=render_panel(live),
        refresh_s=REFRESH_S,
        refresh_ms=int(REFRESH_S * 1000),
        flag_column=[c["key"] for c in TABLE_STRUCTURE].index("flag") + 1,
        badge_css=_BADGE_CSS,
    )


def _stream(path: Path, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of a file that keeps growing: whole batches of rows, as of the request."""
    with path.open("rb") as file:
        left = size
        while left > 0:
            chunk = file.read(min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def install(
    web_ui: Any,
    *,
    live: LiveSource,
    records: RecordsSource,
    flush: Callable[[], None] = lambda: None,
    check_start: StartCheck | None = None,
    base_path: str = "",
) -> None:
    """Add the Quality tab, its CSV links and the ``/quality`` routes to Locust's web UI (call it in ``init``).

    Parameters
    ----------
    web_ui : locust.web.WebUI
        ``environment.web_ui`` (None on workers and headless: do not call then).
    live : callable
        Returns the current (or last) test's :class:`LiveQuality`, or None before the first test.
    records : callable
        Returns the current (or last) test's ``records.csv``, or None.
    flush : callable
        Flushes ``records.csv`` so a download holds every row received so far.
    check_start : callable or None
        Called with the fields of each ``POST /swarm`` (the start and edit forms), after the login check and
        before Locust acts on them; a message it returns refuses the request as Locust's own checks do
        (``{"success": false, "message": ...}``), which the form shows in its error box.
    base_path : str
        Locust's ``--web-base-path``.
    """
    app = web_ui.app
    base = base_path.rstrip("/")
    args = web_ui.template_args
    args["extended_tabs"] = [*args.get("extended_tabs", []), {"title": "Quality", "key": QUALITY_TAB}]
    args["extended_tables"] = [*args.get("extended_tables", []), {"key": QUALITY_TAB, "structure": TABLE_STRUCTURE}]
    args["extended_csv_files"] = [
        *args.get("extended_csv_files", []),
        {"href": "./quality/stages.csv", "title": "Download live quality per level CSV"},
        {"href": "./quality/records.csv", "title": "Download records.csv (every answer so far)"},
        {"href": "./quality", "title": "Open live quality charts"},
    ]

    assets = tab_assets()

    @app.after_request
    def _add_quality_rows(response: Response) -> Response:
        if request.path == f"{base}/" and response.mimetype == "text/html" and not response.direct_passthrough:
            page = response.get_data(as_text=True)
            if "</body>" in page:  # Locust's page (not its login page's redirect)
                response.set_data(page.replace("</body>", f"{assets}</body>", 1))
            return response
        if request.path != f"{base}/stats/requests" or not response.is_json:
            return response
        current = live()
        if current is None:
            return response
        try:
            payload = response.get_json()
            rows = tab_rows(current.snapshot())
        except Exception:  # the stats poll must keep working whatever happens here
            return response
        payload["extended_stats"] = [*payload.get("extended_stats", []), {"key": QUALITY_TAB, "data": rows}]
        response.set_data(json.dumps(payload))
        return response

    def page() -> Response:
        return Response(render_page(live()), mimetype="text/html")

    def panel() -> Response:
        return Response(render_panel(live()), mimetype="text/html", headers={"Cache-Control": "no-store"})

    def data() -> Response:
        current = live()
        body = {"test": None} if current is None else {"test": current.snapshot(), "series": current.series()}
        return Response(json.dumps(body, allow_nan=False), mimetype="application/json")

    def stages_csv() -> Response:
        current = live()
        return Response(
            level_csv(current.levels() if current is not None else []),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=quality_levels.csv"},
        )

    def records_csv() -> Response:
        path = records()
        if path is None or not path.exists():
            return Response("no test has started yet\n", status=404, mimetype="text/plain")
        flush()
        size = path.stat().st_size
        return Response(
            _stream(path, size),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=records.csv", "Content-Length": str(size)},
        )

    swarm = app.view_functions.get(SWARM_ENDPOINT)
    if check_start is not None and swarm is not None:

        @wraps(swarm)
        def checked_swarm(*args: Any, **kwargs: Any) -> Any:
            problem = check_start(request.form)
            if problem is not None:
                body = {"success": False, "message": problem, "host": request.form.get("host", "")}
                return Response(json.dumps(body), mimetype="application/json")
            return swarm(*args, **kwargs)

        # the login check first (Locust's own wrapper of the swarm view stays inside ours)
        app.view_functions[SWARM_ENDPOINT] = web_ui.auth_required_if_enabled(checked_swarm)

    for rule, view in (
        ("/quality", page),
        ("/quality/panel", panel),
        ("/quality/data.json", data),
        ("/quality/stages.csv", stages_csv),
        ("/quality/records.csv", records_csv),
    ):
        app.add_url_rule(f"{base}{rule}", f"loadgrade_{view.__name__}", web_ui.auth_required_if_enabled(view))
