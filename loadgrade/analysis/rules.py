"""Pass/fail rules for CI: ``accuracy_drop<=0.01``, ``accuracy>=0.9@users>=50``, ``p95_ms<=200``.

A rule holds when it holds at every selected load level: an upper bound
(``<=``, ``<``) is measured at the level with the highest value, a lower bound
at the level with the lowest. Capacity metrics (``goodput``, ``throughput``,
``output_tokens_per_s``, ``token_goodput_tps``: see :data:`CAPACITY_METRICS`)
are the exception: they are measured at the best level, since a run passes
``goodput>=100`` when it reached 100 good answers per second somewhere.

Quality counts every request unless a metric says ``answered``: a request
that failed, timed out or was shed (HTTP 429/503), or an LLM reply cut short,
is a lost answer, which is what the client got, so a server cannot pass by
refusing the load. ``goodput`` counts the correct answers per second within
every SLO limit the scenario gives (``slo.latency_ms``, and for LLM replies
``slo.ttft_ms`` and ``slo.tpot_ms``).

- ``accuracy``: accuracy over every labelled request, a lost answer counted
  as wrong (the level table's ``effective_accuracy``; ``effective_accuracy``
  is the same figure).
- ``answered_accuracy``: accuracy among answered (successful) requests only,
  i.e. model quality (the level table's ``accuracy``). ``balanced_accuracy``,
  ``f1_macro`` and the other scikit-learn metrics are among answered requests
  too.
- ``accuracy_drop``: baseline minus level, accuracy over every request,
  paired per sample (the mean over the samples both levels sent of each
  sample's drop; 0 when no answer changed); ``effective_accuracy_drop`` is the
  same figure. ``answered_accuracy_drop`` is the paired drop among answered
  requests. A level table without the paired columns (built by hand), or a
  level that shares no sample with the baseline, is judged on the marginal
  drop of the level's figures instead.
- ``lost_rate`` (wrong or failed, of every request), ``wrong_rate`` (answered
  but wrong), ``failed_rate`` (= ``error_rate``: every failure, cut-short
  replies included),
  ``shed_rate`` (HTTP 429/503), ``client_error_rate`` (other 3xx/4xx: the
  scenario asks wrongly), ``server_error_rate`` (other HTTP errors),
  ``cut_short_rate`` (LLM replies cut short: empty, stopped at max_tokens
  before the answer, or a stream without its end; lost answers, but not
  failures of the transport), and ``error_rate_<kind>`` per error kind.
- ``coverage``: share of the dataset's samples a level sent.
- ``answer_drift`` (text answers, or a ``grading:`` section): share of the
  samples answered at both the level and the baseline whose answer changed
  (same prompt, different answer, right or wrong).

Runs against large language models (streamed replies) add, in milliseconds,
``p50_ttft_ms`` ... ``p99_ttft_ms`` and ``max_ttft_ms`` (time to first token),
``p50_tpot_ms`` ... ``max_tpot_ms`` (time per output token after the first),
``p50_itl_ms`` ... ``p99_itl_ms`` (each reply's mean inter-token gap),
``p99_itl_max_ms`` (each reply's longest gap) and ``max_itl_ms`` (the longest
gap of all); all are over successful replies, like ``p95_ms`` (the end-to-end
latency), and named as the level table's columns, like ``p95_sched_ms``. Also
``output_tokens_per_s`` (output tokens of the successful replies per second)
and ``token_goodput_tps`` (output tokens of the answers ``goodput`` counts,
per second), both capacities, and ``mean_output_tokens``. A rule on a figure the
run did not measure (TTFT of a run that did not stream) fails with "no
data".
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loadgrade.analysis.degradation import load_order
from loadgrade.analysis.errors import AnalysisInputError

__all__ = ["CAPACITY_METRICS", "RULE_METRICS", "Rule", "check_rules", "parse_rule"]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}
_CAPACITY = {
    "goodput": "goodput_rps",
    "throughput": "throughput_rps",
    "output_tokens_per_s": "output_tokens_per_s",
    "token_goodput_tps": "token_goodput_tps",
}
#: Metrics measured at the best level, not the worst: a rate the run reached somewhere.
CAPACITY_METRICS: tuple[str, ...] = tuple(_CAPACITY)
#: Drop metric: (paired column of the level table, column whose marginal drop stands in without it).
_DROPS = {
    "accuracy_drop": ("accuracy_drop", "effective_accuracy"),
    "effective_accuracy_drop": ("accuracy_drop", "effective_accuracy"),
    "answered_accuracy_drop": ("answered_accuracy_drop", "accuracy"),
}
#: Rule metric to the level table's column, where the names differ.
_ALIASES = {
    "accuracy": "effective_accuracy",
    "answered_accuracy": "accuracy",
    "failed_rate": "error_rate",
    "shed_rate": "error_rate_shed",
    "client_error_rate": "error_rate_client",
    "server_error_rate": "error_rate_server",
    "cut_short_rate": "error_rate_cut_short",
}
_COLUMNS = (
    "accuracy",
    "answered_accuracy",
    "effective_accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "consistency",
    "exact_match",
    "normalised_match",
    "mae",
    "rmse",
    "r2",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "p50_sched_ms",
    "p90_sched_ms",
    "p95_sched_ms",
    "p99_sched_ms",
    "max_sched_ms",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "late_share",
    "p50_ttft_ms",
    "p90_ttft_ms",
    "p95_ttft_ms",
    "p99_ttft_ms",
    "max_ttft_ms",
    "p50_tpot_ms",
    "p90_tpot_ms",
    "p95_tpot_ms",
    "p99_tpot_ms",
    "max_tpot_ms",
    "p50_itl_ms",
    "p90_itl_ms",
    "p95_itl_ms",
    "p99_itl_ms",
    "p99_itl_max_ms",
    "max_itl_ms",
    "mean_output_tokens",
    "lost_rate",
    "wrong_rate",
    "failed_rate",
    "shed_rate",
    "client_error_rate",
    "server_error_rate",
    "cut_short_rate",
    "answer_drift",
    "coverage",
    "error_rate",
    "error_rate_shed",
    "error_rate_client",
    "error_rate_server",
    "error_rate_http",
    "error_rate_timeout",
    "error_rate_connection",
    "error_rate_decode",
    "error_rate_extract",
    "error_rate_cut_short",
    "inflight_mean",
    "inflight_max",
)
#: Every metric a rule may name.
RULE_METRICS: tuple[str, ...] = (*_DROPS, *_CAPACITY, *_COLUMNS)
_CONDITION_FIELDS = ("users", "level", "rate")
_CONDITION_COLUMNS = {"users": "users", "level": "level", "rate": "target_rps"}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?"
_RULE_RE = re.compile(
    rf"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>{_NUMBER})\s*"
    rf"(?:@\s*(?P<field>[A-Za-z_]+)\s*(?P<cop><=|>=|==|<|>)\s*(?P<cvalue>{_NUMBER}))?\s*$"
)


@dataclass(frozen=True)
class Rule:
    """One parsed rule."""

    text: str
    """The rule as written."""
    metric: str
    """Metric name (see ``RULE_METRICS``)."""
    op: str
    """Comparison: <=, >=, <, > or ==."""
    threshold: float
    """Bound (a percentage is stored as a share)."""
    where_field: str | None = None
    """``users``, ``level`` or ``rate`` (open model: the target arrival rate) when the rule applies to some levels
    only."""
    where_op: str | None = None
    """Comparison of the condition."""
    where_value: float | None = None
    """Value of the condition."""


def _number(text: str) -> float:
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def parse_rule(text: str) -> Rule:
    """Parse ``METRIC OP VALUE[@FIELD OP VALUE]``.

    Parameters
    ----------
    text : str
        E.g. ``"p95_ms<=200"``, ``"accuracy>=95%"``, ``"effective_accuracy>=0.9@users>=50"``.

    Returns
    -------
    Rule

    Raises
    ------
    AnalysisInputError
        Naming the rule and what was expected.

    Examples
    --------
    >>> parse_rule("effective_accuracy>=0.9@users>=50")
    Rule(text='effective_accuracy>=0.9@users>=50', metric='effective_accuracy', op='>=', threshold=0.9, \
where_field='users', where_op='>=', where_value=50.0)
    >>> parse_rule("accuracy>=95%").threshold
    0.95
    >>> parse_rule("p95<=200")
    Traceback (most recent call last):
    ...
    loadgrade.analysis.errors.AnalysisInputError: rule 'p95<=200' names unknown metric 'p95'; known: accuracy_drop, ...
    """
    if not isinstance(text, str):
        raise AnalysisInputError(f"a rule must be a string like 'p95_ms<=200', got {text!r}")
    match = _RULE_RE.match(text)
    if match is None:
        raise AnalysisInputError(
            f"rule {text!r} is not of the form METRIC OP VALUE[@users|level|rate OP VALUE] "
            "with OP one of <=, >=, <, >, == (e.g. 'p95_ms<=200' or 'effective_accuracy>=0.9@users>=50')"
        )
    metric = match["metric"]
    if metric not in RULE_METRICS:
        raise AnalysisInputError(f"rule {text!r} names unknown metric {metric!r}; known: {', '.join(RULE_METRICS)}")
    field = match["field"]
    if field is not None and field not in _CONDITION_FIELDS:
        raise AnalysisInputError(
            f"rule {text!r} has condition on {field!r}; a condition can use: {', '.join(_CONDITION_FIELDS)}"
        )
    return Rule(
        text=text.strip(),
        metric=metric,
        op=match["op"],
        threshold=_number(match["value"]),
        where_field=field,
        where_op=match["cop"],
        where_value=_number(match["cvalue"]) if match["cvalue"] is not None else None,
    )


def _values(levels: pd.DataFrame, metric: str) -> pd.Series:
    if metric in _DROPS:
        paired, column = _DROPS[metric]
        if column in levels.columns:
            baseline = float(load_order(levels)[column].iloc[0])
            marginal = baseline - levels[column].astype(float)
        else:
            marginal = pd.Series(np.nan, index=levels.index)
        if paired not in levels.columns:
            return marginal
        # a level that shares no sample with the baseline has no paired drop: its marginal drop still counts
        return levels[paired].astype(float).fillna(marginal)
    column = _CAPACITY.get(metric, _ALIASES.get(metric, metric))
    if column not in levels.columns:
        return pd.Series(np.nan, index=levels.index)
    return levels[column].astype(float)


def check_rules(levels: pd.DataFrame, rules: Sequence[str | Rule]) -> pd.DataFrame:
    """Evaluate rules against a level table.

    Parameters
    ----------
    levels : pandas.DataFrame
        From :func:`analysis.level_table` (or ``RunAnalysis.levels``).
    rules : sequence of str or Rule

    Returns
    -------
    pandas.DataFrame
        One row per rule: ``rule``, ``measured`` (the deciding value),
        ``at_level``, ``at_users`` and ``at_load`` (where it was measured;
        the load is the rate in an open-model run), ``levels``
        (how many levels the rule applied to), ``passed`` (bool) and
        ``verdict`` ("pass", "fail", or "fail: no data" when no level had a
        value, e.g. a condition no level meets).

    Examples
    --------
    >>> levels = pd.DataFrame({"level": [0, 1, 2], "users": [2.0, 50.0, 100.0],
    ...     "effective_accuracy": [0.95, 0.94, 0.80], "p95_ms": [40.0, 90.0, 300.0], "goodput_rps": [30.0, 90.0, 60.0]})
    >>> check_rules(levels, ["accuracy_drop<=0.02@users<=50", "p95_ms<=200", "goodput>=80"])[
    ...     ["rule", "measured", "at_users", "verdict"]].to_dict("records")
    [{'rule': 'accuracy_drop<=0.02@users<=50', 'measured': 0.01..., 'at_users': 50.0, 'verdict': 'pass'}, \
{'rule': 'p95_ms<=200', 'measured': 300.0, 'at_users': 100.0, 'verdict': 'fail'}, \
{'rule': 'goodput>=80', 'measured': 90.0, 'at_users': 50.0, 'verdict': 'pass'}]

    A server that sheds almost every request at the top level answers the
    few it keeps well: it passes among answered requests, not over every one.

    >>> shed = pd.DataFrame({"level": [0, 1], "users": [2.0, 64.0], "accuracy": [0.95, 0.96],
    ...     "effective_accuracy": [0.95, 0.02], "accuracy_drop": [0.0, 0.93], "answered_accuracy_drop": [0.0, -0.01],
    ...     "error_rate_shed": [0.0, 0.98]})
    >>> check_rules(shed, ["accuracy_drop<=0.01", "answered_accuracy_drop<=0.01", "accuracy>=0.9",
    ...     "answered_accuracy>=0.9", "shed_rate<=1%"])["verdict"].tolist()
    ['fail', 'pass', 'fail', 'pass', 'fail']
    """
    for column in ("level", "users"):
        if column not in levels.columns:
            raise AnalysisInputError(f"level table has no column '{column}'; columns are: {', '.join(levels.columns)}")
    parsed = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
    load = levels["load" if "load" in levels.columns else "users"].to_numpy(dtype=float)
    rows = []
    for rule in parsed:
        values = _values(levels, rule.metric)
        selected = pd.Series(True, index=levels.index)
        if rule.where_field is not None and rule.where_op is not None and rule.where_value is not None:
            compare_where = _COMPARE[rule.where_op]
            where_value = rule.where_value
            column = _CONDITION_COLUMNS[rule.where_field]
            if column not in levels.columns:
                raise AnalysisInputError(
                    f"rule {rule.text!r} selects levels by {rule.where_field}, but the run has no {column} "
                    "(a rate is recorded by open-model runs only)"
                )
            selected = levels[column].astype(float).map(lambda v, c=compare_where, w=where_value: c(v, w))
        mask = selected.to_numpy(dtype=bool)
        value_array = values.to_numpy(dtype=float)
        usable = np.flatnonzero(mask & ~np.isnan(value_array))
        n_levels = int(mask.sum())
        if len(usable) == 0:
            rows.append(
                {
                    "rule": rule.text,
                    "measured": math.nan,
                    "at_level": None,
                    "at_users": math.nan,
                    "at_load": math.nan,
                    "levels": n_levels,
                    "passed": False,
                    "verdict": "fail: no data",
                }
            )
            continue
        candidates = value_array[usable]
        best_is_max = rule.metric in _CAPACITY or rule.op not in (">=", ">")
        deciding = int(usable[int(np.argmax(candidates)) if best_is_max else int(np.argmin(candidates))])
        measured = float(value_array[deciding])
        if rule.op == "==":
            passed = bool(np.all(np.isclose(candidates, rule.threshold)))
        else:
            passed = bool(_COMPARE[rule.op](measured, rule.threshold))
        rows.append(
            {
                "rule": rule.text,
                "measured": measured,
                "at_level": int(levels["level"].to_numpy()[deciding]),
                "at_users": float(levels["users"].to_numpy(dtype=float)[deciding]),
                "at_load": float(load[deciding]),
                "levels": n_levels,
                "passed": passed,
                "verdict": "pass" if passed else "fail",
            }
        )
    columns = ["rule", "measured", "at_level", "at_users", "at_load", "levels", "passed", "verdict"]
    return pd.DataFrame(rows, columns=columns)
