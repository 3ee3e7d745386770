"""Per-level quality, latency, throughput and error figures.

Quality metrics come from scikit-learn itself; latency percentiles are exact
numpy percentiles over the recorded rows (not Locust's histogram buckets).
Runs against large language models add token latencies (TTFT, TPOT, ITL),
output tokens per second, token goodput, the ``finish_reason`` mix and the
replies cut short, by reason (see :data:`LLM_COLUMNS`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    recall_score,
    root_mean_squared_error,
)
from tqdm.auto import tqdm

from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.join import NO_ANSWER, TASKS, normalise_text
from loadgrade.analysis.levels import inflight_concurrency
from loadgrade.analysis.stats import sample_wilson_interval

__all__ = [
    "CUT_SHORT_REASONS",
    "ERROR_KINDS",
    "FAILURE_CLASSES",
    "FINISH_REASONS",
    "LATENCY_PERCENTILES",
    "LATE_MS",
    "LLM_COLUMNS",
    "SHED_STATUS",
    "LabelPairs",
    "classification_metrics",
    "failure_class",
    "latency_percentiles",
    "level_table",
    "per_class_recall",
    "regression_metrics",
    "sorted_classes",
    "text_metrics",
]

ERROR_KINDS: tuple[str, ...] = ("http", "timeout", "connection", "decode", "extract", "cut_short")
#: HTTP statuses of a server refusing load (429 Too Many Requests, 503 Service Unavailable): shed requests.
SHED_STATUS: tuple[int, ...] = (429, 503)
#: What a failed request says, as the level table counts it (``n_<class>``): ``shed`` (HTTP 429 or 503: the
#: server refused the load), ``client_error`` (any other 3xx or 4xx: the scenario asks wrongly, e.g. 400 or 404),
#: ``server_error`` (any other HTTP error: 500, 502, 504, ...), then the transport and format kinds, and
#: ``cut_short``: an LLM reply that lost its answer (a lost answer like a failure, but told apart in the verdicts).
FAILURE_CLASSES: tuple[str, ...] = (
    "shed",
    "client_error",
    "server_error",
    "timeout",
    "connection",
    "decode",
    "extract",
    "cut_short",
)
#: Why a reply was cut short, from its error text ``cut short (<reason>): ...`` (``n_cut_short_<reason>``): the same
#: reasons as ``loadgrade.responses.CUT_SHORT_REASONS``, which the analysis does not import (it loads the client).
CUT_SHORT_REASONS: tuple[str, ...] = ("empty", "length", "no_end")
#: The ``finish_reason`` mix of a level (``n_finish_<reason>``): the two that matter, then anything else, and none.
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "other", "none")
#: Record columns of LLM replies: a run whose records hold a value in one of them gets the LLM figures.
LLM_COLUMNS: tuple[str, ...] = (
    "ttft_ms",
    "itl_mean_ms",
    "itl_max_ms",
    "tpot_ms",
    "output_tokens",
    "finish_reason",
    "reply",
)
_CUT_SHORT_RE = r"^cut short \((?P<reason>[a-z_]+)\)"
LATENCY_PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
#: An open-model arrival sent more than this many milliseconds after it was due is late.
LATE_MS = 10.0
# Per-class recall columns are added to the level table up to this many classes.
MAX_CLASS_COLUMNS = 50


def _nan_dict(keys: list[str]) -> dict[str, float]:
    return dict.fromkeys(keys, float("nan"))


def sorted_classes(values: Any) -> list[str]:
    """Class keys in natural order: numerically when they are all numbers; ``NO_ANSWER`` last.

    Examples
    --------
    >>> sorted_classes(["10", "2", "<no answer>", "1"])
    ['1', '2', '10', '<no answer>']
    >>> sorted_classes(["dog", "cat"])
    ['cat', 'dog']
    """
    # distinct values first: a run has millions of rows but only a handful of classes
    array = (
        values.to_numpy(dtype=object) if isinstance(values, pd.Series | pd.Index) else np.asarray(values, dtype=object)
    )
    unique = sorted({str(v) for v in pd.unique(array.ravel()) if v is not None and v == v})
    last = [NO_ANSWER] if NO_ANSWER in unique else []
    unique = [v for v in unique if v != NO_ANSWER]
    try:
        return sorted(unique, key=float) + last
    except ValueError:
        return unique + last


def classification_metrics(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, sample_weight: npt.ArrayLike | None = None
) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro/weighted precision, recall and F1 (scikit-learn).

    Classes never predicted get precision 0 (scikit-learn's ``zero_division=0``).
    A response without an answer (:data:`~loadgrade.analysis.join.NO_ANSWER`) is wrong:
    it misses its true class, but is not a class of its own in the macro and
    weighted averages.

    Parameters
    ----------
    y_true, y_pred : array-like
        Class labels, one pair per response.
    sample_weight : array-like or None
        How many responses each pair stands for. Every metric here depends
        only on the confusion matrix, so the distinct (true, predicted) pairs
        with their counts give the same figures as the rows themselves, and
        scikit-learn then sorts a hundred pairs instead of millions of rows.

    Examples
    --------
    >>> m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    >>> m["accuracy"], m["balanced_accuracy"], round(m["f1_macro"], 4)
    (0.75, 0.75, 0.7333)
    >>> classification_metrics(["a", "a", "b"], ["a", "b", "b"], sample_weight=[1, 1, 2]) == m
    True
    >>> classification_metrics(["a", "b"], ["a", "<no answer>"])["recall_macro"]
    0.5
    """
    keys = [
        "accuracy",
        "balanced_accuracy",
        *(f"{m}_{avg}" for avg in ("macro", "weighted") for m in ("precision", "recall", "f1")),
    ]
    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    if len(yt) == 0:
        return _nan_dict(keys)
    weight = None if sample_weight is None else np.asarray(sample_weight)
    out = {"accuracy": float(accuracy_score(yt, yp, sample_weight=weight))}
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" is expected under load (a wrong class appears).
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        # A level where every answer is one class is a legitimate (if grim) result.
        warnings.filterwarnings("ignore", message="A single label was found")
        out["balanced_accuracy"] = float(balanced_accuracy_score(yt, yp, sample_weight=weight))
    # every class seen on either side, as scikit-learn would take them, except "no answer"
    labels = [c for c in pd.unique(np.concatenate([yt, yp])) if c != NO_ANSWER]
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            yt, yp, labels=labels, average=average, zero_division=0.0, sample_weight=weight
        )
        out[f"precision_{average}"] = float(precision)
        out[f"recall_{average}"] = float(recall)
        out[f"f1_{average}"] = float(f1)
    return out


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """MAE, RMSE and R² (scikit-learn); R² is NaN with fewer than two samples.

    A NaN prediction is a response without an answer: it is left out (counted
    as ``n_no_answer`` by :func:`level_table`), since no error can be measured.

    Examples
    --------
    >>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    {'mae': 0.3333333333333333, 'rmse': 0.5773502691896257, 'r2': 0.5}
    >>> regression_metrics([1.0, 2.0, 3.0, 9.0], [1.0, 2.0, 4.0, float("nan")])["mae"]
    0.3333333333333333
    """
    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    answered = ~np.isnan(yp)
    yt, yp = yt[answered], yp[answered]
    if len(yt) == 0:
        return _nan_dict(["mae", "rmse", "r2"])
    r2 = float(r2_score(yt, yp)) if len(yt) >= 2 and np.ptp(yt) > 0 else float("nan")
    return {"mae": float(mean_absolute_error(yt, yp)), "rmse": float(root_mean_squared_error(yt, yp)), "r2": r2}


def text_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """Exact match and normalised match (case, punctuation and spacing ignored).

    No answer (:data:`~loadgrade.analysis.join.NO_ANSWER`) matches nothing, whatever the label says.

    Examples
    --------
    >>> text_metrics(["The cat.", "a dog", "no answer"], ["the cat", "a dog", "<no answer>"])
    {'exact_match': 0.3333333333333333, 'normalised_match': 0.6666666666666666}
    """
    yt = [str(v) for v in np.asarray(y_true, dtype=object)]
    yp = [str(v) for v in np.asarray(y_pred, dtype=object)]
    if not yt:
        return _nan_dict(["exact_match", "normalised_match"])
    # "no answer" becomes a text no label can be, after normalisation too
    unmatched = "\x00"
    lenient_pred = [unmatched if p == NO_ANSWER else normalise_text(p) for p in yp]
    return {
        "exact_match": float(accuracy_score(yt, [unmatched if p == NO_ANSWER else p for p in yp])),
        "normalised_match": float(accuracy_score([normalise_text(t) for t in yt], lenient_pred)),
    }


def latency_percentiles(
    latency_ms: npt.ArrayLike, *, percentiles: tuple[int, ...] = LATENCY_PERCENTILES, name: str = "p{q}_ms"
) -> dict[str, float]:
    """Exact latency percentiles (numpy's linear interpolation) and the maximum.

    Parameters
    ----------
    latency_ms : array-like
        Latencies; NaN values are left out.
    percentiles : tuple of int
        Which percentiles.
    name : str
        Key of each figure, ``{q}`` the percentile (``"max"`` for the maximum).

    Examples
    --------
    >>> latency_percentiles([10.0, 20.0, 30.0, 40.0, 50.0])["p50_ms"]
    30.0
    >>> latency_percentiles([10.0, 20.0, 30.0], percentiles=(50,), name="lag_p{q}_ms")
    {'lag_p50_ms': 20.0, 'lag_max_ms': 30.0}
    """
    values = np.asarray(latency_ms, dtype=float)
    values = values[~np.isnan(values)]
    max_key = name.replace("p{q}", "max")
    keys = [name.format(q=q) for q in percentiles] + [max_key]
    if len(values) == 0:
        return _nan_dict(keys)
    qs = np.percentile(values, percentiles)
    return {
        **{name.format(q=q): float(v) for q, v in zip(percentiles, qs, strict=True)},
        max_key: float(values.max()),
    }


def failure_class(error_kind: npt.ArrayLike, status_code: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """The class of each failed request (see :data:`FAILURE_CLASSES`); ``""`` for a success, else its kind.

    Only HTTP errors are split by status: shedding (429, 503) is the server
    refusing load, a 3xx or other 4xx is the client (the scenario) asking
    wrongly, and no amount of load explains it; every other HTTP error is the
    server's. Any other kind (timeout, connection, decode, extract, or a kind a
    later recorder adds) is its own class.

    Examples
    --------
    >>> failure_class(["http", "http", "http", "http", "timeout", ""], [429, 503, 404, 500, 0, 200]).tolist()
    ['shed', 'shed', 'client_error', 'server_error', 'timeout', '']
    """
    kinds = np.asarray(error_kind, dtype=object).astype(str)
    status = np.asarray(status_code, dtype=float)
    http = kinds == "http"
    shed = http & np.isin(status, SHED_STATUS)
    client = http & ~shed & (status >= 300) & (status < 500)
    out = kinds.astype(object)
    out[http] = "server_error"
    out[client] = "client_error"
    out[shed] = "shed"
    return out


def _failure_labels(
    kind_codes: npt.NDArray[np.int64],
    kind_names: npt.NDArray[np.object_],
    rows: npt.NDArray[np.int64],
    status: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.object_]]:
    """Each failed row's kind as the headline names it (``"http 503"``, ``"timeout"``): codes and their names.

    ``rows`` are the failed rows and ``status`` their HTTP status. Codes are -1 for rows that did not fail.
    Only the few distinct (kind, status) pairs are turned into text.
    """
    combined = kind_codes[rows].astype(np.int64) * 1000 + np.clip(np.nan_to_num(status).astype(np.int64), 0, 999)
    codes = np.full(len(kind_codes), -1, dtype=np.int32)
    failed_codes, uniques = pd.factorize(combined)
    codes[rows] = failed_codes
    names = np.empty(len(uniques), dtype=object)
    for i, value in enumerate(np.asarray(uniques, dtype=np.int64)):
        kind, code = str(kind_names[value // 1000]), int(value % 1000)
        names[i] = f"{kind} {code}" if kind == "http" and code else (kind or "unknown")
    return codes, names


def _describe_failures(counts: npt.NDArray[np.int64], names: npt.NDArray[np.object_]) -> str:
    """``"http 503: 850; timeout: 12"``: the kinds of a level's failures, the most frequent first."""
    present = [(int(c), str(n)) for c, n in zip(counts, names, strict=True) if c > 0 and n]
    present.sort(key=lambda item: (-item[0], item[1]))
    return "; ".join(f"{name}: {count}" for count, name in present)


def _interval(
    name: str, k: npt.NDArray[np.int64], total: npt.NDArray[np.int64], *, confidence: float
) -> dict[str, float]:
    """Accuracy ``name`` with its sample-level Wilson interval from per-sample counts (``k_i`` of ``total_i``)."""
    n = int(total.sum())
    low, high, n_effective = sample_wilson_interval(k, total, confidence=confidence)
    return {
        name: int(k.sum()) / n if n else float("nan"),
        f"{name}_low": low,
        f"{name}_high": high,
        f"{name}_n_eff": n_effective,
    }


def _median(values: npt.NDArray[np.float64]) -> float:
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if len(finite) else float("nan")


class LabelPairs:
    """Each row's (true, predicted) class pair as one integer, to count pairs per level without sorting strings.

    Per-level figures need only the confusion counts: :meth:`counts` turns the
    rows of a level into its distinct pairs and how often each occurs, which
    scikit-learn takes as ``sample_weight``. ``None`` (no label, no
    prediction) is kept as a value, so scikit-learn sees exactly what the rows
    hold.

    Examples
    --------
    >>> pairs = LabelPairs(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    >>> y_true, y_pred, weight = pairs.counts(np.array([True, True, True, True]))
    >>> list(zip(y_true, y_pred, weight.tolist()))
    [('a', 'a', 1), ('a', 'b', 1), ('b', 'b', 2)]
    """

    # Above this many possible pairs, count with a sort rather than a dense array.
    _DENSE_MAX = 1 << 22

    def __init__(self, y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> None:
        true_codes, true_values = self._factorize(y_true)
        pred_codes, pred_values = self._factorize(y_pred)
        self._n_pred = len(pred_values)
        self._true_values = true_values
        self._pred_values = pred_values
        self._n_codes = len(true_values) * len(pred_values)
        self.codes = true_codes * np.int64(self._n_pred) + pred_codes
        self.n_true = len(true_values)
        """How many distinct labels (codes ``0 .. n_true - 1``; a missing label is the last)."""

    def true_codes(self) -> npt.NDArray[np.int32]:
        """The code of each row's label (the same code for the same label)."""
        return (self.codes // np.int64(self._n_pred)).astype(np.int32)

    @staticmethod
    def _factorize(values: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
        table = np.empty(len(uniques) + 1, dtype=object)
        table[: len(uniques)] = np.asarray(uniques, dtype=object)
        table[-1] = None  # factorize gives -1 for a missing value: the last slot
        return np.where(codes < 0, len(uniques), codes).astype(np.int64), table

    def counts(
        self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int64]]:
        """Distinct (true, predicted) pairs among ``rows`` (a mask or positions) and their counts."""
        codes = self.codes[rows]
        if self._n_codes <= self._DENSE_MAX:
            dense = np.bincount(codes, minlength=self._n_codes)
            present = np.flatnonzero(dense)
            weight = dense[present]
        else:
            present, weight = np.unique(codes, return_counts=True)
        return (
            self._true_values[present // self._n_pred],
            self._pred_values[present % self._n_pred],
            weight.astype(np.int64),
        )


@dataclass(frozen=True)
class _LLMRecords:
    """The LLM columns of every record as whole arrays, read once: NaN where a reply did not measure a figure."""

    ttft: npt.NDArray[np.float64]
    itl_mean: npt.NDArray[np.float64]
    itl_max: npt.NDArray[np.float64]
    tpot: npt.NDArray[np.float64]
    tokens: npt.NDArray[np.float64]
    finish: npt.NDArray[np.int64]
    """Each record's ``finish_reason`` as a position in :data:`FINISH_REASONS`."""


def _float_column(joined: pd.DataFrame, name: str) -> npt.NDArray[np.float64]:
    if name not in joined.columns:
        return np.full(len(joined), np.nan)
    values = pd.to_numeric(joined[name], errors="coerce")
    return np.asarray(values.to_numpy(dtype=float, na_value=np.nan), dtype=float)


def _llm_records(joined: pd.DataFrame) -> _LLMRecords | None:
    """The LLM columns when the records hold a value in one of them; None for a run of another protocol.

    The recorder writes the columns for every run (empty but for LLM replies), so their presence alone says
    nothing: a value does.
    """
    if not any(c in joined.columns for c in LLM_COLUMNS):
        return None
    numbers = {name: _float_column(joined, name) for name in ("ttft_ms", "itl_mean_ms", "itl_max_ms", "tpot_ms")}
    numbers["output_tokens"] = _float_column(joined, "output_tokens")
    finish = np.full(len(joined), FINISH_REASONS.index("none"), dtype=np.int64)
    has_finish = False
    if "finish_reason" in joined.columns:
        # a handful of distinct reasons among millions of rows: only those are turned into text
        codes, uniques = pd.factorize(joined["finish_reason"])
        names = [str(u) for u in uniques]
        table = np.array(
            [FINISH_REASONS.index(n) if n in ("stop", "length") else 3 if not n else 2 for n in names] + [3],
            dtype=np.int64,
        )
        finish = table[np.where(codes < 0, len(names), codes)]
        has_finish = any(names)
    measured = has_finish or any(bool(np.isfinite(v).any()) for v in numbers.values())
    if not measured and "reply" in joined.columns:
        measured = bool(joined["reply"].fillna("").astype(str).str.len().gt(0).any())
    if not measured:
        return None
    return _LLMRecords(
        ttft=numbers["ttft_ms"],
        itl_mean=numbers["itl_mean_ms"],
        itl_max=numbers["itl_max_ms"],
        tpot=numbers["tpot_ms"],
        tokens=numbers["output_tokens"],
        finish=finish,
    )


def _cut_short_reasons(joined: pd.DataFrame, cut: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Each cut-short record's reason as a position in :data:`CUT_SHORT_REASONS`; -1 elsewhere, or unparsed."""
    reasons = np.full(len(joined), -1, dtype=np.int64)
    rows = np.flatnonzero(cut)
    if not len(rows) or "error" not in joined.columns:
        return reasons
    found = joined["error"].iloc[rows].fillna("").astype(str).str.extract(_CUT_SHORT_RE)["reason"]
    reasons[rows] = pd.Index(CUT_SHORT_REASONS).get_indexer(pd.Index(found.fillna("")))
    return reasons


def _within_slo(
    latency_ms: npt.NDArray[np.float64],
    llm: _LLMRecords | None,
    *,
    latency: float | None,
    ttft: float | None,
    tpot: float | None,
) -> npt.NDArray[np.bool_]:
    """Which records meet every limit given: E2E latency, and for LLM replies TTFT and TPOT.

    A reply without a TTFT (not streamed) got its first token with the whole reply, so its E2E latency stands in;
    one without a TPOT (fewer than two tokens, or not streamed) has no pace to miss.
    """
    within = np.ones(len(latency_ms), dtype=bool)
    if latency is not None:
        within &= latency_ms <= latency
    if llm is not None and ttft is not None:
        within &= np.where(np.isnan(llm.ttft), latency_ms, llm.ttft) <= ttft
    if llm is not None and tpot is not None:
        within &= np.isnan(llm.tpot) | (llm.tpot <= tpot)
    return within


def _llm_figures(
    llm: _LLMRecords,
    positions: npt.NDArray[np.int64],
    ok: npt.NDArray[np.bool_],
    good: npt.NDArray[np.bool_],
    duration: float,
) -> dict[str, float]:
    """The LLM figures of one level (``positions``; ``ok`` and ``good`` are masks over them): see level_table."""
    answered = positions[ok]
    figures = latency_percentiles(llm.ttft[answered], name="p{q}_ttft_ms")
    figures.update(latency_percentiles(llm.tpot[answered], name="p{q}_tpot_ms"))
    # a reply records its mean gap and its longest: percentiles of the means, and the longest gap of all
    itl = latency_percentiles(llm.itl_mean[answered], name="p{q}_itl_ms")
    worst = latency_percentiles(llm.itl_max[answered], percentiles=(99,), name="p{q}_itl_max_ms")
    itl["p99_itl_max_ms"] = worst["p99_itl_max_ms"]
    itl["max_itl_ms"] = worst["max_itl_max_ms"]  # not the largest mean: the longest gap is what a reader stalls on
    figures.update(itl)
    tokens = llm.tokens[answered]
    tokens = tokens[~np.isnan(tokens)]
    total = float(tokens.sum())
    figures["n_output_tokens"] = int(total)
    figures["output_tokens_per_s"] = total / duration
    figures["mean_output_tokens"] = float(tokens.mean()) if len(tokens) else float("nan")
    figures["p50_output_tokens"] = float(np.percentile(tokens, 50)) if len(tokens) else float("nan")
    figures["token_goodput_tps"] = float(np.nansum(llm.tokens[positions[good]])) / duration
    finish = np.bincount(llm.finish[positions], minlength=len(FINISH_REASONS))
    figures.update({f"n_finish_{name}": int(count) for name, count in zip(FINISH_REASONS, finish, strict=True)})
    return figures


def _check_joined(joined: pd.DataFrame, bounds: pd.DataFrame, task: str) -> None:
    needed = ["level", "t_sent", "latency_ms", "ok", "error_kind", "users_active", "has_truth", "correct"]
    missing = [c for c in needed if c not in joined.columns]
    if missing:
        raise AnalysisInputError(
            f"joined records have no column {', '.join(repr(c) for c in missing)} "
            "(use join_truth and assign_levels first); "
            f"columns are: {', '.join(map(str, joined.columns))}"
        )
    missing_b = [c for c in ("level", "t_start", "t_end", "duration_s") if c not in bounds.columns]
    if missing_b:
        raise AnalysisInputError(f"level bounds have no column {', '.join(repr(c) for c in missing_b)}")
    if task not in TASKS:
        raise AnalysisInputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def level_table(
    joined: pd.DataFrame,
    bounds: pd.DataFrame,
    *,
    task: str,
    slo_latency_ms: float | None = None,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    confidence: float = 0.95,
    n_dataset: int | None = None,
    graded: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per load level with every figure the report shows.

    Parameters
    ----------
    joined : pandas.DataFrame
        Records from :func:`analysis.join_truth` with a ``level`` column from
        :func:`analysis.assign_levels`.
    bounds : pandas.DataFrame
        Level spans from :func:`analysis.assign_levels`.
    task : {"classification", "regression", "text"}
    slo_latency_ms : float or None
        End-to-end latency objective for quality goodput; ``None`` counts
        every correct answer.
    slo_ttft_ms, slo_tpot_ms : float or None
        Time-to-first-token and time-per-output-token objectives (ms) that
        goodput requires too, in a run with LLM figures (ignored otherwise).
        A reply without a TTFT (not streamed) is judged on its E2E latency; one
        without a TPOT (fewer than two tokens) meets the TPOT objective.
    confidence : float, default 0.95
        Level of the Wilson intervals.
    n_dataset : int or None
        Labelled samples in the dataset (the truth rows), for ``coverage``;
        default: the distinct labelled samples the whole run sent.
    graded : bool, default False
        The scenario's ``grading`` decided ``correct`` (:mod:`analysis.grading`): a text task's answers are then
        answer keys, not the reply's words, so ``exact_match`` and ``normalised_match`` (the raw label against
        the reply) would say nothing true and are left out; ``accuracy`` is the graded figure.
    progress : bool, default False
        Show a progress bar over the levels on stderr.

    Returns
    -------
    pandas.DataFrame
        Columns: ``level``, ``t_start``, ``t_end``, ``duration_s``, ``users``
        (offered: median ``target_users`` when recorded, else median
        ``users_active``), ``target_rps`` (open model: the offered arrival
        rate, else NaN), ``load`` and ``load_unit`` (the offered load: the
        rate in "req/s" when the run recorded one, else the users),
        ``users_active``, ``n``, ``n_ok``, ``n_truth``
        (records with a label), ``n_scored`` (successful and labelled),
        ``throughput_rps`` (requests sent per second of the level),
        ``inflight_mean``/``inflight_max`` (exact in-flight concurrency),
        ``n_samples`` (distinct labelled samples sent), ``coverage``
        (``n_samples`` over ``n_dataset``) and ``covered`` (every sample of
        the dataset sent at least once), ``accuracy`` (among successful
        responses) and ``effective_accuracy`` (over every labelled request: a
        failed request is a lost answer, counted as wrong) each with
        ``_low``/``_high`` Wilson bounds taken with the *sample* as the unit
        (:func:`loadgrade.analysis.stats.sample_wilson_interval`: a sample sent ten
        times is not ten independent trials) and ``_n_eff`` (the independent
        trials the level is worth), ``chance_accuracy`` and ``n_classes``
        (classification: the share of the most frequent label among the
        level's labelled requests, or one over the number of classes if
        higher; what a model that always answers one class would score),
        ``n_correct``, ``n_wrong`` (answered but wrong; no answer included),
        ``n_failed`` (every request that failed) split as ``n_shed`` (HTTP
        429/503), ``n_client_error`` (other 3xx/4xx), ``n_server_error``
        (other HTTP errors), ``n_timeout``, ``n_connection``, ``n_decode``,
        ``n_extract``, ``n_cut_short`` (see :data:`FAILURE_CLASSES`; a
        cut-short LLM reply lost its answer: it is not ``ok``, so it is
        neither answered nor scored, but no transport or format failure
        either), ``failures`` (the
        failures as text, most frequent first: ``"http 503: 850; timeout:
        12"``), ``wrong_rate`` (``n_wrong / n``), ``lost_rate`` (wrong or
        failed, over every request: ``(n_wrong + n_failed) / n``; regression:
        failed or without an answer), ``error_rate`` and ``error_rate_<kind>``
        for each error kind and ``error_rate_shed``, ``error_rate_client``,
        ``error_rate_server`` (shares of every request), latency ``p50_ms`` ...
        ``max_ms`` over successful responses, ``goodput_rps`` (correct answers
        per second within every SLO limit given: ``slo_latency_ms``, and in a
        run with LLM figures ``slo_ttft_ms`` and ``slo_tpot_ms``; for
        regression: successful answers within them), ``n_no_answer`` and
        ``no_answer_rate`` (successful, labelled
        responses whose prediction was ``null``: wrong answers; for regression
        left out of MAE/RMSE/R² and of goodput), then task metrics
        (scikit-learn) and ``recall[<class>]``. When the records carry
        ``t_scheduled`` (open model), also the latency from the scheduled time
        (corrected for coordinated omission: the wait for a free user counts)
        ``p50_sched_ms`` ... ``max_sched_ms`` over successful responses, the
        schedule lag ``lag_p50_ms``, ``lag_p99_ms``, ``lag_max_ms`` and the
        late arrivals (lag above ``LATE_MS``) ``n_late`` and ``late_share``,
        over every request sent.

        When a record holds a value in one of :data:`LLM_COLUMNS` (an LLM
        protocol), also, after ``goodput_rps``: ``p50_ttft_ms`` ...
        ``p99_ttft_ms``, ``max_ttft_ms`` (time to first token) and
        ``p50_tpot_ms`` ... ``max_tpot_ms`` (time per output token after the
        first), ``p50_itl_ms`` ... ``p99_itl_ms`` (percentiles of each reply's
        mean inter-token gap), ``p99_itl_max_ms`` (of each reply's longest
        gap) and ``max_itl_ms`` (the longest gap of all), every one in ms over
        successful streamed replies, like the E2E latency ``p50_ms`` ...;
        ``n_output_tokens`` (output tokens of the successful replies),
        ``output_tokens_per_s`` (those tokens per second of the level),
        ``mean_output_tokens`` and ``p50_output_tokens`` (completion length of
        a successful reply, in tokens), ``token_goodput_tps`` (output tokens
        of the good answers counted in ``goodput_rps``, per second: tokens,
        where goodput counts requests) and the ``finish_reason`` mix over
        every request ``n_finish_stop``, ``n_finish_length``,
        ``n_finish_other``, ``n_finish_none`` (none recorded: failed, not an
        LLM reply, or a stream without its end); and after ``n_cut_short``
        the replies cut short by reason (:data:`CUT_SHORT_REASONS`, parsed
        from the error text ``cut short (<reason>): ...``):
        ``n_cut_short_empty``, ``n_cut_short_length``, ``n_cut_short_no_end``.
        Percentiles are numpy's linear interpolation, as for the latency.

    Examples
    --------
    >>> from loadgrade.analysis import assign_levels, join_truth
    >>> records = pd.DataFrame({"sample_id": ["a", "b", "a", "b"], "ok": [True, True, True, False],
    ...     "prediction": ["1", "2", "1", ""], "error_kind": ["", "", "", "timeout"],
    ...     "t_sent": [0.0, 1.0, 10.0, 11.0], "latency_ms": [50.0, 50.0, 80.0, 1000.0], "users_active": [1, 1, 4, 4]})
    >>> joined, _ = join_truth(records, pd.DataFrame({"sample_id": ["a", "b"], "label": [1, 2]}))
    >>> joined["level"], bounds = assign_levels(joined, window_s=10)
    >>> table = level_table(joined, bounds, task="classification")
    >>> table[["level", "users", "n", "accuracy", "effective_accuracy", "error_rate_timeout"]].to_dict("records")
    [{'level': 0, 'users': 1.0, 'n': 2, 'accuracy': 1.0, 'effective_accuracy': 1.0, 'error_rate_timeout': 0.0}, \
{'level': 1, 'users': 4.0, 'n': 2, 'accuracy': 1.0, 'effective_accuracy': 0.5, 'error_rate_timeout': 0.5}]
    >>> table[["level", "n_wrong", "n_failed", "n_timeout", "lost_rate", "failures", "coverage"]].to_dict("records")
    [{'level': 0, 'n_wrong': 0, 'n_failed': 0, 'n_timeout': 0, 'lost_rate': 0.0, 'failures': '', 'coverage': 1.0}, \
{'level': 1, 'n_wrong': 0, 'n_failed': 1, 'n_timeout': 1, 'lost_rate': 0.5, 'failures': 'timeout: 1', \
'coverage': 1.0}]
    """
    _check_joined(joined, bounds, task)
    level = joined["level"].astype("Int64")
    concurrency_mean, concurrency_max = inflight_concurrency(
        joined, bounds["t_start"].to_numpy(dtype=float), bounds["t_end"].to_numpy(dtype=float)
    )
    # Whole columns as arrays once, then per level only positions: a level never copies the frame.
    ok_all = joined["ok"].to_numpy(dtype=bool)
    has_truth_all = joined["has_truth"].to_numpy(dtype=bool)
    correct_all = joined["correct"].fillna(False).to_numpy(dtype=bool)
    latency_all = joined["latency_ms"].to_numpy(dtype=float)
    active_all = joined["users_active"].to_numpy(dtype=float)
    target_all = (
        joined["target_users"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        if "target_users" in joined.columns
        else None
    )
    rate_all = joined["target_rps"].to_numpy(dtype=float) if "target_rps" in joined.columns else None
    open_model = rate_all is not None and bool(np.isfinite(rate_all).any())
    lag_all: npt.NDArray[np.float64] | None = None
    if "t_scheduled" in joined.columns:
        scheduled = joined["t_scheduled"].to_numpy(dtype=float)
        if np.isfinite(scheduled).any():
            lag_all = (joined["t_sent"].to_numpy(dtype=float) - scheduled) * 1000.0
    y_true_all = joined["y_true"].to_numpy()
    y_pred_all = joined["y_pred"].to_numpy()
    if "no_answer" in joined.columns:
        no_answer_all = joined["no_answer"].to_numpy(dtype=bool)
    elif task == "regression":
        no_answer_all = np.isnan(y_pred_all.astype(float))
    else:
        no_answer_all = np.asarray(y_pred_all == NO_ANSWER, dtype=bool)
    kind_codes, kind_index = pd.factorize(joined["error_kind"].astype(str))
    kind_values = np.asarray(kind_index, dtype=object)
    llm = _llm_records(joined)
    within_all = _within_slo(latency_all, llm, latency=slo_latency_ms, ttft=slo_ttft_ms, tpot=slo_tpot_ms)
    cut_code = {str(v): i for i, v in enumerate(kind_values)}.get("cut_short")
    cut_all = ~ok_all & (kind_codes == cut_code) if cut_code is not None else np.zeros(len(joined), dtype=bool)
    reasons_all = _cut_short_reasons(joined, cut_all) if llm is not None or cut_all.any() else None
    # each failed row's class and its text label as small integer codes: a level then needs only bincounts;
    # only the failed rows (a few percent) are ever classified
    failure_names = list(FAILURE_CLASSES)
    row_class = np.full(len(joined), -1, dtype=np.int16)
    failed_positions = np.flatnonzero(~ok_all)
    status = (
        joined["status_code"].to_numpy()[failed_positions].astype(float)
        if "status_code" in joined.columns
        else np.zeros(len(failed_positions))
    )
    if len(failed_positions):
        per_row = failure_class(kind_values[kind_codes[failed_positions]], status)
        per_row[per_row == ""] = "unknown"  # a failure without a kind (not written by loadgrade)
        failure_names += sorted({str(c) for c in pd.unique(per_row)} - set(failure_names))
        row_class[failed_positions] = pd.Index(failure_names).get_indexer(pd.Index(per_row))
    label_codes, label_names = _failure_labels(kind_codes, kind_values, failed_positions, status)
    # a record without a sample id (hand-built frames) is a sample of its own
    if "sample_id" in joined.columns:
        sample_codes = pd.factorize(joined["sample_id"])[0].astype(np.int32)
    else:
        sample_codes = np.arange(len(joined), dtype=np.int32)
    n_sample_codes = int(sample_codes.max()) + 1 if len(sample_codes) else 0
    if n_dataset is None:
        n_dataset = int(np.count_nonzero(np.bincount(sample_codes[has_truth_all], minlength=n_sample_codes)))
    classes = sorted_classes(y_true_all[has_truth_all]) if task == "classification" else []
    class_columns = classes if len(classes) <= MAX_CLASS_COLUMNS else []
    kinds = list(ERROR_KINDS)
    failed_kinds = {str(v) for v in kind_values[np.unique(kind_codes[~ok_all])]}
    extra_kinds = sorted(failed_kinds - set(kinds) - {""})
    code_of_kind = {str(v): i for i, v in enumerate(kind_values)}
    rows: list[dict[str, Any]] = []
    pairs = LabelPairs(y_true_all, y_pred_all) if task == "classification" else None
    # the label of each row as a code, for the chance level: LabelPairs has factorized the labels already
    true_codes_all = pairs.true_codes() if pairs is not None else None
    n_true_values = pairs.n_true if pairs is not None else 0
    positions_by_level = level.groupby(level, sort=True).indices
    empty = np.zeros(0, dtype=np.int64)
    bound_levels = bounds["level"].to_numpy(dtype=np.int64)
    bound_starts = bounds["t_start"].to_numpy(dtype=float)
    bound_ends = bounds["t_end"].to_numpy(dtype=float)
    bound_durations = bounds["duration_s"].to_numpy(dtype=float)
    levels_bar = tqdm(bound_levels, desc="levels", unit="level", disable=not progress, leave=False)
    for position, level_value in enumerate(levels_bar):
        positions = positions_by_level.get(level_value, empty)
        ok = ok_all[positions]
        has_truth = has_truth_all[positions]
        scored = ok & has_truth
        correct = correct_all[positions]
        n, n_ok, n_truth, n_scored = len(positions), int(ok.sum()), int(has_truth.sum()), int(scored.sum())
        duration = float(bound_durations[position])
        active = active_all[positions]
        target = target_all[positions] if target_all is not None else np.zeros(0)
        target = target[~np.isnan(target)]
        if len(target):
            users = float(np.median(target))
        else:
            users = float(np.median(active)) if n else float("nan")
        row: dict[str, Any] = {
            "level": int(level_value),
            "t_start": float(bound_starts[position]),
            "t_end": float(bound_ends[position]),
            "duration_s": duration,
            "users": users,
            "target_rps": _median(rate_all[positions]) if open_model and rate_all is not None else float("nan"),
        }
        row["load"] = row["target_rps"] if open_model else users
        row["load_unit"] = "req/s" if open_model else "users"
        row |= {
            "users_active": float(np.median(active)) if n else float("nan"),
            "n": n,
            "n_ok": n_ok,
            "n_truth": n_truth,
            "n_scored": n_scored,
            "throughput_rps": n / duration,
            "inflight_mean": float(concurrency_mean[position]),
            "inflight_max": float(concurrency_max[position]),
        }
        n_correct = int((correct & scored).sum())
        samples = sample_codes[positions]
        sent = np.bincount(samples[has_truth], minlength=n_sample_codes)
        row["n_samples"] = int(np.count_nonzero(sent))
        row["coverage"] = row["n_samples"] / n_dataset if n_dataset else np.nan
        row["covered"] = bool(n_dataset) and row["n_samples"] >= n_dataset
        if task == "regression":
            for name in ("accuracy", "effective_accuracy"):
                row.update({name: np.nan, f"{name}_low": np.nan, f"{name}_high": np.nan, f"{name}_n_eff": np.nan})
        else:
            # per-sample counts: the intervals take the sample, not the request, as the unit
            right = np.bincount(samples[correct & scored], minlength=n_sample_codes)
            row.update(
                _interval(
                    "accuracy", right, np.bincount(samples[scored], minlength=n_sample_codes), confidence=confidence
                )
            )
            row.update(_interval("effective_accuracy", right, sent, confidence=confidence))
        if true_codes_all is not None:
            label_counts = np.bincount(true_codes_all[positions[has_truth]], minlength=n_true_values)
            n_classes = int(np.count_nonzero(label_counts))
            row["n_classes"] = n_classes
            row["chance_accuracy"] = (
                max(float(label_counts.max()) / n_truth, 1.0 / n_classes) if n_truth and n_classes else np.nan
            )
        else:
            row["n_classes"] = 0
            row["chance_accuracy"] = np.nan
        no_answer = no_answer_all[positions] & scored
        n_failed = n - n_ok
        row["n_correct"] = n_correct
        row["n_wrong"] = n_scored - n_correct if task != "regression" else 0
        row["n_failed"] = n_failed
        by_class = np.bincount(row_class[positions][~ok], minlength=len(failure_names))
        for name, count in zip(failure_names, by_class, strict=True):
            row[f"n_{name}"] = int(count)
        if reasons_all is not None:
            reasons = reasons_all[positions]
            by_reason = np.bincount(reasons[reasons >= 0], minlength=len(CUT_SHORT_REASONS))
            row.update({f"n_cut_short_{r}": int(c) for r, c in zip(CUT_SHORT_REASONS, by_reason, strict=True)})
        row["failures"] = _describe_failures(
            np.bincount(label_codes[positions][~ok], minlength=len(label_names)), label_names
        )
        lost = row["n_wrong"] + n_failed if task != "regression" else n_failed + int(no_answer.sum())
        row["wrong_rate"] = row["n_wrong"] / n if n and task != "regression" else np.nan
        row["lost_rate"] = lost / n if n else np.nan
        row["error_rate"] = n_failed / n if n else np.nan
        failures = np.bincount(kind_codes[positions][~ok], minlength=len(kind_values))
        for kind in kinds + extra_kinds:
            count = failures[code_of_kind[kind]] if kind in code_of_kind else 0
            row[f"error_rate_{kind}"] = float(count / n) if n else np.nan
        for name, column in (("shed", "shed"), ("client_error", "client"), ("server_error", "server")):
            row[f"error_rate_{column}"] = row[f"n_{name}"] / n if n else np.nan
        row["n_no_answer"] = int(no_answer.sum())
        row["no_answer_rate"] = row["n_no_answer"] / n_scored if n_scored else np.nan
        latency = latency_all[positions]
        row.update(latency_percentiles(latency[ok]))
        if lag_all is not None:
            row.update(_schedule_figures(lag_all[positions], latency, ok))
        within = within_all[positions]
        good = (ok & ~no_answer & within) if task == "regression" else (correct & scored & within)
        row["goodput_rps"] = float(good.sum()) / duration
        if llm is not None:
            row.update(_llm_figures(llm, np.asarray(positions, dtype=np.int64), ok, good, duration))
        if pairs is not None:
            y_true, y_pred, weight = pairs.counts(positions[scored])
            row.update(classification_metrics(y_true, y_pred, sample_weight=weight))
            if class_columns:
                recalls = _recalls(y_true, y_pred, class_columns, sample_weight=weight)
                row.update({f"recall[{c}]": r for c, r in zip(class_columns, recalls, strict=True)})
        else:
            y_true = y_true_all[positions[scored]]
            y_pred = y_pred_all[positions[scored]]
            if task == "regression":
                row.update(regression_metrics(y_true, y_pred))
            elif not graded:
                row.update(text_metrics(y_true, y_pred))
        rows.append(row)
    return pd.DataFrame(rows)


def _schedule_figures(
    lag_ms: npt.NDArray[np.float64], latency_ms: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]
) -> dict[str, float]:
    """Open-model figures of one level: latency from the scheduled time, schedule lag, late arrivals.

    Latency from the send alone hides the time an arrival waited for a free
    user (coordinated omission); from the scheduled time it is what a client
    arriving on schedule would have seen, as wrk2 and MLPerf LoadGen report it.
    """
    scheduled = ~np.isnan(lag_ms)
    figures = latency_percentiles((lag_ms + latency_ms)[ok & scheduled], name="p{q}_sched_ms")
    figures.update(latency_percentiles(lag_ms[scheduled], percentiles=(50, 99), name="lag_p{q}_ms"))
    n_late = int((lag_ms[scheduled] > LATE_MS).sum())
    n_scheduled = int(scheduled.sum())
    figures["n_late"] = n_late
    figures["late_share"] = n_late / n_scheduled if n_scheduled else float("nan")
    return figures


def _recalls(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: list[str], *, sample_weight: npt.ArrayLike | None = None
) -> list[float]:
    if len(np.asarray(y_true)) == 0:
        return [float("nan")] * len(classes)
    values = recall_score(
        y_true, y_pred, labels=classes, average=None, zero_division=np.nan, sample_weight=sample_weight
    )
    return [float(v) for v in values]


def per_class_recall(joined: pd.DataFrame) -> pd.DataFrame:
    """Recall of each class at each level (rows: level, columns: class), among successful responses.

    NaN where a class was not sent at that level.

    Examples
    --------
    >>> joined = pd.DataFrame({"level": [0, 0, 1, 1], "ok": [True] * 4, "has_truth": [True] * 4,
    ...                        "y_true": ["a", "b", "a", "b"], "y_pred": ["a", "b", "a", "a"]})
    >>> per_class_recall(joined).to_dict("index")
    {0: {'a': 1.0, 'b': 1.0}, 1: {'a': 1.0, 'b': 0.0}}
    """
    missing = [c for c in ("level", "ok", "has_truth", "y_true", "y_pred") if c not in joined.columns]
    if missing:
        raise AnalysisInputError(f"joined records have no column {', '.join(repr(c) for c in missing)}")
    scored = joined["ok"].to_numpy(dtype=bool) & joined["has_truth"].to_numpy(dtype=bool)
    pairs = LabelPairs(joined["y_true"].to_numpy(), joined["y_pred"].to_numpy())
    scored_positions = np.flatnonzero(scored)
    classes = sorted_classes(joined["y_true"].to_numpy()[scored_positions])
    level = joined["level"].iloc[scored_positions]
    rows = {}
    for value, positions in level.groupby(level, sort=True).indices.items():
        y_true, y_pred, weight = pairs.counts(scored_positions[positions])
        rows[value] = _recalls(y_true, y_pred, classes, sample_weight=weight)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=pd.Index(classes, name="class"))
    table.index.name = "level"
    return table
