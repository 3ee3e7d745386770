"""Is quality at a load level worse than at the baseline (the lowest load), and where is the knee?

The unit of every comparison is the *sample* (a row of the dataset), not the
request. A level may replay part of the dataset, or each sample many times;
two levels are therefore compared *paired*: on the samples answered at both,
each sample's accuracy at the level (its correct answers over its answers
there) minus its accuracy at the baseline, averaged over those shared
samples. Which samples a stage happened to cover then cannot pass for a
change of the model: a server whose answers never change has a difference of
exactly 0, whatever the marginal accuracies say (they are kept as context).
The test and interval come from :func:`loadgrade.analysis.stats.paired_difference`
(McNemar with Newcombe's paired interval when each sample's outcome is fixed,
a paired t-interval with a sign-flip test when repeats disagree), and p-values
are Holm-adjusted across levels so that a long ramp does not produce false
alarms by sheer number.

With ``effective_accuracy`` (the default) a failed request (HTTP error,
time-out, shed 429/503) counts as a wrong answer, which is what the client
received; ``accuracy`` counts successful answers only (model quality).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.stats import holm_adjust, paired_difference

__all__ = ["METRICS", "Knee", "answer_drift", "degradation_table", "find_knee", "load_order", "load_unit"]

METRICS: tuple[str, ...] = ("accuracy", "effective_accuracy")
_NEEDED = ("level", "sample_id", "t_sent", "ok", "has_truth", "correct", "y_pred")


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


IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _check_joined(joined: pd.DataFrame, metric: str) -> None:
    if metric not in METRICS:
        raise AnalysisInputError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    missing = [c for c in _NEEDED if c not in joined.columns]
    if missing:
        raise AnalysisInputError(
            f"joined records have no column {', '.join(repr(c) for c in missing)}; columns are: "
            f"{', '.join(map(str, joined.columns))}"
        )


def _sample_codes(joined: pd.DataFrame, *, within: pd.Index | None = None) -> tuple[IntArray, pd.Index]:
    """Integer code of each record's ``sample_id`` (hashing, linear time) and the distinct ids.

    With ``within`` (the ids of another run), ids already there keep their code there, so two runs' codes can
    be compared directly; new ids get codes after them.
    """
    codes, uniques = pd.factorize(joined["sample_id"])
    ids = pd.Index(uniques)
    if within is None:
        return codes.astype(np.int64), ids
    mapped = within.get_indexer(ids)
    new = mapped < 0
    mapped[new] = len(within) + np.arange(int(new.sum()))
    return mapped.astype(np.int64)[codes], within.append(ids[new])


class _SampleCounts:
    """Per (level, sample): the answers counted for the metric, the correct ones, the first successful prediction.

    Built in a few linear passes over the records (hashing and bincount, no Python loop per row or per
    sample), so a 10 M-row run costs seconds; only the distinct (level, sample) pairs are ever sorted.
    """

    def __init__(
        self, joined: pd.DataFrame, level_values: npt.ArrayLike, *, metric: str, codes: IntArray | None = None
    ) -> None:
        if codes is None:
            codes, _ = _sample_codes(joined)
        self.n_codes = max(int(codes.max()) + 1, 1) if len(codes) else 1
        values = np.asarray(level_values, dtype=float)
        self.n_levels = len(values)
        level_of = joined["level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        position = pd.Index(values).get_indexer(level_of)
        has_truth = joined["has_truth"].to_numpy(dtype=bool)
        ok = joined["ok"].to_numpy(dtype=bool)
        # a failed request is a wrong answer, whatever the correct column says about it
        correct = joined["correct"].fillna(False).to_numpy(dtype=bool) & ok
        counted = (position >= 0) & (codes >= 0) & has_truth  # code -1: a record without a sample id
        if metric == "accuracy":
            counted &= ok
        rows = np.flatnonzero(counted)
        keys = position[rows].astype(np.int64) * self.n_codes + codes[rows]
        inverse, distinct = pd.factorize(keys)
        n = np.bincount(inverse, minlength=len(distinct)).astype(float)
        k = np.bincount(inverse, weights=correct[rows].astype(float), minlength=len(distinct))
        order = np.argsort(distinct, kind="stable")
        self.keys: IntArray = np.asarray(distinct)[order].astype(np.int64)
        self.k: FloatArray = np.asarray(k[order], dtype=float)
        self.n: FloatArray = np.asarray(n[order], dtype=float)
        self.bounds = np.searchsorted(self.keys, np.arange(self.n_levels + 1, dtype=np.int64) * self.n_codes)

        # the first successful answer of each sample at each level, for the consistency of predictions
        answered = np.flatnonzero((position >= 0) & (codes >= 0) & has_truth & ok)
        t_sent = joined["t_sent"].to_numpy(dtype=float)[answered]
        if len(t_sent) > 1 and not bool(np.all(t_sent[1:] >= t_sent[:-1])):
            answered = answered[np.argsort(t_sent, kind="stable")]
        first_keys = position[answered].astype(np.int64) * self.n_codes + codes[answered]
        first = ~pd.Series(first_keys).duplicated(keep="first").to_numpy()
        answered, first_keys = answered[first], first_keys[first]
        order = np.argsort(first_keys, kind="stable")
        self.first_keys = first_keys[order]
        self.first_predictions = joined["y_pred"].to_numpy()[answered[order]]
        self.first_bounds = np.searchsorted(
            self.first_keys, np.arange(self.n_levels + 1, dtype=np.int64) * self.n_codes
        )

    def per_sample(self, position: int) -> tuple[IntArray, FloatArray, FloatArray]:
        """Sorted sample codes with their correct and counted answers at the level in ``position``."""
        part = slice(self.bounds[position], self.bounds[position + 1])
        return self.keys[part] - position * self.n_codes, self.k[part], self.n[part]

    def predictions(self, position: int) -> tuple[IntArray, npt.NDArray[Any]]:
        """Sorted sample codes with their first successful prediction at the level in ``position``."""
        part = slice(self.first_bounds[position], self.first_bounds[position + 1])
        return self.first_keys[part] - position * self.n_codes, self.first_predictions[part]


def _same_prediction(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return np.isclose(a, b, rtol=1e-9, atol=0.0)
    return np.asarray(a.astype(object) == b.astype(object), dtype=bool)


def _paired_comparison(
    reference: _SampleCounts, ref_position: int, other: _SampleCounts, other_position: int, *, confidence: float
) -> dict[str, Any]:
    """Paired difference (other minus reference) on the shared samples, and the consistency of predictions."""
    codes_r, k_r, n_r = reference.per_sample(ref_position)
    codes_o, k_o, n_o = other.per_sample(other_position)
    _, in_r, in_o = np.intersect1d(codes_r, codes_o, assume_unique=True, return_indices=True)
    result = paired_difference(k_r[in_r] / n_r[in_r], k_o[in_o] / n_o[in_o], confidence=confidence)
    first_r, pred_r = reference.predictions(ref_position)
    first_o, pred_o = other.predictions(other_position)
    _, in_r, in_o = np.intersect1d(first_r, first_o, assume_unique=True, return_indices=True)
    same = _same_prediction(pred_r[in_r], pred_o[in_o])
    return {
        "diff": result.diff,
        "diff_low": result.low,
        "diff_high": result.high,
        "test": result.test,
        "n_pairs": result.n_pairs,
        "worse_pairs": result.worse,
        "better_pairs": result.better,
        "p_value": result.p_value,
        "consistency": float(same.mean()) if len(same) else float("nan"),
        "n_consistency": len(same),
    }


def _marginal_metric(levels: pd.DataFrame, metric: str) -> FloatArray:
    """Each level's request-level metric from its counts: correct over scored (accuracy) or over labelled."""
    total_column = "n_scored" if metric == "accuracy" else "n_truth"
    missing = [c for c in ("n_correct", total_column) if c not in levels.columns]
    if missing:
        raise AnalysisInputError(
            f"level table has no column {', '.join(repr(c) for c in missing)}; columns are: "
            f"{', '.join(map(str, levels.columns))}"
        )
    total = levels[total_column].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, levels["n_correct"].to_numpy(dtype=float) / total, np.nan)


def degradation_table(
    joined: pd.DataFrame,
    levels: pd.DataFrame,
    *,
    metric: str = "effective_accuracy",
    tolerance: float = 0.01,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Compare every level's quality with the baseline (lowest offered load), sample by sample.

    Parameters
    ----------
    joined : pandas.DataFrame
        Scored records (``sample_id``, ``t_sent``, ``ok``, ``has_truth``,
        ``correct``, ``y_pred``) with a ``level`` column.
    levels : pandas.DataFrame
        From :func:`analysis.level_table` (``level``, ``users``,
        ``n_correct`` and ``n_scored`` or ``n_truth``).
    metric : {"effective_accuracy", "accuracy"}, default "effective_accuracy"
        With errors counted as wrong (what clients received: a server that
        sheds load cannot look better for it), or among successful responses
        only (model quality).
    tolerance : float, default 0.01
        A drop must exceed this (as a share: 0.01 = 1 point) to count as degraded.
    alpha : float, default 0.05
        Family-wise error rate for the Holm-adjusted tests.
    confidence : float, default 0.95
        Level of the interval on the paired difference.

    Returns
    -------
    pandas.DataFrame
        In load order, one row per level:

        - ``level``, ``users``, ``baseline`` (True on the baseline row);
        - ``diff``: mean over the shared samples of (the sample's accuracy at
          the level minus its accuracy at the baseline), with
          ``diff_low``/``diff_high``; NaN without shared samples;
        - ``marginal_diff``: the level's metric minus the baseline's over all
          their records (context: it mixes in which samples each one covered);
        - ``test``: "baseline", "mcnemar-exact", "mcnemar-chi2",
          "paired-t/sign-flip", or "none" without shared samples;
        - ``n_pairs`` (shared samples), ``worse_pairs``/``better_pairs``
          (shared samples whose accuracy fell/rose), ``p_value``, ``p_holm``;
        - ``significantly_worse`` (Holm p below ``alpha`` and ``diff < 0``),
          ``degraded`` (significantly worse and the drop exceeds ``tolerance``);
        - ``consistency``: share of the samples answered successfully at both
          levels whose first successful prediction equals the baseline's, and
          ``n_consistency``, the number of those samples.

    Examples
    --------
    >>> joined = pd.DataFrame({"level": [0] * 4 + [1] * 4, "sample_id": list("abcd") * 2,
    ...     "t_sent": range(8), "ok": True, "has_truth": True,
    ...     "correct": [True, True, True, False, True, False, True, False],
    ...     "y_pred": ["1", "2", "3", "4", "1", "9", "3", "4"]})
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 8.0], "n_correct": [3, 2],
    ...                        "n_scored": [4, 4], "n_truth": [4, 4]})
    >>> table = degradation_table(joined, levels)
    >>> table[["level", "diff", "test", "n_pairs", "worse_pairs", "consistency"]].to_dict("records")
    [{'level': 0, 'diff': 0.0, 'test': 'baseline', 'n_pairs': 4, 'worse_pairs': 0, 'consistency': 1.0}, \
{'level': 1, 'diff': -0.25, 'test': 'mcnemar-exact', 'n_pairs': 4, 'worse_pairs': 1, 'consistency': 0.75}]

    The baseline replayed samples a and b only; the level answered all four,
    and exactly as the baseline did where both answered: no change at all,
    though the marginal accuracies differ by 25 points.

    >>> half = joined[(joined["level"] == 1) | joined["sample_id"].isin(["a", "b"])]
    >>> half = half.assign(correct=half["sample_id"].isin(["a", "b"]))
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 8.0], "n_correct": [2, 2],
    ...                        "n_scored": [2, 4], "n_truth": [2, 4]})
    >>> row = degradation_table(half, levels).iloc[1]
    >>> float(row["diff"]), float(row["marginal_diff"]), float(row["p_value"]), bool(row["degraded"])
    (0.0, -0.5, 1.0, False)
    """
    _check_joined(joined, metric)
    _check_tolerance(tolerance, alpha)
    ordered = load_order(levels)
    marginal = _marginal_metric(ordered, metric)
    counts = _SampleCounts(joined, ordered["level"].to_numpy(dtype=float), metric=metric)
    compared = [_paired_comparison(counts, 0, counts, p, confidence=confidence) for p in range(len(ordered))]
    compared[0].update(test="baseline", p_value=float("nan"))
    column = {name: [row[name] for row in compared] for name in compared[0]}
    p_value = np.asarray(column["p_value"], dtype=float)
    diff = np.asarray(column["diff"], dtype=float)
    p_holm = holm_adjust(p_value)
    with np.errstate(invalid="ignore"):
        significant = (p_holm < alpha) & (diff < 0)
    return pd.DataFrame(
        {
            "level": ordered["level"].to_numpy(dtype=np.int64),
            "users": ordered["users"].to_numpy(dtype=float),
            "baseline": np.arange(len(ordered)) == 0,
            "diff": diff,
            "diff_low": np.asarray(column["diff_low"], dtype=float),
            "diff_high": np.asarray(column["diff_high"], dtype=float),
            "marginal_diff": marginal - marginal[0],
            "test": column["test"],
            "n_pairs": np.asarray(column["n_pairs"], dtype=np.int64),
            "worse_pairs": np.asarray(column["worse_pairs"], dtype=np.int64),
            "better_pairs": np.asarray(column["better_pairs"], dtype=np.int64),
            "p_value": p_value,
            "p_holm": p_holm,
            "significantly_worse": significant,
            "degraded": significant & (-diff > tolerance),
            "consistency": np.asarray(column["consistency"], dtype=float),
            "n_consistency": np.asarray(column["n_consistency"], dtype=np.int64),
        }
    )


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


def _modal_answers(
    position: IntArray, codes: IntArray, answers: IntArray, n_codes: int, n_answers: int
) -> tuple[IntArray, IntArray]:
    """Each (level position, sample) cell's most frequent answer code, ties going to the answer given first.

    The rows must come in send order. Returns the cells (``position * n_codes + sample``, sorted) and their answers.
    """
    cell = position * n_codes + codes
    # factorize numbers distinct (cell, answer) keys in order of first appearance: the rank breaks ties
    key_codes, keys = pd.factorize(cell * n_answers + answers)
    count = np.bincount(key_codes, minlength=len(keys))
    key_cell, key_answer = keys // n_answers, keys % n_answers
    order = np.lexsort((np.arange(len(keys)), -count, key_cell))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key_cell[order][1:] != key_cell[order][:-1]
    best = order[first]
    return key_cell[best].astype(np.int64), key_answer[best].astype(np.int64)


def answer_drift(joined: pd.DataFrame, levels: pd.DataFrame, *, normalise: bool = False) -> pd.DataFrame:
    """Per level, the share of samples whose answer differs from their answer at the baseline: same prompt,
    different answer, whether or not either is right.

    The unit is the sample: those answered successfully (labelled, ``ok``) at both the level and the baseline
    (the lowest offered load, :func:`load_order`). A sample sent several times at a level answers there with its
    most frequent ``y_pred`` (on a tie, the one given first). No answer (:data:`~loadgrade.analysis.join.NO_ANSWER`)
    is an answer of its own here: a sample that answered at the baseline and gives none under load has drifted. A
    failed request is no answer at all and is left out, as a cut-short reply is.

    Parameters
    ----------
    joined : pandas.DataFrame
        Scored records (``level``, ``sample_id``, ``t_sent``, ``ok``, ``has_truth``, ``y_pred``): with a grading
        section ``y_pred`` already holds each answer's normalised key.
    levels : pandas.DataFrame
        The level table (``level``, ``users``, and ``load`` when the run offered a rate).
    normalise : bool, default False
        Compare :func:`~loadgrade.analysis.join.normalise_text` of the answers (case, punctuation and spacing
        ignored): for text answers that no grading has normalised.

    Returns
    -------
    pandas.DataFrame
        In load order: ``level``, ``answer_drift`` (a share; 0 at the baseline, NaN without shared samples) and
        ``n_drift_samples`` (the samples compared; at the baseline, those it answered).

    Examples
    --------
    >>> joined = pd.DataFrame({"level": [0, 0, 0, 0, 1, 1, 1, 1, 1], "sample_id": list("abca") + list("abcc") + ["d"],
    ...     "t_sent": range(9), "ok": True, "has_truth": True,
    ...     "y_pred": ["Paris", "4", "blue", "Paris", "paris!", "5", "blue", "red", "x"]})
    >>> levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 8.0]})
    >>> answer_drift(joined, levels).round(3).to_dict("records")
    [{'level': 0, 'answer_drift': 0.0, 'n_drift_samples': 3}, \
{'level': 1, 'answer_drift': 0.667, 'n_drift_samples': 3}]
    >>> answer_drift(joined, levels, normalise=True)["answer_drift"].round(3).tolist()
    [0.0, 0.333]

    At the baseline a said "Paris" twice; at level 1 it said "paris!", a change unless normalised. Sample b drifted
    (4 to 5); c said "blue" then "red", a tie, so its first answer (blue) stands; d was not sent at the baseline and
    is not compared.
    """
    needed = ("level", "sample_id", "t_sent", "ok", "has_truth", "y_pred")
    missing = [c for c in needed if c not in joined.columns]
    if missing:
        raise AnalysisInputError(
            f"joined records have no column {', '.join(repr(c) for c in missing)}; columns are: "
            f"{', '.join(map(str, joined.columns))}"
        )
    ordered = load_order(levels)
    level_values = ordered["level"].to_numpy(dtype=float)
    level_of = joined["level"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    position = pd.Index(level_values).get_indexer(level_of)
    codes, _ = _sample_codes(joined)
    answered = (position >= 0) & (codes >= 0) & joined["has_truth"].to_numpy(dtype=bool)
    answered &= joined["ok"].to_numpy(dtype=bool)
    rows = np.flatnonzero(answered)
    t_sent = joined["t_sent"].to_numpy(dtype=float)[rows]
    if len(t_sent) > 1 and not bool(np.all(t_sent[1:] >= t_sent[:-1])):
        rows = rows[np.argsort(t_sent, kind="stable")]
    answer_codes, answers = pd.factorize(joined["y_pred"].to_numpy(dtype=object)[rows], use_na_sentinel=False)
    if normalise and len(answers):
        from loadgrade.analysis.join import NO_ANSWER, normalise_text  # join imports grading, which is light

        texts = [a if a == NO_ANSWER else normalise_text(str(a)) for a in answers]
        answer_codes = pd.factorize(np.asarray(texts, dtype=object))[0][answer_codes]
    n_codes = max(int(codes.max()) + 1, 1) if len(codes) else 1
    n_answers = max(len(answers), 1)
    cells, modal = _modal_answers(
        position[rows].astype(np.int64), codes[rows], answer_codes.astype(np.int64), n_codes, n_answers
    )
    bounds = np.searchsorted(cells, np.arange(len(ordered) + 1, dtype=np.int64) * n_codes)
    base = slice(bounds[0], bounds[1])
    base_samples, base_answers = cells[base], modal[base]
    drift, n_samples = [], []
    for p in range(len(ordered)):
        part = slice(bounds[p], bounds[p + 1])
        _, in_base, in_level = np.intersect1d(
            base_samples, cells[part] - p * n_codes, assume_unique=True, return_indices=True
        )
        changed = base_answers[in_base] != modal[part][in_level]
        drift.append(float(changed.mean()) if len(changed) else float("nan"))
        n_samples.append(len(changed))
    return pd.DataFrame(
        {
            "level": ordered["level"].to_numpy(dtype=np.int64),
            "answer_drift": np.asarray(drift, dtype=float),
            "n_drift_samples": np.asarray(n_samples, dtype=np.int64),
        }
    )
