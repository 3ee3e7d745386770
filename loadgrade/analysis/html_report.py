"""``report.html``: one self-contained page per run that opens from disk.

It opens with what was tested (endpoint, protocol, dataset, load, workers,
duration, versions), then the headline: where quality breaks and why. Charts
are inlined as SVG (vectors, their hover texts kept), or embedded as base64
PNG data URIs when only a PNG exists, and the styling is inline, so the file
can be mailed or attached to a CI job as is: no JavaScript, no external URL.
Every piece of text that comes from the run (scenario, labels,
predictions, error messages, paths) goes through :func:`html.escape`, because
a model's output is untrusted input to whoever opens the page.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from loadgrade.analysis.degradation import load_order, load_unit
from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.metrics import CUT_SHORT_REASONS, FINISH_REASONS, failure_class
from loadgrade.analysis.report import (
    ANALYSIS_VERSION,
    METRIC_WORDS,
    LevelHeadline,
    RunAnalysis,
    Summary,
    confusion_level,
    describe_knee,
    format_limit,
    format_measure,
    rule_breaks,
)
from loadgrade.analysis.rules import Rule, check_rules, parse_rule

__all__ = ["CHART_CAPTIONS", "render_html", "write_html"]

#: Title and how-to-read caption of each chart written by :func:`analysis.write_charts`.
CHART_CAPTIONS: dict[str, tuple[str, str]] = {
    "accuracy.png": (
        "Accuracy against load",
        "Each point is one load level: solid orange is accuracy over every request (a failed, timed-out or shed "
        "request counts as wrong: what clients got) with a shaded band, dashed blue among answered requests only "
        "(model quality) with a hatched band; bands are 95% Wilson intervals with the sample as the unit. A red "
        "cross (orange curve) or red square (blue curve) marks a level significantly worse than the baseline on "
        "that curve; the red dashed line is where quality breaks, the green dotted one the last good level; a grey "
        "triangle a level where no request was answered. Hover a point for its figures.",
    ),
    "latency.png": (
        "Latency percentiles against load",
        "p50 to p99 of successful responses at each level; in an open-model run the dashed curves are measured from "
        "the scheduled time (the wait for a free user counts), the solid ones from the send; a red line is the "
        "latency SLO when one is set.",
    ),
    "throughput.png": (
        "Throughput against load: answered right, answered wrong, failed",
        "Requests per second at each level, stacked: answered right, answered wrong, cut short (an LLM reply that "
        "lost its answer: pink, cross-hatched, when any was) and failed (red, hatched; the shares cut short and "
        "failed are written on the bar), so a server that sheds fast does not look faster; the black line is "
        "goodput (correct answers within the SLO per second: latency, and for an LLM the TTFT and TPOT limits) "
        "where it differs from the right answers.",
    ),
    "tokens.png": (
        "Accuracy and token latencies against load",
        "Accuracy over every request (a failed or cut-short reply counts as wrong) on top, then on the same load "
        "axis the time to first token (TTFT) and the time per output token after it (TPOT), p50 solid and p95 "
        "dashed, over successful streamed replies, and the output tokens per second beside the token goodput "
        "(output tokens of right answers within the SLOs). Red lines: the breaking level across every panel and "
        "the TTFT and TPOT limits of the SLO when set. Hover a point for the level's figures.",
    ),
    "resources.png": (
        "What the load cost the served model",
        "The served model's CPU (100 % = one core) and memory at each level, sampled from its process during the "
        "run, and its queue when its metrics report one: the cost side of the same curve as accuracy.",
    ),
    "errors.png": (
        "Failed requests by kind against load",
        "Share of requests that failed (not wrong answers: no answer at all), stacked by kind; HTTP errors are split "
        "into shed (429/503: the server refusing load), client errors (other 3xx/4xx: the scenario asks wrongly, no "
        "load explains them) and other server errors; cut short (pink, cross-hatched) is an LLM reply that came back "
        "without its answer: empty, cut at the token limit before it, or a stream without its end.",
    ),
    "over_time.png": (
        "Accuracy, load, failures and latency over time",
        "Four panels on one time axis, in short time bins that never mix two stages: accuracy over every request "
        "(orange) and among answered ones (blue); the load as recorded (active users, or in an open-model run each "
        "stage's target rate and the rate achieved); the share of requests that failed, shed ones apart; p50 and "
        "p95 latency. Thin lines mark the recorded stage starts. A drop that follows each step up in load is "
        "load-driven, a drift that does not is something else.",
    ),
    "class_recall.png": (
        "Per-class recall against load",
        "One row per class, one column per level; a row that darkens to the right is a class the model loses first "
        "under load.",
    ),
    "confusion.png": (
        "Confusion matrices at baseline and where quality breaks",
        "Successful answers at the baseline and at the first degraded level (the highest load when none is; each "
        "panel's title says which). Rows are true classes, columns predictions; mass moving off the diagonal shows "
        "which classes are confused. A level without a successful answer says so.",
    ),
}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
 padding:0 1rem;color:#1d2330;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dce4}
.sub{color:#5b6374;margin-top:0}
table{border-collapse:collapse;font-size:.86rem;margin:.5rem 0}
th,td{border:1px solid #d8dce4;padding:.25rem .5rem;text-align:right;vertical-align:top}
th{background:#f1f3f7}td.text,th.text{text-align:left}
tr.degraded td{background:#fdecea}tr.baseline td{background:#eef5ff}
.pass{color:#17692f;font-weight:600}.fail{color:#b3261e;font-weight:600}
figure{margin:1rem 0 2rem}figure img,figure svg{max-width:100%;height:auto;border:1px solid #e3e6ec}
figcaption{color:#3f4757;font-size:.9rem}
dl.tested{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.75rem 0 1rem;
 padding:.6rem 1rem;background:#f6f7fa;border:1px solid #d8dce4;border-radius:4px;font-size:.9rem}
dl.tested dt{color:#5b6374;font-weight:600}dl.tested dd{margin:0;overflow-wrap:anywhere}
p.verdict{font-size:1.05rem;margin:.5rem 0}
code{background:#f1f3f7;padding:0 .2rem}ul{padding-left:1.3rem}
.warning{background:#fff4e5;border:2px solid #b3261e;border-radius:4px;padding:.5rem 1rem;margin:1rem 0}
.warning p{margin:.25rem 0}
#llm-levels td:nth-last-child(-n+2),#llm-levels th:nth-last-child(-n+2){text-align:left}.nw{white-space:nowrap}
"""

# How many distinct error messages and wrong answers to list.
_TOP = 10
# Longer error messages are cut (the full text is in records.csv).
_MAX_MESSAGE = 300


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return value is None


def _fmt(value: Any, spec: str) -> str:
    return "–" if _isnan(value) else format(float(value), spec)


def _pct(value: Any) -> str:
    return "–" if _isnan(value) else f"{100 * float(value):.1f}"


def _rows_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 0, id_: str = "") -> str:
    """A table from already-escaped cells; the first ``text_columns`` are left-aligned."""
    attr = f' id="{id_}"' if id_ else ""
    head = "".join(f"<th{' class=text' if i < text_columns else ''}>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=text' if i < text_columns else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


#: Failure columns of the level table shown when any level has them, with their header: HTTP split by meaning.
_FAILURE_COLUMNS = {
    "error_rate_shed": "shed %",
    "error_rate_client": "client errors %",
    "error_rate_server": "server errors %",
}


def _error_kinds(levels: pd.DataFrame) -> list[str]:
    """The ``error_rate_<kind>`` columns to show (as ``<kind> %``): the ones that are not zero everywhere."""
    kinds = [
        c.removeprefix("error_rate_")
        for c in levels.columns
        if c.startswith("error_rate_") and c not in _FAILURE_COLUMNS
    ]
    return [k for k in kinds if levels[f"error_rate_{k}"].fillna(0).to_numpy(dtype=float).any()]


def _failure_columns(levels: pd.DataFrame) -> list[str]:
    return [c for c in _FAILURE_COLUMNS if c in levels.columns and levels[c].fillna(0).to_numpy(dtype=float).any()]


def _flag(row: Mapping[Any, Any]) -> tuple[str, str]:
    if bool(row.get("is_baseline", False)):
        return "baseline", "baseline"
    if bool(row.get("degraded", False)):
        return "DEGRADED", "degraded"
    if bool(row.get("vs_baseline_significantly_worse", False)):
        return "worse (within tolerance)", ""
    return "ok", ""


def _level_rows(levels: pd.DataFrame, *, task: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Header and (row class, cells) of the per-level table, numbers formatted from ``levels`` as in levels.csv.

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0], "users": [2.0], "n": [400], "throughput_rps": [40.0],
    ...     "accuracy": [0.95], "accuracy_low": [0.925], "accuracy_high": [0.967], "effective_accuracy": [0.95],
    ...     "effective_accuracy_low": [0.925], "effective_accuracy_high": [0.967],
    ...     "error_rate": [0.0], "p50_ms": [20.0], "p95_ms": [61.25], "p99_ms": [80.0], "goodput_rps": [38.0],
    ...     "is_baseline": [True]})
    >>> header, rows = _level_rows(levels, task="classification")
    >>> dict(zip(header, rows[0][1]))["accuracy over every request % [95% CI]"]
    '95.0 [92.5, 96.7]'
    """
    ordered = load_order(levels)
    kinds = _error_kinds(ordered)
    failure_columns = _failure_columns(ordered)
    coverage = "coverage" in ordered.columns
    quality = (
        ["MAE", "RMSE"]
        if task == "regression"
        else ["accuracy over every request % [95% CI]", "accuracy among answered % [95% CI]", "lost %"]
    )
    rate = load_unit(levels) == "req/s"
    scheduled = "p95_sched_ms" in ordered.columns
    header = [
        "level",
        *(["offered req/s"] if rate else []),
        "users",
        "n",
        "req/s",
        *(["samples", "coverage %"] if coverage else []),
        *quality,
        "errors %",
        *(_FAILURE_COLUMNS[c] for c in failure_columns),
        *(f"{k.replace('_', ' ')} %" for k in kinds),
        "p50 ms",
        "p95 ms",
        "p99 ms",
        *(["p95 ms from schedule", "p99 ms from schedule", "lag p99 ms", "late %"] if scheduled else []),
        "goodput/s",
        "vs baseline",
    ]
    rows = []
    for row in ordered.to_dict("records"):
        if task == "regression":
            quality_cells = [_fmt(row.get("mae"), ".4g"), _fmt(row.get("rmse"), ".4g")]
        else:
            quality_cells = [
                *(
                    f"{_pct(row.get(name))} [{_pct(row.get(f'{name}_low'))}, {_pct(row.get(f'{name}_high'))}]"
                    for name in ("effective_accuracy", "accuracy")
                ),
                _pct(row.get("lost_rate")),
            ]
        flag, css = _flag(row)
        cells = [
            str(int(row["level"])),
            *([_fmt(row["target_rps"], "g")] if rate else []),
            _fmt(row["users"], "g"),
            str(int(row["n"])),
            _fmt(row["throughput_rps"], ".1f"),
            *([_fmt(row.get("n_samples"), ".0f"), _pct(row.get("coverage"))] if coverage else []),
            *quality_cells,
            _pct(row["error_rate"]),
            *(_pct(row[c]) for c in failure_columns),
            *(_pct(row[f"error_rate_{k}"]) for k in kinds),
            _fmt(row.get("p50_ms"), ".1f"),
            _fmt(row.get("p95_ms"), ".1f"),
            _fmt(row.get("p99_ms"), ".1f"),
            *(
                [
                    _fmt(row.get("p95_sched_ms"), ".1f"),
                    _fmt(row.get("p99_sched_ms"), ".1f"),
                    _fmt(row.get("lag_p99_ms"), ".1f"),
                    _pct(row.get("late_share")),
                ]
                if scheduled
                else []
            ),
            _fmt(row.get("goodput_rps"), ".1f"),
            flag,
        ]
        rows.append((css, cells))
    return header, rows


def _levels_html(levels: pd.DataFrame, *, task: str) -> str:
    header, rows = _level_rows(levels, task=task)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        (f'<tr class="{css}">' if css else "<tr>") + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"
        for css, cells in rows
    )
    return f'<table id="levels"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _rules_html(analysis: RunAnalysis, rules: Sequence[str | Rule] | None) -> tuple[str, str]:
    """One headline sentence and the rule table (empty when there are no rules)."""
    if rules is None:
        scenario = analysis.run.info.get("scenario") or {}
        slo = scenario.get("slo") if isinstance(scenario, Mapping) else None
        rules = list((slo or {}).get("rules") or []) if isinstance(slo, Mapping) else []
    if not rules:
        return "SLO rules: none set (add <code>slo.rules</code> to the scenario or use <code>check --rule</code>).", ""
    try:
        parsed = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
        results = check_rules(analysis.levels, parsed)
    except AnalysisInputError as exc:
        return f'SLO rules: <span class="fail">could not be evaluated</span>: {_e(exc)}', ""
    failed = int((~results["passed"]).sum())
    verdict = '<span class="pass">PASS</span>' if failed == 0 else '<span class="fail">FAIL</span>'
    sentence = f"SLO rules: {verdict}, {len(results) - failed} of {len(results)} rules pass."
    breaks = rule_breaks(analysis.levels, parsed)
    rows = []
    for rule, where, row in zip(parsed, breaks, results.to_dict("records"), strict=True):
        verdict_cell = (
            '<span class="pass">pass</span>' if row["passed"] else f'<span class="fail">{_e(row["verdict"])}</span>'
        )
        rows.append(
            [
                f"<code>{_e(row['rule'])}</code>",
                _e(format_limit(rule)),
                _e(format_measure(rule.metric, float(row["measured"]))),
                _fmt(row["at_load"], "g"),
                _e(where or "–"),
                verdict_cell,
            ]
        )
    header = ["rule", "limit", "measured", f"at {_e(load_unit(analysis.levels))}", "first breaks at", "verdict"]
    return sentence, _rows_table(header, rows, text_columns=1, id_="rules")


def _errors_html(joined: pd.DataFrame, levels: pd.DataFrame) -> str:
    failed = joined[~joined["ok"].to_numpy(dtype=bool)]
    if failed.empty:
        return "<p>No request failed.</p>"
    status = failed["status_code"] if "status_code" in failed.columns else pd.Series(0, index=failed.index)
    unit = load_unit(levels)
    offered = levels.set_index("level")["load" if unit != "users" and "load" in levels.columns else "users"]
    grouped = (
        failed.assign(
            message=failed["error"].astype(str).str.slice(0, _MAX_MESSAGE),
            failure=failure_class(failed["error_kind"].to_numpy(), status.to_numpy(dtype=float)),
            offered=failed["level"].map(offered).astype(float),
        )
        .groupby(["failure", "error_kind", "message"], sort=False, dropna=False)
        .agg(count=("ok", "size"), lowest_load=("offered", "min"))
        .reset_index()
        .sort_values("count", ascending=False, kind="stable")
        .head(_TOP)
    )
    rows = [
        [
            _e(str(r["failure"]).replace("_", " ")),
            _e(r["error_kind"]),
            f"<code>{_e(r['message'])}</code>",
            str(int(r["count"])),
            "–" if _isnan(r["lowest_load"]) else f"{float(r['lowest_load']):g} {_e(unit)}",
        ]
        for r in grouped.to_dict("records")
    ]
    distinct = failed.groupby(["error_kind", "error"], sort=False).ngroups
    total = (
        f"<p>{len(failed)} failed requests with {distinct} distinct messages; the most frequent first. Shed is "
        "HTTP 429/503 (the server refusing load), a client error any other 3xx/4xx (the scenario asks wrongly, "
        "whatever the load), a server error any other HTTP error:</p>"
    )
    return total + _rows_table(["class", "kind", "message", "requests", "from"], rows, text_columns=3, id_="errors")


def _wrong_html(analysis: RunAnalysis) -> str:
    if analysis.summary.task == "regression":
        return ""
    joined = analysis.joined
    top, which = confusion_level(analysis.summary)
    wrong = joined[
        (joined["level"] == top.level)
        & joined["ok"].to_numpy(dtype=bool)
        & joined["has_truth"].to_numpy(dtype=bool)
        & ~joined["correct"].fillna(True).to_numpy(dtype=bool)
    ]
    if wrong.empty:
        return f"<p>No wrong answer at the {which} ({_load(top)} {_e(analysis.summary.load_unit)}).</p>"
    pairs = (
        pd.DataFrame({"label": wrong["y_true"].astype(str), "prediction": wrong["y_pred"].astype(str)})
        .value_counts()
        .head(_TOP)
    )
    rows = [
        [f"<code>{_e(r['label'])}</code>", f"<code>{_e(r['prediction'])}</code>", str(int(r["n"]))]
        for r in pairs.reset_index(name="n").to_dict("records")
    ]
    unit = _e(analysis.summary.load_unit)
    intro = f"<p>The most frequent wrong answers at the {which} ({_load(top)} {unit}, {len(wrong)} wrong):</p>"
    return intro + _rows_table(["label", "prediction", "responses"], rows, text_columns=2, id_="wrong")


def _resources_html(levels: pd.DataFrame, *, unit: str) -> str:
    """The served model's CPU, memory and correct answers per CPU-second per level, when resources were sampled."""
    if "cpu_percent" not in levels.columns and "rss_bytes" not in levels.columns:
        return ""
    load = levels["load"] if "load" in levels.columns and unit != "users" else levels["users"]
    rows = []
    for i in range(len(levels)):
        row = levels.iloc[i]
        rows.append(
            [
                _e(row["level"]),
                _fmt(load.iloc[i], "g"),
                _fmt(row.get("cpu_percent"), ".0f"),
                _fmt(row.get("rss_bytes", float("nan")) / 1e6, ".0f"),
                _fmt(row.get("correct_per_cpu_s"), ".1f"),
            ]
        )
    table = _rows_table(
        ["level", f"load ({_e(unit)})", "CPU %", "memory MB", "correct answers per CPU-second"], rows, id_="resources"
    )
    return (
        '<h3 id="resources-heading">What the load cost the served model</h3>\n'
        "<p>Sampled from the server's process (and its metrics endpoint) during the run; CPU 100 % is one core. "
        "Correct answers per CPU-second price quality in compute.</p>\n" + table
    )


_SVG_DROP = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->|<metadata>.*?</metadata>", re.DOTALL | re.IGNORECASE)
_SVG_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REFERENCE = re.compile(r'(url\(#|href="#)([^)"]+)')
# What a chart never needs and a page must never run or fetch: an SVG holding any of it is shown as its PNG.
_SVG_UNSAFE = re.compile(r"<script|<foreignObject|\son\w+\s*=|javascript:|://", re.IGNORECASE)


def _inline_svg(data: bytes, *, prefix: str, title: str) -> str | None:
    """A chart's SVG file as an ``<svg>`` element of the page, or None when it cannot be inlined safely.

    The XML prologue, comments, metadata and namespace declarations go (HTML
    needs none of them, and matplotlib's name external URLs); every id gets
    ``prefix`` so that two charts on one page never share one (matplotlib
    names glyphs and markers alike in every figure), and the chart's own
    stylesheet applies to the chart only.

    >>> svg = (b'<?xml version="1.0"?>\\n<!-- Created with matplotlib (https://matplotlib.org/) -->\\n'
    ...        b'<svg xmlns="http://www.w3.org/2000/svg" width="10pt"><defs><style>*{stroke: red}</style>'
    ...        b'<path id="m1"/></defs><use xlink:href="#m1" clip-path="url(#m1)"/></svg>')
    >>> print(_inline_svg(svg, prefix="accuracy", title="Accuracy"))
    <svg role="img" aria-label="Accuracy" id="accuracy" width="10pt"><defs><style>#accuracy *{stroke: red}</style>\
<path id="accuracy-m1"/></defs><use xlink:href="#accuracy-m1" clip-path="url(#accuracy-m1)"/></svg>
    >>> _inline_svg(b'<svg><script>alert(1)</script></svg>', prefix="x", title="x") is None
    True
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = _SVG_DROP.sub("", text).strip()
    start = text.find("<svg")
    if start < 0 or not text.endswith("</svg>"):
        return None
    text = text[start:]
    root_end = text.index(">")
    text = _SVG_XMLNS.sub("", text[:root_end]) + text[root_end:]
    if _SVG_UNSAFE.search(text):
        return None
    ids = set(_SVG_ID.findall(text))
    text = _SVG_ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _SVG_REFERENCE.sub(
        lambda m: m.group(1) + (f"{prefix}-{m.group(2)}" if m.group(2) in ids else m.group(2)), text
    )
    text = text.replace("<style>*{", f"<style>#{prefix} *{{").replace(
        '<style type="text/css">*{', f"<style>#{prefix} *{{"
    )
    return f'<svg role="img" aria-label="{_e(title)}" id="{prefix}"' + text[len("<svg") :]


def _chart_stems(charts: Mapping[str, bytes]) -> list[str]:
    """Each chart once, in the order given, whichever of ``NAME.svg`` and ``NAME.png`` it came as."""
    return list(dict.fromkeys(Path(name).stem for name in charts))


def _figure_html(charts: Mapping[str, bytes], stem: str) -> str:
    """One chart with its caption, as its inlined SVG or else its PNG; empty when ``charts`` has neither."""
    title, caption = CHART_CAPTIONS.get(f"{stem}.png", (stem, ""))
    svg = charts.get(f"{stem}.svg")
    image = None if svg is None else _inline_svg(svg, prefix=f"chart-{stem}", title=title)
    if image is None and f"{stem}.png" in charts:
        encoded = base64.b64encode(charts[f"{stem}.png"]).decode("ascii")
        image = f'<img alt="{_e(title)}" src="data:image/png;base64,{encoded}">'
    if image is None:
        return ""
    return (
        f'<figure id="figure-{_e(stem)}">{image}'
        f"<figcaption><strong>{_e(title)}.</strong> {_e(caption)}</figcaption></figure>"
    )


def _charts_html(charts: Mapping[str, bytes], *, elsewhere: Sequence[str] = ()) -> str:
    """Every chart but those shown in their own section (``elsewhere``: stems)."""
    if not charts:
        return "<p>Charts were not written (<code>--no-charts</code>).</p>"
    return "".join(_figure_html(charts, stem) for stem in _chart_stems(charts) if stem not in elsewhere)


#: Level-table columns that only a run against an LLM endpoint has (see :func:`analysis.level_table`).
_LLM_FIGURES = ("p50_ttft_ms", "p50_tpot_ms", "output_tokens_per_s", "n_output_tokens")
#: The figures of the LLM table, header and level-table column, in the order of a reply: first token, pace, end.
_LLM_TABLE = (
    ("TTFT p50 ms", "p50_ttft_ms"),
    ("TTFT p95 ms", "p95_ttft_ms"),
    ("TPOT p50 ms", "p50_tpot_ms"),
    ("TPOT p95 ms", "p95_tpot_ms"),
    ("ITL p50 ms", "p50_itl_ms"),
    ("ITL p95 ms", "p95_itl_ms"),
    ("longest gap ms", "max_itl_ms"),
    ("E2E p95 ms", "p95_ms"),
    ("output tokens/s", "output_tokens_per_s"),
    ("token goodput/s", "token_goodput_tps"),
    ("mean output tokens", "mean_output_tokens"),
)
#: What each cut-short reason means, for the sentences of the LLM section (``n_cut_short_<reason>``).
_CUT_SHORT_WORDS = {
    "empty": "empty (HTTP 200 without any output text)",
    "length": "stopped at the token limit (finish_reason length) before the answer",
    "no_end": "streamed without an end ([DONE] or a finish_reason never came)",
}


def _count_of(row: Mapping[Any, Any], name: str) -> int:
    """A count of a level, 0 when the table lacks it (a run without LLM replies)."""
    value = row.get(name)
    return 0 if value is None or _isnan(value) else int(float(value))


def _has_llm(levels: pd.DataFrame) -> bool:
    """Whether the level table holds LLM figures at some level, or a reply cut short (an LLM outcome).

    >>> _has_llm(pd.DataFrame({"level": [0], "n_cut_short": [0]}))
    False
    >>> _has_llm(pd.DataFrame({"level": [0], "output_tokens_per_s": [12.5]}))
    True
    """
    figures = any(c in levels.columns and bool(levels[c].notna().to_numpy().any()) for c in _LLM_FIGURES)
    cut = "n_cut_short" in levels.columns and bool(levels["n_cut_short"].fillna(0).to_numpy(dtype=float).any())
    return figures or cut


def _finish_mix(row: Mapping[Any, Any]) -> str:
    """The ``finish_reason`` mix of a level as % of its requests, the reasons that occurred only (HTML: each
    reason unbroken, so the cell wraps between them)."""
    n = _count_of(row, "n")
    counts = [(name, _count_of(row, f"n_finish_{name}")) for name in FINISH_REASONS]
    shown = [f'<span class="nw">{name} {100 * count / n:.1f}</span>' for name, count in counts if count and n]
    return " · ".join(shown) or "–"


def _cut_short_cell(row: Mapping[Any, Any]) -> str:
    """A level's cut-short replies and their reasons (HTML, wrapping between reasons)."""
    total = _count_of(row, "n_cut_short")
    if not total:
        return "0"
    reasons = [
        f'<span class="nw">{name.replace("_", " ")} {_count_of(row, f"n_cut_short_{name}")}</span>'
        for name in CUT_SHORT_REASONS
        if _count_of(row, f"n_cut_short_{name}")
    ]
    return f"{total}: {' · '.join(reasons)}" if reasons else str(total)


def _cut_short_sentences(levels: pd.DataFrame, *, unit: str) -> list[str]:
    """Each level with replies cut short, in words: how many of its requests, and why (escaped HTML)."""
    sentences = []
    for row in levels.to_dict("records"):
        total = _count_of(row, "n_cut_short")
        if not total:
            continue
        n = _count_of(row, "n")
        reasons = [
            (_CUT_SHORT_WORDS.get(name, name), _count_of(row, f"n_cut_short_{name}")) for name in CUT_SHORT_REASONS
        ]
        why = [f"{count} {_e(words)}" for words, count in reasons if count]
        unknown = total - sum(count for _, count in reasons)
        if unknown > 0:
            why.append(f"{unknown} for a reason the error text does not give")
        share = f" ({100 * total / n:.1f} %)" if n else ""
        load = row.get("load") if unit != "users" and not _isnan(row.get("load")) else row.get("users")
        sentences.append(
            f"At {_fmt(load, 'g')} {_e(unit)} (level {_e(row['level'])}), {total} of {n} requests{share} were cut "
            f"short: {'; '.join(why)}."
        )
    return sentences


def _llm_html(levels: pd.DataFrame, charts: Mapping[str, bytes], *, unit: str) -> str:
    """The LLM section: token latencies, token rates, finish reasons and cut-short replies per level.

    Empty for a run without LLM figures, so the page of any other run stays as it was.
    """
    if not _has_llm(levels):
        return ""
    ordered = load_order(levels)
    load_column = "load" if unit != "users" and "load" in ordered.columns else "users"
    # only the figures some level has: a run that did not stream has no TTFT, TPOT or ITL
    figures = [
        (label, column)
        for label, column in _LLM_TABLE
        if column in ordered.columns and bool(ordered[column].notna().to_numpy().any())
    ]
    header = [
        "level",
        f"load ({_e(unit)})",
        "n",
        *(label for label, _ in figures),
        "finish_reason (% of requests)",
        "cut short: why",
    ]
    rows = [
        [
            _e(row["level"]),
            _fmt(row.get(load_column), "g"),
            _e(_count_of(row, "n")),
            *(_fmt(row.get(column), ".1f") for _, column in figures),
            _finish_mix(row),
            _cut_short_cell(row),
        ]
        for row in ordered.to_dict("records")
    ]
    table = _rows_table(header, rows, id_="llm-levels")
    sentences = _cut_short_sentences(ordered, unit=unit)
    attribution = (
        "<p>Replies cut short, by level and reason; each is a lost answer (wrong in the accuracy over every "
        "request, not among the answered), apart from the transport failures and the wrong answers:</p>"
        + _list(sentences)
        if sentences
        else "<p>No reply was cut short at any level.</p>"
    )
    return (
        '<h2 id="llm">LLM replies</h2>\n'
        "<p>Token latencies per level over successful streamed replies: TTFT is the time from the send to the first "
        "chunk carrying text, TPOT the time per output token after it, ITL the mean gap between text chunks of a "
        "reply (the longest gap: the longest single stall of any reply), E2E the whole reply. Output tokens/s "
        "counts the tokens of successful replies, token goodput those of right answers within every SLO limit. "
        "The finish_reason mix is over every request (none: failed, or no reason sent).</p>\n"
        f"{table}\n{attribution}\n{_figure_html(charts, 'tokens')}"
    )


def _tested_html(summary: Summary) -> str:
    """What was tested, atop the page as Locust's report opens with its host and script (see
    :func:`analysis.describe_run`)."""
    if not summary.tested:
        return ""
    items = "".join(
        f"<dt>{_e(label[:1].upper() + label[1:])}</dt><dd>{_e(text)}</dd>" for label, text in summary.tested.items()
    )
    return f'<dl class="tested" id="tested">{items}</dl>'


def _verdict_html(headline: str) -> str:
    """The headline sentence, its opening (where quality breaks, or that it holds) in bold.

    >>> _verdict_html("quality breaks at 8 users: accuracy 97.3 % → 83.0 %")
    '<p class="verdict" id="verdict"><strong>Quality breaks at 8 users</strong>: accuracy 97.3 % → 83.0 %.</p>'
    """
    if not headline:
        return ""
    text = headline[:1].upper() + headline[1:]
    head, colon, rest = text.partition(": ")
    if not colon or len(head) > 80:
        return f'<p class="verdict" id="verdict"><strong>{_e(text)}.</strong></p>'
    return f'<p class="verdict" id="verdict"><strong>{_e(head)}</strong>: {_e(rest)}.</p>'


def _warnings_html(summary: Summary) -> str:
    """The run's gaps, first thing on the page: a figure over part of a run must not pass for the whole."""
    if not summary.warnings:
        return ""
    items = "".join(f"<p><strong>Warning:</strong> {_e(w)}.</p>" for w in summary.warnings)
    return f'<div class="warning" id="warnings" role="alert">{items}</div>\n'


def _capacity_html(summary: Summary) -> str:
    """Every level a capacity search tried, in the order it tried them."""
    if summary.capacity is None:
        return ""
    tried = summary.capacity.get("levels")
    if not isinstance(tried, list) or not tried:
        return ""
    variable = _e(summary.capacity.get("variable") or "load")
    rows = [
        [
            str(i + 1),
            _fmt(level.get("value"), "g"),
            '<span class="pass">meets every SLO</span>' if level.get("passed") else '<span class="fail">breaks</span>',
        ]
        for i, level in enumerate(t for t in tried if isinstance(t, Mapping))
    ]
    return _rows_table(["step", variable, "verdict"], rows, text_columns=0, id_="capacity")


def _load(headline: LevelHeadline) -> str:
    return _fmt(headline.load if headline.load is not None else headline.users, "g")


def _count(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def _versions(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    versions = [(k.removesuffix("_version"), str(v)) for k, v in info.items() if k.endswith("_version")]
    return [*versions, ("analysis", ANALYSIS_VERSION)]


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def render_html(
    analysis: RunAnalysis,
    *,
    charts: Mapping[str, bytes] | None = None,
    rules: Sequence[str | Rule] | None = None,
) -> str:
    """The report page of one run as a string.

    Parameters
    ----------
    analysis : RunAnalysis
        From :func:`analysis.analyse_run`.
    charts : mapping of str to bytes, optional
        Chart file name (``NAME.svg`` or ``NAME.png``, as written by
        :func:`analysis.write_charts`) to its bytes. A chart given as SVG is
        inlined as vectors, else its PNG is embedded as a data URI; each with
        its caption.
    rules : sequence of str or Rule, optional
        SLO rules to evaluate; default: the scenario's ``slo.rules``.

    Returns
    -------
    str
        A complete HTML document.
    """
    summary = analysis.summary
    counts = summary.counts
    info = analysis.run.info
    run_name = Path(analysis.run.run_dir).name
    rules_sentence, rules_table = _rules_html(analysis, rules)
    levels = analysis.levels
    headline = [
        *(
            [f"<strong>Capacity search: {_e(summary.capacity['sentence'])}.</strong>"]
            if summary.capacity is not None
            else []
        ),
        _e(describe_knee("Quality knee", summary.quality_knee, caveat=summary.quality_caveat, levels=levels)) + ".",
        _e(describe_knee("Latency knee", summary.latency_knee, levels=levels)) + ".",
        rules_sentence,
        f"Task: {_e(summary.task)}{' (inferred from the labels)' if summary.task_inferred else ''}; "
        f"{counts.n_records} records in {summary.n_levels} {_e(summary.level_kind)} levels, "
        f"{_load(summary.baseline)} to {_load(summary.highest_load)} {_e(summary.load_unit)} offered.",
    ]
    join = [
        f"{counts.n_records} records, {counts.n_with_truth} with a label from <code>{_e(summary.truth_path)}</code>.",
        f"{counts.n_without_truth} records without a label (left out of quality)"
        + (
            f", e.g. {', '.join(f'<code>{_e(s)}</code>' for s in counts.without_truth_examples)}"
            if counts.n_without_truth
            else ""
        )
        + ".",
        f"{counts.n_truth} labelled samples, {counts.n_truth_never_sent} of them never sent.",
        f"{summary.n_records_without_level} records sent outside every load level (left out of the levels).",
        f"run.json: {_count(summary.records_written)} records written, {_count(summary.locust_requests)} requests "
        f"counted by Locust, about {summary.unrecorded_estimate} requests estimated never recorded"
        + (
            "; workers that left: "
            + "; ".join(
                f"worker {_e(w.get('worker_index', '?'))} ({_e(w.get('how'))}, {_e(w.get('rows_received'))} rows)"
                for w in summary.workers_left
            )
            if summary.workers_left
            else ""
        )
        + ".",
    ]
    settings = [
        f"Quality metric for degradation and the knee: {_e(summary.metric)} "
        f"({_e(METRIC_WORDS.get(summary.metric, summary.metric))}"
        + (
            "; a failed, timed-out or shed request counts as a wrong answer"
            if summary.metric == "effective_accuracy"
            else ""
        )
        + "), compared per sample on the samples both levels sent; a level is degraded when it is "
        f"significantly worse than the baseline ({_load(summary.baseline)} {_e(summary.load_unit)}) after Holm "
        f"correction at alpha {summary.alpha:g} and by more than {100 * summary.tolerance:g} percentage points.",
        "Latency SLO: " + (f"{summary.slo_latency_ms:g} ms." if summary.slo_latency_ms is not None else "none."),
        *(_e(a) + "." for a in summary.assumptions),
    ]
    versions = _rows_table(
        ["component", "version"], [[_e(k), _e(v)] for k, v in _versions(info)], text_columns=2, id_="versions"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>loadgrade report: {_e(run_name)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Accuracy against load: {_e(summary.scenario or run_name)}</h1>
<p class="sub">loadgrade analysis {_e(ANALYSIS_VERSION)} of run {_e(run_name)}</p>
{_tested_html(summary)}
{_warnings_html(summary)}<h2 id="headline">Headline</h2>
{_verdict_html(summary.headline)}
{_list(headline)}
{_capacity_html(summary)}
{rules_table}
<h2 id="levels-heading">Per load level</h2>
<p>The same figures as <code>levels.csv</code>, in load order. Accuracy over every request counts a failed,
timed-out or shed request as a wrong answer (what clients got; the verdict is taken on it); accuracy among answered
is over successful responses only (model quality); both with 95% Wilson intervals that take the sample, not the
request, as the unit. Lost is the share of requests without a right answer (wrong or failed); samples and coverage
are the distinct samples a level sent and their share of the dataset. Latency percentiles are over successful
responses; goodput is correct answers within the SLO per second (latency, and for an LLM the TTFT and TPOT
limits).</p>
{_levels_html(analysis.levels, task=summary.task)}
{_resources_html(analysis.levels, unit=summary.load_unit)}
{_llm_html(analysis.levels, charts or {}, unit=summary.load_unit)}
<h2 id="charts">Charts</h2>
{_charts_html(charts or {}, elsewhere=("tokens",) if _has_llm(analysis.levels) else ())}
<h2 id="failures">Errors</h2>
{_errors_html(analysis.joined, analysis.levels)}
{_wrong_html(analysis)}
<h2 id="join">Labels and records</h2>
{_list(join)}
<h2 id="assumptions">Settings and assumptions</h2>
{_list(settings)}
<h2 id="versions-heading">Versions</h2>
{versions}
</body>
</html>
"""


def write_html(
    analysis: RunAnalysis,
    out_dir: str | os.PathLike[str],
    *,
    charts: Mapping[str, str | os.PathLike[str]] | None = None,
    rules: Sequence[str | Rule] | None = None,
) -> Path:
    """Write ``report.html`` into ``out_dir``, embedding the charts named in ``charts``.

    Each chart is inlined as its SVG when ``charts`` names one, or one lies
    beside its PNG (``NAME.svg``, as :func:`analysis.write_charts` writes it),
    else embedded as the PNG: the page stays one file that opens offline.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for name, raw in (charts or {}).items():
        path = Path(raw)
        images[name] = path.read_bytes()
        twin = path.with_suffix(".svg")
        if path.suffix == ".png" and twin.is_file() and f"{Path(name).stem}.svg" not in (charts or {}):
            images[f"{Path(name).stem}.svg"] = twin.read_bytes()
    path = out / "report.html"
    path.write_text(render_html(analysis, charts=images, rules=rules), encoding="utf-8")
    return path
