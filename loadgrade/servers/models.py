"""The reference server's models, their test splits and the load-dependent tier decision.

Everything here is pure and deterministic for a given seed, so tests can rebuild offline exactly what the server
answers. Two tasks, each with a *primary* model (what a healthy server answers), a clearly worse *cheap* model (what
it answers when degraded under load) and a constant *fallback* answer (what it answers when shedding in "fallback"
mode):

============  ==========================================  ===================================  ======================
task          primary                                     cheap                                fallback
============  ==========================================  ===================================  ======================
``digits``    standardised logistic regression (~97 %)    decision tree of depth 5 (~72 %)     majority training class
``diabetes``  ridge regression (R² ~0.40)                 one-split stump (R² ~0.13)           training mean
============  ==========================================  ===================================  ======================

(accuracies on the seed-0 test split). Models are fitted on NumPy arrays, not DataFrames, so that predicting on the
rows of a JSON request does not warn about missing feature names.

A linear model's prediction is bit-for-bit reproducible only for the same grouping of rows *and* the same memory
layout: OpenBLAS computes the matrix-vector product in blocks of four rows with another kernel for the remainder,
and a Fortran-ordered array (what ``DataFrame.to_numpy()`` returns) takes yet another path. So
``ridge.predict(X)[i]``, ``ridge.predict(X[i : i + 1])[0]`` and ``ridge.predict(np.asfortranarray(X))[i]`` can
differ by an ulp or two. The server predicts on C-ordered arrays, one per request; to reproduce its answers
exactly, predict on ``np.ascontiguousarray`` rows grouped as they were sent.
"""

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

__all__ = [
    "MODEL_NAMES",
    "ModelSet",
    "Predictor",
    "Task",
    "Tier",
    "decide_tier",
    "test_split",
    "train_models",
]

Tier = Literal["primary", "cheap", "shed"]
TaskKind = Literal["classification", "regression"]

#: The tasks the server knows, in the order ``/health`` lists them.
MODEL_NAMES: tuple[str, ...] = ("digits", "diabetes")

_TEST_SIZE = 0.3
_DIGITS_FEATURES = tuple(f"px{i}" for i in range(64))


class Predictor(Protocol):
    """What the server needs from a fitted model: scikit-learn's ``predict``."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Task:
    """One task's fitted models and held-out test split.

    Attributes
    ----------
    name : str
        ``"digits"`` or ``"diabetes"``; also the name in the server's URLs.
    kind : {"classification", "regression"}
        Classifiers answer plain ``int`` labels, regressors ``float`` values.
    primary, cheap : Predictor
        The good model and the clearly worse one answered under load.
    fallback : int or float
        The constant answer when shedding in "fallback" mode: the majority training class or the training mean.
    feature_names : tuple of str
        Column names of the features, in the order a request must list them.
    X_test, y_test : numpy.ndarray
        The test split (read-only), in the row order of ``scenarios/data/<name>_test.csv``.
    """

    name: str
    kind: TaskKind
    primary: Predictor
    cheap: Predictor
    fallback: int | float
    feature_names: tuple[str, ...]
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        """How many numbers one input row must have."""
        return len(self.feature_names)


@dataclass(frozen=True, eq=False)
class ModelSet:
    """Both tasks, fitted with one seed; look a task up by name with ``models[name]``."""

    seed: int
    digits: Task
    diabetes: Task

    def __getitem__(self, name: str) -> Task:
        if name not in MODEL_NAMES:
            raise KeyError(f"unknown model {name!r}; known models are: {', '.join(MODEL_NAMES)}")
        task: Task = getattr(self, name)
        return task


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(MODEL_NAMES)}")


def _load(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        return X, y, _DIGITS_FEATURES
    bunch = load_diabetes()
    return bunch.data, bunch.target, tuple(bunch.feature_names)


def _split(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    X, y, feature_names = _load(name)
    stratify = y if name == "digits" else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=_TEST_SIZE, random_state=seed, stratify=stratify
    )
    return X_train, X_test, y_train, y_test, feature_names


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def train_models(seed: int = 0) -> ModelSet:
    """Fit the primary and cheap models of both tasks on their training splits.

    Parameters
    ----------
    seed : int, default=0
        Seeds the train/test split and the trees, so two calls with one seed give identical models.

    Returns
    -------
    ModelSet
        The fitted models with their test splits; takes well under a second.

    Examples
    --------
    >>> models = train_models()
    >>> models["digits"].primary.predict(models["digits"].X_test[:3]).tolist()
    [1, 4, 5]
    >>> models["diabetes"].n_features
    10
    """
    X_train, X_test, y_train, y_test, names = _split("digits", seed)
    digits = Task(
        name="digits",
        kind="classification",
        primary=make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_train, y_train),
        cheap=DecisionTreeClassifier(max_depth=5, random_state=seed).fit(X_train, y_train),
        # argmax takes the smallest label on a tie, so the fallback is deterministic too
        fallback=int(np.bincount(y_train).argmax()),
        feature_names=names,
        X_test=_read_only(X_test),
        y_test=_read_only(y_test),
    )
    X_train, X_test, y_train, y_test, names = _split("diabetes", seed)
    diabetes = Task(
        name="diabetes",
        kind="regression",
        primary=Ridge(alpha=0.1).fit(X_train, y_train),
        cheap=DecisionTreeRegressor(max_depth=1, random_state=seed).fit(X_train, y_train),
        fallback=float(np.mean(y_train)),
        feature_names=names,
        X_test=_read_only(X_test),
        y_test=_read_only(y_test),
    )
    return ModelSet(seed=seed, digits=digits, diabetes=diabetes)


def test_split(name: str, seed: int = 0) -> pd.DataFrame:  # noqa: PT028 (not a test, see __test__ below)
    """The test split of one task as the DataFrame written to ``scenarios/data/<name>_test.csv``.

    Columns are ``id`` (``digits-0000``, ``diabetes-000``: the row's position in the split), the ground truth
    (``label`` for digits, ``target`` for diabetes) and then the features under ``Task.feature_names``.

    Parameters
    ----------
    name : {"digits", "diabetes"}
        Which task.
    seed : int, default=0
        Must match the server's ``--seed`` for the rows to be the ones it never trained on.

    Returns
    -------
    pandas.DataFrame
        One row per test sample, in split order.

    Examples
    --------
    >>> df = test_split("diabetes")
    >>> df.columns[:4].tolist(), len(df)
    (['id', 'target', 'age', 'sex'], 133)
    >>> df["id"].iloc[0]
    'diabetes-000'
    """
    _check_name(name)
    _, X_test, _, y_test, feature_names = _split(name, seed)
    width = 4 if name == "digits" else 3
    truth = ("label", y_test.astype(np.int64)) if name == "digits" else ("target", y_test.astype(np.float64))
    frame = pd.DataFrame(X_test, columns=list(feature_names))
    frame.insert(0, truth[0], truth[1])
    frame.insert(0, "id", [f"{name}-{i:0{width}d}" for i in range(len(X_test))])
    return frame


# The name starts with "test_": without this, pytest collects it from any test module that imports it.
test_split.__test__ = False  # type: ignore[attr-defined]


def decide_tier(in_flight: int, *, degrade_above: int | None, shed_above: int | None) -> Tier:
    """Which tier answers a request that arrives while ``in_flight`` requests (itself included) are being served.

    Parameters
    ----------
    in_flight : int
        Requests in flight at arrival, counting the arriving one (so at least 1).
    degrade_above : int or None
        Above this many, answer with the cheap model; ``None`` never degrades.
    shed_above : int or None
        Above this many, shed the request (HTTP 503 or the fallback answer); ``None`` never sheds. Shedding
        wins over degrading.

    Returns
    -------
    {"primary", "cheap", "shed"}

    Examples
    --------
    >>> [decide_tier(n, degrade_above=2, shed_above=4) for n in (1, 2, 3, 4, 5)]
    ['primary', 'primary', 'cheap', 'cheap', 'shed']
    >>> decide_tier(1000, degrade_above=None, shed_above=None)
    'primary'
    """
    if in_flight < 1:
        raise ValueError(f"in_flight counts the arriving request, so it must be at least 1; got {in_flight}")
    if shed_above is not None and in_flight > shed_above:
        return "shed"
    if degrade_above is not None and in_flight > degrade_above:
        return "cheap"
    return "primary"
