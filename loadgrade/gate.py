"""The run gates itself: the scenario's ``slo.rules`` judged on the finished run, a verdict and an exit status.

The verdict is the very same as ``python -m analysis check`` (:func:`analysis.analyse_run`, then
:func:`analysis.check_rules`), so CI sees one answer whichever way it asks. On top of it, a failing rule says where it
broke: the first level, in load order, from which it no longer holds -- "fine up to 8 users" is what one acts on.

The analysis package is imported when :func:`gate` runs, not with this module: it is heavy, and a Locust process
needs it only once the test is over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from loadgrade.analysis.rules import Rule

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_UNJUDGED", "GateResult", "RuleVerdict", "format_gate", "gate"]

EXIT_OK = 0
EXIT_FAIL = 1  # a rule failed
EXIT_UNJUDGED = 2  # the run could not be judged (no records, unreadable files, a rule that does not parse)

# Measured at the best level (see analysis.rules): "goodput>=100" passes when some level reached it, so a failing
# one has no level where it "breaks" -- none ever reached it.
_CAPACITY = {"goodput", "throughput", "output_tokens_per_s", "token_goodput_tps"}  # = analysis.rules.CAPACITY_METRICS


@dataclass(frozen=True)
class RuleVerdict:
    """One rule on one run: the deciding value and, for a failing rule, the first level that breaks it."""

    rule: str
    passed: bool
    measured: float  # NaN when no level had a value
    at_level: int | None
    at_load: float
    levels: int  # how many levels the rule applied to (its condition, e.g. ``@users>=50``, selects some only)
    breaks_at_level: int | None = None
    breaks_at_load: float = math.nan


@dataclass(frozen=True)
class GateResult:
    """The verdict: console ``lines`` (first the headline, last the exit status) and the ``exit_code`` to use."""

    passed: bool
    lines: list[str]
    exit_code: int  # 0 every rule passed, 1 a rule failed, 2 the run could not be judged
    verdicts: list[RuleVerdict] = field(default_factory=list)


def gate(run_dir: Path, rules: Sequence[str]) -> GateResult:
    """Judge a finished run on ``rules`` (e.g. ``scenario.slo.rules``); never raises."""
    head = f"loadgrade: SLO verdict for {run_dir}"
    if not rules:
        return GateResult(True, [f"{head}: no slo.rules to check", _exit_line(EXIT_OK)], EXIT_OK)
    try:
        verdicts, unit, warnings = _judge(Path(run_dir), rules)
    except Exception as exc:  # AnalysisInputError above all; the gate ends a run and must not crash it
        from loadgrade.analysis import AnalysisInputError

        reason = str(exc) if isinstance(exc, AnalysisInputError) else f"{type(exc).__name__}: {exc}"
        lines = [f"{head}: cannot judge the run: {' '.join(reason.split())}", _exit_line(EXIT_UNJUDGED)]
        return GateResult(False, lines, EXIT_UNJUDGED)
    failed = sum(not v.passed for v in verdicts)
    summary = f"{failed} of {len(verdicts)} rules failed" if failed else f"all {len(verdicts)} rules passed"
    if len(verdicts) == 1:
        summary = "the rule failed" if failed else "the rule passed"
    width = max(len(v.rule) for v in verdicts)
    lines = [
        f"{head}: {summary}",
        *(f"  warning: {w}" for w in warnings),
        *(_rule_line(v, unit, width) for v in verdicts),
    ]
    code = EXIT_FAIL if failed else EXIT_OK
    lines.append(_exit_line(code))
    return GateResult(not failed, lines, code, verdicts)


def format_gate(result: GateResult) -> str:
    """The verdict as one block of text for the console."""
    return "\n".join(result.lines)


def _judge(run_dir: Path, rules: Sequence[str]) -> tuple[list[RuleVerdict], str, list[str]]:
    from loadgrade.analysis import AnalysisInputError, analyse_run, check_rules, load_order, parse_rule, read_run_info
    from loadgrade.analysis.degradation import load_unit

    parsed = [parse_rule(r) for r in rules]  # a typo in a rule is found before the records are read
    info = read_run_info(run_dir) if run_dir.is_dir() else {}
    if "ended_at" in info and info["ended_at"] is None:  # as `python -m analysis check` without --allow-incomplete
        raise AnalysisInputError(
            f"run '{run_dir}' is incomplete: run.json has ended_at null (the master was killed, or the run is "
            "still going)"
        )
    analysis = analyse_run(run_dir, progress=False)
    levels = analysis.levels
    results = check_rules(levels, parsed)
    ordered = load_order(levels)
    loads = ordered["load" if "load" in ordered.columns else "users"].to_numpy(dtype=float)
    verdicts = []
    for rule, row in zip(parsed, results.to_dict("records"), strict=True):
        breaks: tuple[int | None, float] = (None, math.nan)
        if not row["passed"] and not (rule.metric in _CAPACITY and rule.op in (">=", ">")):
            breaks = _first_break(ordered, loads, rule)
        verdicts.append(
            RuleVerdict(
                rule=str(row["rule"]),
                passed=bool(row["passed"]),
                measured=float(row["measured"]),
                at_level=None if row["at_level"] is None or _isnan(row["at_level"]) else int(row["at_level"]),
                at_load=float(row["at_load"]),
                levels=int(row["levels"]),
                breaks_at_level=breaks[0],
                breaks_at_load=breaks[1],
            )
        )
    return verdicts, load_unit(levels), list(analysis.summary.warnings)


def _first_break(ordered: pd.DataFrame, loads: npt.NDArray[Any], rule: Rule) -> tuple[int | None, float]:
    """The first level, in load order, from which the rule fails.

    Judged by ``check_rules`` itself on the levels up to each one: they always include the baseline (the first in
    load order), so a drop is measured against it whichever way the analysis computes drops, and a bound that first
    fails with level i added fails because of level i.
    """
    from loadgrade.analysis import check_rules

    for i in range(len(ordered)):
        verdict = check_rules(ordered.iloc[: i + 1], [rule])["verdict"].iloc[0]
        if verdict == "fail":  # not "fail: no data": the rule does not apply to these levels yet
            return int(ordered["level"].iloc[i]), float(loads[i])
    return None, math.nan


def _rule_line(verdict: RuleVerdict, unit: str, width: int) -> str:
    mark = "✓" if verdict.passed else "✗"
    metric = _metric(verdict.rule)
    if math.isnan(verdict.measured):
        why = (
            f"none of the {verdict.levels} level{'s' if verdict.levels != 1 else ''} has a value of {metric}"
            if verdict.levels
            else f"no level has {verdict.rule.partition('@')[2].replace(' ', '')}"
        )
        return f"  {mark} {verdict.rule:<{width}}  no data: {why}"
    which = "best" if metric in _CAPACITY else "worst"
    text = (
        f"  {mark} {verdict.rule:<{width}}  {which} {_value(metric, verdict.measured)}"
        f" at {_where(verdict.at_load, verdict.at_level, unit)}"
    )
    if verdict.passed:
        return text
    if verdict.breaks_at_level is not None:
        return f"{text}; breaks from {_where(verdict.breaks_at_load, verdict.breaks_at_level, unit)}"
    return f"{text}; no level reaches it" if metric in _CAPACITY else text


def _metric(rule: str) -> str:
    from loadgrade.analysis import parse_rule

    return parse_rule(rule).metric


def _value(metric: str, value: float) -> str:
    """A measured value in the unit the report's tables use (a drop in points, a share in %, a latency in ms)."""
    from loadgrade.analysis.report import format_measure

    return format_measure(metric, value)


def _where(load: float, level: int | None, unit: str) -> str:
    return f"{load:g} {unit} (level {level})"


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _exit_line(code: int) -> str:
    reason = {
        EXIT_OK: "every rule passed",
        EXIT_FAIL: "a rule failed; --no-gate to exit 0",
        EXIT_UNJUDGED: "the run could not be judged; --no-gate to exit 0",
    }[code]
    return f"loadgrade: exit status {code} ({reason})"
