"""Interval estimates and tests for proportions: Wilson, Newcombe, McNemar, Holm.

Accuracy at a load level is a proportion estimated from a finite number of
requests; these are the tools that keep a 0.3-point wobble from being reported
as a degradation.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from analysis.errors import AnalysisInputError

__all__ = ["holm_adjust", "mcnemar_test", "newcombe_interval", "two_proportion_test", "wilson_interval"]

# Below this many discordant pairs McNemar's chi-square is a poor approximation: use the exact binomial test.
MCNEMAR_EXACT_BELOW = 25

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
    total = b + c
    if total == 0:
        return 1.0, "exact"
    if total < MCNEMAR_EXACT_BELOW:
        from scipy import stats as sps  # scipy.stats takes seconds to import: only the tests that need it

        return float(sps.binomtest(int(min(b, c)), int(total), 0.5).pvalue), "exact"
    statistic = (abs(b - c) - 1) ** 2 / total
    from scipy import stats as sps

    return float(sps.chi2.sf(statistic, df=1)), "chi2"


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
