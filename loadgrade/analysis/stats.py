"""Interval estimates and tests for proportions: Wilson, Newcombe, McNemar, Holm, and their per-sample forms.

Accuracy at a load level is a proportion estimated from a finite number of
answers; these are the tools that keep a 0.3-point wobble from being reported
as a degradation. When a level sends each sample more than once, the answers
to one sample are not independent trials (a deterministic model gives the same
answer fifteen times), so the *sample* is the unit:
:func:`sample_wilson_interval` widens the level's interval by the design effect
of the repeats, and :func:`paired_difference` compares two levels sample by
sample on the samples both answered.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from loadgrade.analysis.errors import AnalysisInputError

__all__ = [
    "PairedDifference",
    "holm_adjust",
    "mcnemar_test",
    "newcombe_interval",
    "paired_difference",
    "sample_wilson_interval",
    "two_proportion_test",
    "wilson_interval",
]

# Below this many discordant pairs McNemar's chi-square is a poor approximation: use the exact binomial test.
MCNEMAR_EXACT_BELOW = 25
# Up to this many non-zero paired differences the sign-flip test enumerates all 2^k sign patterns (65 536 at most);
# beyond it the normal approximation of the sign-flip distribution is accurate and costs nothing.
SIGN_FLIP_EXACT_UP_TO = 16

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise AnalysisInputError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")


def _check_counts(successes: FloatArray, n: FloatArray) -> None:
    if np.any(n < 0) or np.any(successes < 0):
        raise AnalysisInputError("counts must be non-negative")
    if np.any(successes > n):
        raise AnalysisInputError("successes cannot exceed the number of trials n")


def wilson_interval(successes: ArrayLike, n: ArrayLike, *, confidence: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a binomial proportion (vectorised).

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps close to
    its nominal coverage for small ``n`` and accuracies near 1, which is where
    model accuracy usually lives.

    Parameters
    ----------
    successes : array-like of int
        Number of successes (e.g. correct answers).
    n : array-like of int
        Number of trials; where it is 0 the interval is NaN.
    confidence : float, default 0.95
        Two-sided confidence level.

    Returns
    -------
    low, high : numpy.ndarray
        Bounds of the interval, same shape as the broadcast inputs.

    Examples
    --------
    >>> low, high = wilson_interval(81, 263)
    >>> print(f"{low:.4f} {high:.4f}")
    0.2553 0.3662
    >>> wilson_interval([10, 0], [10, 0])[0]
    array([0.7224672,       nan])
    """
    _check_confidence(confidence)
    k = np.asarray(successes, dtype=float)
    total = np.asarray(n, dtype=float)
    _check_counts(k, total)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / total
        denom = 1 + z**2 / total
        centre = (p + z**2 / (2 * total)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
        low = np.where(total > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(total > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def _per_sample_counts(k: ArrayLike, n: ArrayLike) -> tuple[FloatArray, FloatArray]:
    ka = np.asarray(k, dtype=float).ravel()
    na = np.asarray(n, dtype=float).ravel()
    if ka.shape != na.shape:
        raise AnalysisInputError(
            f"per-sample counts k and n must have the same length, got {ka.size} correct counts and {na.size} totals"
        )
    if np.any(~np.isfinite(ka)) or np.any(~np.isfinite(na)):
        raise AnalysisInputError("per-sample counts k and n must be finite numbers (no NaN)")
    _check_counts(ka, na)
    answered = na > 0  # a sample never answered at this level carries no information about it
    return ka[answered], na[answered]


def sample_wilson_interval(k: ArrayLike, n: ArrayLike, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Wilson interval for a level's accuracy with the *sample*, not the request, as the unit.

    A level that replays 540 samples 15 times each sends 8100 requests, but a
    model that is deterministic on each sample has told us only 540 things: the
    request-level Wilson interval would be about four times too narrow. The
    point estimate stays the request-level accuracy ``sum(k) / sum(n)``; its
    variance is the cluster (between-sample) variance of that ratio estimator,
    ``sum((k_i - p n_i)^2) / N^2``. Dividing it by the binomial variance
    ``p (1 - p) / N`` gives the design effect ``deff`` (floored at 1: repeats
    never make a level *more* informative than independent requests), and the
    Wilson interval is taken with ``n_effective = N / deff`` trials. When
    ``p`` is 0 or 1 the cluster variance is 0 and says nothing, so ``deff`` is
    then ``N / m``: the interval is the one for ``m`` samples.

    Parameters
    ----------
    k : array-like of int
        Correct answers of each distinct sample at the level.
    n : array-like of int
        Answers (requests counted for the metric) of each distinct sample;
        samples with ``n_i == 0`` are ignored.
    confidence : float, default 0.95
        Two-sided confidence level.

    Returns
    -------
    low, high : float
        Bounds of the interval; NaN when nothing was answered.
    n_effective : float
        Number of independent trials the level is worth (``sum(n)`` when every
        sample was answered once, the number of samples when each sample's
        outcome is fixed); 0.0 when nothing was answered.

    Examples
    --------
    Each sample answered once: exactly the request-level Wilson interval.

    >>> low, high, n_eff = sample_wilson_interval([1, 1, 0, 1], [1, 1, 1, 1])
    >>> print(f"{low:.4f} {high:.4f} {n_eff:g}")
    0.3006 0.9544 4
    >>> [float(b) for b in wilson_interval(3, 4)] == [low, high]
    True

    The same four samples sent ten times each, the model deterministic on each
    one: 40 requests, but still only four samples' worth of evidence.

    >>> low, high, n_eff = sample_wilson_interval([10, 10, 0, 10], [10, 10, 10, 10])
    >>> print(f"{low:.4f} {high:.4f} {n_eff:.1f}")
    0.3006 0.9544 4.0
    >>> sample_wilson_interval([], [])
    (nan, nan, 0.0)
    """
    _check_confidence(confidence)
    ka, na = _per_sample_counts(k, n)
    total = float(na.sum())
    if total == 0:
        return float("nan"), float("nan"), 0.0
    correct = float(ka.sum())
    if np.all(na == 1):
        low, high = wilson_interval(correct, total, confidence=confidence)
        return float(low), float(high), total
    p = correct / total
    if p in (0.0, 1.0):
        deff = total / ka.size
    else:
        cluster_var = float(np.sum((ka - p * na) ** 2)) / total**2
        deff = max(cluster_var / (p * (1 - p) / total), 1.0)
    n_effective = total / deff
    low, high = wilson_interval(p * n_effective, n_effective, confidence=confidence)
    return float(low), float(high), n_effective


def newcombe_interval(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, *, confidence: float = 0.95
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Difference ``p2 - p1`` of two independent proportions with Newcombe's hybrid score interval.

    Built from the two Wilson intervals (Newcombe 1998, method 10), so it
    behaves well near 0 and 1 where the Wald difference interval does not.

    Returns
    -------
    difference, low, high : numpy.ndarray

    Examples
    --------
    The example is Newcombe's own (his Table II reports 0.0524 to 0.3339 for p1 - p2).

    >>> d, low, high = newcombe_interval(56, 70, 48, 80)
    >>> print(f"{d:.4f} {low:.4f} {high:.4f}")
    -0.2000 -0.3339 -0.0524
    """
    _check_confidence(confidence)
    k1a, n1a, k2a, n2a = (np.asarray(a, dtype=float) for a in (k1, n1, k2, n2))
    l1, u1 = wilson_interval(k1a, n1a, confidence=confidence)
    l2, u2 = wilson_interval(k2a, n2a, confidence=confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = k1a / n1a
        p2 = k2a / n2a
        diff = p2 - p1
        low = diff - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
        high = diff + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return diff, low, high


def mcnemar_test(b: int, c: int) -> tuple[float, str]:
    """Two-sided McNemar test on the discordant pairs of a paired comparison.

    Parameters
    ----------
    b : int
        Pairs right at the first condition and wrong at the second.
    c : int
        Pairs wrong at the first condition and right at the second.

    Returns
    -------
    p_value : float
        1.0 when there are no discordant pairs.
    method : {"exact", "chi2"}
        Exact binomial test below 25 discordant pairs, else chi-square with
        continuity correction.

    Examples
    --------
    >>> p, method = mcnemar_test(10, 2)
    >>> print(f"{p:.5f} {method}")
    0.03857 exact
    >>> p, method = mcnemar_test(40, 20)
    >>> print(f"{p:.5f} {method}")
    0.01417 chi2
    """
    if b < 0 or c < 0:
        raise AnalysisInputError(f"discordant counts must be non-negative, got b={b}, c={c}")
    total = int(b + c)
    if total == 0:
        return 1.0, "exact"
    if total < MCNEMAR_EXACT_BELOW:
        # the exact binomial test at 1/2, summed in integers: the null distribution is symmetric, so the two-sided
        # p-value is twice the smaller tail (scipy's binomtest gives the same figure, at a thousand times the cost
        # of a call that runs once per level of every analysis)
        tail = sum(math.comb(total, i) for i in range(int(min(b, c)) + 1))
        return min(1.0, 2 * tail / 2**total), "exact"
    statistic = (abs(b - c) - 1) ** 2 / total
    return math.erfc(math.sqrt(statistic / 2)), "chi2"  # the chi-square(1) upper tail


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided pooled z-test for two independent proportions (p-value).

    Used when samples were not answered at both levels, so no pairing exists.

    Examples
    --------
    >>> print(f"{two_proportion_test(90, 100, 75, 100):.5f}")
    0.00525
    """
    if min(n1, n2) <= 0:
        return float("nan")
    pooled = (k1 + k2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k2 / n2 - k1 / n1) / se
    return 2 * NormalDist().cdf(-abs(float(z)))  # the lower tail: exact where 1 - cdf would round to 0


def holm_adjust(p_values: ArrayLike) -> FloatArray:
    """Holm step-down adjusted p-values (family-wise error control).

    NaN p-values (tests that could not be run) stay NaN and do not count
    towards the family size.

    Examples
    --------
    >>> holm_adjust([0.01, 0.04, 0.03, float("nan")])
    array([0.03, 0.06, 0.06,  nan])
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


class PairedDifference(NamedTuple):
    """Per-sample paired difference ``level - baseline`` with its interval and test (see `paired_difference`)."""

    diff: float
    low: float
    high: float
    p_value: float
    test: str
    n_pairs: int
    worse: int
    better: int


def _check_paired(a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
    aa = np.asarray(a, dtype=float).ravel()
    ba = np.asarray(b, dtype=float).ravel()
    if aa.shape != ba.shape:
        raise AnalysisInputError(
            f"paired per-sample accuracies must have one value per shared sample at both levels, "
            f"got {aa.size} baseline and {ba.size} level values"
        )
    for name, values in (("baseline", aa), ("level", ba)):
        if np.any(~np.isfinite(values)) or np.any((values < 0) | (values > 1)):
            raise AnalysisInputError(f"{name} per-sample accuracies must be numbers between 0 and 1 (no NaN)")
    return aa, ba


def _newcombe_paired(baseline: FloatArray, level: FloatArray, confidence: float) -> tuple[float, float]:
    # Newcombe (1998, paired data, method 10): square-and-add of the two Wilson intervals, with the phi
    # correlation of the 2x2 table (continuity-corrected towards 0 as in the paper) taking the pairing into account.
    n = float(baseline.size)
    level_right = float(level.sum())
    base_right = float(baseline.sum())
    both_right = float(np.sum(baseline * level))
    better = level_right - both_right
    worse = base_right - both_right
    both_wrong = n - both_right - better - worse
    p_level, p_base = level_right / n, base_right / n
    l_level, u_level = (float(v) for v in wilson_interval(level_right, n, confidence=confidence))
    l_base, u_base = (float(v) for v in wilson_interval(base_right, n, confidence=confidence))
    margins = level_right * (n - level_right) * base_right * (n - base_right)
    phi = 0.0
    if margins > 0:
        cross = both_right * both_wrong - better * worse
        if cross > n / 2:
            phi = (cross - n / 2) / np.sqrt(margins)
        elif cross < 0:
            phi = cross / np.sqrt(margins)
    diff = p_level - p_base
    d_low = (p_level - l_level) ** 2 + (u_base - p_base) ** 2 - 2 * phi * (p_level - l_level) * (u_base - p_base)
    d_high = (p_base - l_base) ** 2 + (u_level - p_level) ** 2 - 2 * phi * (p_base - l_base) * (u_level - p_level)
    return max(-1.0, diff - np.sqrt(max(d_low, 0.0))), min(1.0, diff + np.sqrt(max(d_high, 0.0)))


def _sign_flip_p_value(d: FloatArray) -> float:
    nonzero = d[d != 0]
    k = nonzero.size
    if k == 0:
        return 1.0
    observed = abs(float(nonzero.sum()))
    if k <= SIGN_FLIP_EXACT_UP_TO:
        patterns = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
        sums = np.abs((1 - 2 * patterns) @ nonzero)
        tolerance = 1e-12 * float(np.abs(nonzero).sum())
        return float(np.mean(sums >= observed - tolerance))
    z = observed / np.sqrt(float(np.sum(nonzero**2)))
    return 2 * NormalDist().cdf(-z)


def paired_difference(a: ArrayLike, b: ArrayLike, *, confidence: float = 0.95) -> PairedDifference:
    """Mean per-sample difference ``b - a`` on shared samples, with an interval and a two-sided test.

    Comparing two levels on their marginal accuracies mixes a change of the
    model with a change of *which* samples were replayed: a baseline that saw
    only half of the dataset can differ from a full pass by several points
    while no single answer changed. Pairing compares each sample with itself,
    so a model that never changes an answer has a difference of exactly 0.

    Parameters
    ----------
    a : array-like of float
        Per-sample accuracy at the baseline (correct answers / answers of
        each shared sample), one value per sample, in [0, 1].
    b : array-like of float
        Per-sample accuracy at the compared level, same samples, same order.
    confidence : float, default 0.95
        Two-sided confidence level of the interval.

    Returns
    -------
    PairedDifference
        ``diff`` (mean of ``b - a``), ``low``/``high`` (interval), ``p_value``
        (two-sided), ``test``, ``n_pairs``, ``worse``/``better`` (samples whose
        accuracy fell/rose). The test is chosen by the data:

        - every value 0 or 1 (each sample answered once, or repeats with fixed
          outcomes): McNemar on the discordant samples (``"mcnemar-exact"``
          below 25 of them, else ``"mcnemar-chi2"``) and Newcombe's score
          interval for paired proportions (Newcombe 1998, method 10);
        - fractional per-sample accuracies (repeats that disagree): a paired
          t-interval on the differences and a sign-flip randomisation test
          (``"paired-t/sign-flip"``), exact up to 16 non-zero differences and
          its normal approximation beyond, so the result is deterministic;
        - no shared sample: NaN everywhere and ``"none"``.

    Examples
    --------
    The paired table of Cavo et al. (2012) in Fagerland, Lydersen & Laake,
    *Statistical Analysis of Contingency Tables* (2017), whose Newcombe
    interval is -0.1186 to -0.0046: 59 samples right at both, 16 right only at
    the baseline, 6 right only at the level, 80 wrong at both.

    >>> baseline = [1] * 59 + [1] * 16 + [0] * 6 + [0] * 80
    >>> level = [1] * 59 + [0] * 16 + [1] * 6 + [0] * 80
    >>> r = paired_difference(baseline, level)
    >>> print(f"{r.diff:+.4f} [{r.low:+.4f}, {r.high:+.4f}] p={r.p_value:.4f} {r.test} {r.worse}/{r.better}")
    -0.0621 [-0.1186, -0.0046] p=0.0525 mcnemar-exact 16/6

    A model that never changes an answer: exactly no difference.

    >>> r = paired_difference([1, 0.5, 0], [1, 0.5, 0])
    >>> r.diff, r.p_value, r.test
    (0.0, 1.0, 'paired-t/sign-flip')
    """
    _check_confidence(confidence)
    base, level = _check_paired(a, b)
    m = base.size
    if m == 0:
        nan = float("nan")
        return PairedDifference(nan, nan, nan, nan, "none", 0, 0, 0)
    d = level - base
    diff = float(np.mean(d))
    worse, better = int(np.sum(d < 0)), int(np.sum(d > 0))
    binary = bool(np.all((base == 0) | (base == 1)) and np.all((level == 0) | (level == 1)))
    if binary:
        p_value, method = mcnemar_test(worse, better)
        low, high = _newcombe_paired(base, level, confidence)
        return PairedDifference(diff, float(low), float(high), p_value, f"mcnemar-{method}", m, worse, better)
    p_value = _sign_flip_p_value(d)
    if not np.any(d != d[0]):
        low = high = diff  # every sample moved by the same amount (often 0): no spread to estimate
    elif m < 2:
        low = high = float("nan")
    else:
        from scipy import stats as sps  # scipy.stats takes seconds to import: only when a t quantile is needed

        half = float(sps.t.ppf(0.5 + confidence / 2, df=m - 1)) * float(np.std(d, ddof=1)) / np.sqrt(m)
        low, high = max(-1.0, diff - half), min(1.0, diff + half)
    return PairedDifference(diff, low, high, p_value, "paired-t/sign-flip", m, worse, better)
