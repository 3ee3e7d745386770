"""Join records to ground truth and decide, per response, whether it is right.

Predictions arrive as JSON text. Labels arrive as whatever the dataset file
holds (``3``, ``3.0`` or ``"3"``). Both are turned into one canonical form per
task so that ``3``, ``3.0`` and ``"3"`` are the same class, and a comparison
that cannot be meaningful (numbers against words) is an error, not a silent 0 %.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.grading import GradingSpec, answer_text, grade_codes, graded_task, grading_spec

__all__ = [
    "NO_ANSWER",
    "TASKS",
    "JoinSummary",
    "infer_task",
    "join_truth",
    "label_key",
    "normalise_text",
    "prediction_key",
]

Task = Literal["classification", "regression", "text"]
TASKS: tuple[str, ...] = ("classification", "regression", "text")

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_EXAMPLES = 5

#: ``y_pred`` of a successful response that holds no answer (JSON ``null``, e.g. an LLM reply in which the
#: protocol's answer pattern found nothing). It is a wrong answer, never a class of its own: it matches no label,
#: and the macro averages leave it out of their classes. Regression keeps NaN instead.
NO_ANSWER = "<no answer>"


@dataclass(frozen=True)
class JoinSummary:
    """What the join found; reported in ``summary.json``."""

    task: str
    """The task used to compare predictions with labels."""
    task_inferred: bool
    """True when the task was inferred from the labels rather than given."""
    n_records: int
    """Rows in ``records.csv``."""
    n_with_truth: int
    """Records whose ``sample_id`` has a label."""
    n_without_truth: int
    """Records whose ``sample_id`` has no label (excluded from quality metrics)."""
    without_truth_examples: list[str]
    """A few such sample ids."""
    n_truth: int
    """Labelled samples in the ground truth."""
    n_truth_never_sent: int
    """Labelled samples never requested during the run."""
    n_no_answer: int = 0
    """Successful, labelled responses whose prediction is ``null`` (no answer): wrong for classification and text;
    left out of MAE/RMSE/R² for regression."""
    assumptions: list[str] = field(default_factory=list)
    """Interpretations made while comparing (e.g. probability vectors scored by argmax)."""
    grading: str | None = None
    """The scenario's grading mode (``exact``, ``aliases``, ``numeric``, ``choice``, ``regex``) when it decided
    ``correct``; None when the task's own comparison did."""


def _check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise AnalysisInputError(f"task must be one of {', '.join(TASKS)} (or None to infer it), got {task!r}")


def infer_task(labels: pd.Series) -> str:
    """Guess the task from the labels alone.

    Floats with fractional values and many distinct values are a regression
    target; text with spaces or long strings is free text; anything else
    (integers, short tokens) is a class label.

    Parameters
    ----------
    labels : pandas.Series
        Ground-truth labels.

    Returns
    -------
    {"classification", "regression", "text"}

    Examples
    --------
    >>> infer_task(pd.Series([0, 1, 2, 1]))
    'classification'
    >>> infer_task(pd.Series(["cat", "dog"]))
    'classification'
    >>> infer_task(pd.Series([i * 0.37 for i in range(100)]))
    'regression'
    >>> infer_task(pd.Series(["the cat sat", "a dog"]))
    'text'
    """
    values = labels.dropna()
    if values.empty:
        return "classification"
    if pd.api.types.is_bool_dtype(values):
        return "classification"
    if pd.api.types.is_numeric_dtype(values):
        floats = values.astype("float64")
        fractional = bool((floats % 1 != 0).any())
        return "regression" if fractional and floats.nunique() > 20 else "classification"
    text = values.astype(str)
    numeric = text.str.strip().str.fullmatch(_FLOAT_RE.pattern)
    if bool(numeric.all()):
        return infer_task(pd.to_numeric(text))
    if bool(text.str.contains(r"\s", regex=True).any()) or float(text.str.len().median()) > 30:
        return "text"
    return "classification"


def normalise_text(text: str) -> str:
    """Normalise free text for a lenient match: Unicode NFKC, case-folded,
    punctuation removed, whitespace collapsed.

    Examples
    --------
    >>> normalise_text("  The  Cat, sat! ")
    'the cat sat'
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in folded)
    return " ".join(kept.split())


def _decode(prediction: str) -> Any:
    if prediction == "":
        return None
    try:
        return json.loads(prediction)
    except ValueError:
        # Not JSON: compare the raw text rather than discard the answer.
        return prediction


def _number_key(value: float) -> str:
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(float(value))


class _ClassKeys:
    """Canonical class keys: ``3``, ``3.0``, ``"3"`` and ``" 3 "`` all become ``"3"``."""

    def __init__(self) -> None:
        self.argmax_used = False

    def __call__(self, value: Any, *, side: str) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, bool | np.bool_):
            return str(bool(value))
        if isinstance(value, Integral):
            return str(int(value))
        if isinstance(value, Real):
            return _number_key(float(value))
        if isinstance(value, str):
            stripped = value.strip()
            if _INT_RE.match(stripped):
                return str(int(stripped))
            if _FLOAT_RE.match(stripped):
                return _number_key(float(stripped))
            return stripped
        if isinstance(value, list) and side == "prediction":
            if len(value) == 1:
                return self(value[0], side=side)
            if value and all(isinstance(v, Real) and not isinstance(v, bool) for v in value):
                self.argmax_used = True
                return str(int(np.argmax(value)))
        raise AnalysisInputError(
            f"{side} {json.dumps(value) if side == 'prediction' else repr(value)} cannot be compared "
            "as a class label; expected a number or a string"
        )


def _is_number_key(keys: pd.Series) -> pd.Series:
    return keys.str.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?inf|nan")


def _check_comparable(y_true: pd.Series, y_pred: pd.Series) -> None:
    """Numbers against words can never match: say so instead of reporting 0 %."""
    # distinct keys in order of appearance: the same verdict and example as over every row, at a fraction of the cost
    truth = pd.Series(pd.unique(y_true.dropna().to_numpy()), dtype=object)
    pred = pd.Series(pd.unique(y_pred.dropna().to_numpy()), dtype=object)
    if truth.empty or pred.empty:
        return
    truth_numeric = bool(_is_number_key(truth).all())
    pred_numeric = bool(_is_number_key(pred).all())
    truth_words = not bool(_is_number_key(truth).any())
    pred_words = not bool(_is_number_key(pred).any())
    if (truth_numeric and pred_words) or (truth_words and pred_numeric):
        raise AnalysisInputError(
            f"predictions are {'numbers' if pred_numeric else 'text'} (e.g. {pred.iloc[0]!r}) but labels are "
            f"{'numbers' if truth_numeric else 'text'} (e.g. {truth.iloc[0]!r}); they cannot be compared. "
            "Check the label column and the protocol's prediction field"
        )


def _is_null(value: Any) -> bool:
    """JSON ``null`` (or ``[null]``): the endpoint answered, but with no answer."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value is None


def _to_float(value: Any, *, side: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool):
        raise AnalysisInputError(f"{side} {value!r} is not a number; a regression task needs numeric values")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnalysisInputError(f"{side} {value!r} is not a number; a regression task needs numeric values") from None


def _check_truth(truth: pd.DataFrame) -> None:
    if not isinstance(truth, pd.DataFrame):
        raise AnalysisInputError(f"truth must be a DataFrame, got {type(truth).__name__}")
    missing = [c for c in ("sample_id", "label") if c not in truth.columns]
    if missing:
        raise AnalysisInputError(
            f"ground truth has no column {', '.join(repr(c) for c in missing)}; "
            f"columns are: {', '.join(map(str, truth.columns))}"
        )
    duplicated = truth["sample_id"][truth["sample_id"].duplicated()]
    if not duplicated.empty:
        examples = ", ".join(repr(s) for s in pd.unique(duplicated)[:_EXAMPLES])
        raise AnalysisInputError(
            f"ground truth has {duplicated.nunique()} duplicated sample ids (e.g. {examples}); "
            "each sample needs exactly one label"
        )


def _check_records(records: pd.DataFrame) -> None:
    if not isinstance(records, pd.DataFrame):
        raise AnalysisInputError(f"records must be a DataFrame, got {type(records).__name__}")
    missing = [c for c in ("sample_id", "ok", "prediction") if c not in records.columns]
    if missing:
        raise AnalysisInputError(
            f"records have no column {', '.join(repr(c) for c in missing)}; "
            f"columns are: {', '.join(map(str, records.columns))}"
        )


def _gather(values: npt.NDArray[Any], index: npt.NDArray[np.intp], where: npt.NDArray[np.bool_]) -> npt.NDArray[Any]:
    """``values[index]`` where ``where`` holds, else None (NaN for floats).

    One gather from a padded table: a masked assignment of Python objects is over ten times slower on millions
    of rows.

    >>> _gather(np.array(["a", "b"], dtype=object), np.array([1, 0, 0]), np.array([True, False, True])).tolist()
    ['b', None, 'a']
    """
    padded = np.empty(len(values) + 1, dtype=float if values.dtype.kind == "f" else object)
    padded[:-1] = values
    padded[-1] = np.nan if values.dtype.kind == "f" else None
    return padded[np.where(where, index, len(values))]


def join_truth(
    records: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    task: str | None = None,
    grading: GradingSpec | Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, JoinSummary]:
    """Attach labels to records (many-to-one on ``sample_id``) and score them.

    Parameters
    ----------
    records : pandas.DataFrame
        From :func:`analysis.read_records`.
    truth : pandas.DataFrame
        Columns ``sample_id`` and ``label``, one row per sample.
    task : {"classification", "regression", "text"} or None
        How to compare; ``None`` infers it from the labels.
    grading : GradingSpec, mapping or None
        The scenario's ``grading:`` section. When given, it decides
        ``correct`` (see :mod:`analysis.grading`): ``y_pred`` is then each
        answer's key (normalised text, the number or the letter; no answer is
        :data:`NO_ANSWER`), ``y_true`` the label's, and the task (for the
        metrics) follows :func:`analysis.grading.graded_task`.

    Returns
    -------
    joined : pandas.DataFrame
        The records plus ``label`` (as stored), ``has_truth``, ``y_true`` and
        ``y_pred`` (canonical: class keys, floats or text), ``correct``
        (nullable boolean: errors are ``False``; ``NA`` without truth and for
        regression), ``no_answer`` (successful and labelled, but the
        prediction was ``null``; its ``y_pred`` is :data:`NO_ANSWER`, NaN for
        regression) and, for text, ``correct_normalised``.
    summary : JoinSummary
        Counts of records without truth and truth ids never sent.

    Raises
    ------
    AnalysisInputError
        Duplicate truth ids (naming examples), or labels that cannot be
        compared with the predictions.

    Examples
    --------
    >>> records = pd.DataFrame({"sample_id": ["a", "b", "c", "z"], "ok": [True, True, False, True],
    ...                         "prediction": ["3", '"1"', "", "2"]})
    >>> truth = pd.DataFrame({"sample_id": ["a", "b", "c", "d"], "label": [3.0, 2, 1, 0]})
    >>> joined, summary = join_truth(records, truth)
    >>> joined["correct"].tolist()
    [True, False, False, <NA>]
    >>> summary.n_without_truth, summary.n_truth_never_sent
    (1, 1)

    A language model's answers graded by the last number they hold:

    >>> records = pd.DataFrame({"sample_id": ["a", "b", "c"], "ok": True,
    ...                         "prediction": ['"It is 42."', '"about 7"', '"no idea"']})
    >>> truth = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": ["42", "8", "1"]})
    >>> joined, summary = join_truth(records, truth, grading={"mode": "numeric"})
    >>> joined["correct"].tolist(), joined["y_pred"].tolist(), summary.task, summary.n_no_answer
    ([True, False, False], ['42', '7', '<no answer>'], 'text', 1)
    """
    _check_records(records)
    _check_truth(truth)
    _check_task(task)
    spec = None if grading is None else grading_spec(grading)
    assumptions: list[str] = []
    if spec is None:
        inferred = task is None
        resolved: str = infer_task(truth["label"]) if task is None else task
    else:
        inferred = task is None and spec.mode == "exact"  # the other modes set the task themselves
        resolved = graded_task(spec, task=task, labels=truth["label"])
        assumptions.append(spec.describe())

    truth_ids = truth["sample_id"].astype(str)
    label_by_id = pd.Series(truth["label"].to_numpy(dtype=object), index=pd.Index(truth_ids))
    # look up each distinct id once, not each row: a run sends the same few thousand samples millions of times
    id_codes, sent_ids = pd.factorize(records["sample_id"].astype(str))
    positions = label_by_id.index.get_indexer(sent_ids)[id_codes]
    has_truth = positions >= 0
    labels_obj = label_by_id.to_numpy()
    label_col = _gather(labels_obj, positions, has_truth)

    ok = records["ok"].to_numpy(dtype=bool)
    codes, uniques = pd.factorize(records["prediction"].fillna("").astype(str))
    decoded = [_decode(u) for u in uniques]
    scorable = ok & has_truth

    # Copy-on-write: adding columns to a shallow copy never touches the caller's frame, and costs no memory
    joined = records.copy(deep=False)
    joined["label"] = label_col
    joined["has_truth"] = has_truth
    if spec is not None:
        # each distinct answer reduced once, each label used parsed once, each (answer, label) pair judged once
        graded = grade_codes(
            [answer_text(u) for u in uniques],
            labels_obj,
            codes[has_truth],
            positions[has_truth],
            spec,
            label_names=truth_ids.to_numpy(dtype=object),
        )
        null_codes = np.array([k is None for k in graded.answer_keys], dtype=bool)
        answer_keys = np.where(null_codes, NO_ANSWER, graded.answer_keys).astype(object)
        verdict = np.full(len(records), -1, dtype=np.int8)
        verdict[has_truth] = graded.verdict
        joined["y_true"] = _gather(graded.label_keys, positions, has_truth)
        joined["y_pred"] = _gather(answer_keys, codes, scorable)
        column = pd.array(scorable & (verdict == 1), dtype="boolean")
        column[~has_truth] = pd.NA
        joined["correct"] = column
    elif resolved == "classification":
        keys = _ClassKeys()
        label_keys = np.array([keys(v, side="label") for v in labels_obj], dtype=object)
        # Only answers that count need a valid key; a broken error row must not abort the analysis.
        used = np.zeros(len(uniques), dtype=bool)
        used[codes[scorable & (codes >= 0)]] = True
        pred_keys = np.array(
            [keys(v, side="prediction") if u else None for v, u in zip(decoded, used, strict=True)], dtype=object
        )
        # a used prediction without a key is null: keep it as a wrong answer, not a hole scikit-learn cannot sort
        pred_keys[used & np.array([k is None for k in pred_keys], dtype=bool)] = NO_ANSWER
        if keys.argmax_used:
            assumptions.append("list predictions were scored as probability vectors: class = argmax index")
        y_true = _gather(label_keys, positions, has_truth)
        y_pred = _gather(pred_keys, codes, scorable)
        # the distinct keys in order of first appearance say as much as every scored row
        answered_keys = pred_keys[pd.unique(codes[scorable])]
        _check_comparable(
            pd.Series(label_keys[pd.unique(positions[scorable])], dtype=object),
            pd.Series(answered_keys[answered_keys != NO_ANSWER], dtype=object),
        )
        # compare integer codes of the keys, not millions of strings: equal codes mean equal keys
        key_codes = pd.factorize(np.concatenate([label_keys, pred_keys]), use_na_sentinel=False)[0]
        label_codes, pred_codes = key_codes[: len(label_keys)], key_codes[len(label_keys) :]
        match = np.zeros(len(records), dtype=bool)
        match[scorable] = label_codes[positions[scorable]] == pred_codes[codes[scorable]]
        null_codes = np.asarray(pred_keys == NO_ANSWER, dtype=bool)
        match[null_codes[codes] & (codes >= 0)] = False  # even against a label that reads "<no answer>"
        joined["y_true"] = y_true
        joined["y_pred"] = y_pred
        joined["correct"] = pd.array(np.where(has_truth, match, False), dtype="boolean")
        joined.loc[~has_truth, "correct"] = pd.NA
    elif resolved == "regression":
        label_floats = np.array([_to_float(v, side="label") for v in labels_obj], dtype=float)
        used = np.zeros(len(uniques), dtype=bool)
        used[codes[scorable & (codes >= 0)]] = True
        null_codes = np.array([_is_null(v) for v in decoded], dtype=bool)
        pred_floats = np.array(
            [
                _to_float(v, side="prediction") if u and not null else np.nan
                for v, u, null in zip(decoded, used, null_codes, strict=True)
            ],
            dtype=float,
        )
        y_true_f = _gather(label_floats, positions, has_truth)
        y_pred_f = _gather(pred_floats, codes, scorable)
        joined["y_true"] = y_true_f
        joined["y_pred"] = y_pred_f
        joined["correct"] = pd.array([pd.NA] * len(records), dtype="boolean")
    else:
        label_text = np.array([str(v) for v in labels_obj], dtype=object)
        null_codes = np.array([_is_null(v) for v in decoded], dtype=bool)
        pred_text = np.array(
            [
                NO_ANSWER if null else v if isinstance(v, str) else json.dumps(v)
                for v, null in zip(decoded, null_codes, strict=True)
            ],
            dtype=object,
        )
        y_true = _gather(label_text, positions, has_truth)
        y_pred = _gather(pred_text, codes, scorable)
        # compare codes of the distinct texts (and of their normalised forms), never text row by row
        both = np.concatenate([label_text, pred_text])
        exact_codes = pd.factorize(both)[0]
        lenient_codes = pd.factorize(np.array([normalise_text(t) for t in both], dtype=object))[0]
        exact = np.zeros(len(records), dtype=bool)
        lenient = np.zeros(len(records), dtype=bool)
        for out, shared in ((exact, exact_codes), (lenient, lenient_codes)):
            out[scorable] = shared[: len(label_text)][positions[scorable]] == shared[len(label_text) :][codes[scorable]]
            out[null_codes[codes] & (codes >= 0)] = False
        joined["y_true"] = y_true
        joined["y_pred"] = y_pred
        for name, values in (("correct", exact), ("correct_normalised", lenient)):
            column = pd.array(values, dtype="boolean")
            column[~has_truth] = pd.NA
            joined[name] = column

    no_answer = scorable & null_codes[codes]
    joined["no_answer"] = no_answer
    n_no_answer = int(no_answer.sum())
    if n_no_answer:
        assumptions.append(
            f"{n_no_answer} successful responses held no answer (null): "
            + ("left out of MAE, RMSE and R²" if resolved == "regression" else "counted as wrong answers")
        )
    sent = pd.Index(sent_ids)
    missing_ids = np.asarray(sent_ids, dtype=object)[pd.unique(id_codes[~has_truth])]
    summary = JoinSummary(
        task=resolved,
        task_inferred=inferred,
        n_records=len(records),
        n_with_truth=int(has_truth.sum()),
        n_without_truth=int((~has_truth).sum()),
        without_truth_examples=[str(s) for s in missing_ids[:_EXAMPLES]],
        n_truth=len(truth),
        n_truth_never_sent=int((~label_by_id.index.isin(sent)).sum()),
        n_no_answer=n_no_answer,
        assumptions=assumptions,
        grading=None if spec is None else spec.mode,
    )
    if summary.n_with_truth == 0:
        examples = ", ".join(repr(s) for s in summary.without_truth_examples)
        truth_examples = ", ".join(repr(s) for s in truth_ids.iloc[:_EXAMPLES])
        raise AnalysisInputError(
            f"no record's sample_id is in the ground truth (records have e.g. {examples}; "
            f"truth has e.g. {truth_examples}); check the truth file and its id column"
        )
    return joined, summary


def label_key(label: Any, *, task: str) -> Any:
    """One label in the form :func:`join_truth` compares: a class key, a float or text.

    With :func:`prediction_key`, this scores one response at a time exactly as
    :func:`join_truth` scores a whole run (the live figures during a test use it):
    a successful response is correct when both keys are equal (classification,
    text); regression has no right or wrong.

    Examples
    --------
    >>> label_key(3.0, task="classification"), prediction_key('"3"', task="classification")
    ('3', '3')
    >>> label_key("The cat", task="text") == prediction_key('"the cat"', task="text")
    False
    """
    _check_task(task)
    if task == "classification":
        return _ClassKeys()(label, side="label")
    if task == "regression":
        return _to_float(label, side="label")
    return str(label)


def prediction_key(prediction: str, *, task: str) -> Any:
    """One successful response's prediction (JSON text, as recorded) in the form :func:`join_truth` compares.

    Raises :class:`AnalysisInputError` when it cannot be compared (e.g. an object
    for a class label), as :func:`join_truth` does. A ``null`` prediction is
    :data:`NO_ANSWER` (NaN for regression): it equals no label.

    Examples
    --------
    >>> prediction_key("[0.1, 0.7, 0.2]", task="classification")
    '1'
    >>> prediction_key("[2.5]", task="regression")
    2.5
    >>> prediction_key("null", task="classification"), prediction_key("null", task="regression")
    ('<no answer>', nan)
    """
    _check_task(task)
    value = _decode(prediction)
    if _is_null(value):
        return float("nan") if task == "regression" else NO_ANSWER
    if task == "classification":
        return _ClassKeys()(value, side="prediction")
    if task == "regression":
        return _to_float(value, side="prediction")
    return value if isinstance(value, str) else json.dumps(value)
