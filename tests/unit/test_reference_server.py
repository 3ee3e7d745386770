"""The reference server's models, datasets and tier decision, without sockets."""

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score

from loadgrade.servers import models as ref_models
from loadgrade.servers.make_datasets import DEFAULT_OUT, dataset_path, write_datasets
from loadgrade.servers.reference import ServerConfig


@pytest.fixture(scope="module")
def model_set() -> ref_models.ModelSet:
    return ref_models.train_models(seed=0)


@pytest.mark.parametrize(
    ("in_flight", "degrade_above", "shed_above", "expected"),
    [
        (1, None, None, "primary"),
        (10_000, None, None, "primary"),
        (2, 2, None, "primary"),
        (3, 2, None, "cheap"),
        (3, None, 2, "shed"),
        (2, 2, 4, "primary"),
        (3, 2, 4, "cheap"),
        (4, 2, 4, "cheap"),
        (5, 2, 4, "shed"),
        (3, 4, 2, "shed"),  # shedding wins when its threshold is the lower one
        (1, 0, None, "cheap"),
        (1, None, 0, "shed"),
    ],
)
def test_decide_tier(in_flight: int, degrade_above: int | None, shed_above: int | None, expected: str) -> None:
    assert ref_models.decide_tier(in_flight, degrade_above=degrade_above, shed_above=shed_above) == expected


def test_decide_tier_counts_the_arriving_request() -> None:
    with pytest.raises(ValueError, match="at least 1; got 0"):
        ref_models.decide_tier(0, degrade_above=None, shed_above=None)


def test_training_is_deterministic(model_set: ref_models.ModelSet) -> None:
    again = ref_models.train_models(seed=0)
    for name in ref_models.MODEL_NAMES:
        first, second = model_set[name], again[name]
        np.testing.assert_array_equal(first.X_test, second.X_test)
        np.testing.assert_array_equal(first.y_test, second.y_test)
        for role in ("primary", "cheap"):
            np.testing.assert_array_equal(
                getattr(first, role).predict(first.X_test), getattr(second, role).predict(second.X_test)
            )
        assert first.fallback == second.fallback


def test_digits_primary_beats_cheap_clearly(model_set: ref_models.ModelSet) -> None:
    task = model_set.digits
    primary = accuracy_score(task.y_test, task.primary.predict(task.X_test))
    cheap = accuracy_score(task.y_test, task.cheap.predict(task.X_test))
    assert primary >= 0.95
    assert 0.55 <= cheap <= 0.80
    assert primary - cheap >= 0.2


def test_diabetes_primary_beats_cheap_clearly(model_set: ref_models.ModelSet) -> None:
    task = model_set.diabetes
    primary, cheap = task.primary.predict(task.X_test), task.cheap.predict(task.X_test)
    assert r2_score(task.y_test, primary) - r2_score(task.y_test, cheap) >= 0.15
    assert mean_absolute_error(task.y_test, cheap) - mean_absolute_error(task.y_test, primary) >= 5


def test_fallbacks_are_majority_class_and_mean(model_set: ref_models.ModelSet) -> None:
    assert model_set.digits.fallback == 3  # the most frequent digit in the seed-0 training split
    assert type(model_set.digits.fallback) is int
    assert type(model_set.diabetes.fallback) is float
    assert 140 < model_set.diabetes.fallback < 160


def test_answers_have_json_friendly_types(model_set: ref_models.ModelSet) -> None:
    digits = model_set.digits.primary.predict(model_set.digits.X_test[:2]).tolist()
    diabetes = model_set.diabetes.cheap.predict(model_set.diabetes.X_test[:2]).tolist()
    assert all(type(label) is int for label in digits)
    assert all(type(value) is float for value in diabetes)


def test_unknown_names_are_refused(model_set: ref_models.ModelSet) -> None:
    with pytest.raises(KeyError, match="unknown model 'mnist'; known models are: digits, diabetes"):
        model_set["mnist"]
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; expected one of: digits, diabetes"):
        ref_models.test_split("mnist")


def test_test_split_layout() -> None:
    digits = ref_models.test_split("digits")
    assert digits.columns.tolist() == ["id", "label", *(f"px{i}" for i in range(64))]
    assert digits["id"].iloc[[0, -1]].tolist() == ["digits-0000", "digits-0539"]
    assert digits["label"].dtype == np.int64
    diabetes = ref_models.test_split("diabetes")
    assert diabetes.columns.tolist() == ["id", "target", "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert diabetes["id"].iloc[[0, -1]].tolist() == ["diabetes-000", "diabetes-132"]
    assert diabetes["target"].dtype == np.float64


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    write_datasets(out, seed=0)
    return out


@pytest.mark.parametrize("name", ref_models.MODEL_NAMES)
def test_committed_csv_is_reproducible(name: str, regenerated: Path) -> None:
    committed = dataset_path(DEFAULT_OUT, name)
    assert dataset_path(regenerated, name).read_bytes() == committed.read_bytes(), (
        f"{committed} is stale: run python -m loadgrade.servers.make_datasets"
    )


@pytest.mark.parametrize("name", ref_models.MODEL_NAMES)
def test_committed_csv_reads_back_as_test_split(name: str) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(dataset_path(DEFAULT_OUT, name)), ref_models.test_split(name))


@pytest.mark.parametrize("name", ref_models.MODEL_NAMES)
def test_csv_values_predict_exactly_as_offline(name: str, model_set: ref_models.ModelSet) -> None:
    task = model_set[name]
    path = dataset_path(DEFAULT_OUT, name)
    # C order like the server's arrays: to_numpy() is Fortran-ordered, which moves Ridge's answers by an ulp
    from_pandas = np.ascontiguousarray(pd.read_csv(path)[list(task.feature_names)].to_numpy())
    with path.open(newline="") as f:
        from_csv_module = np.array([[float(row[c]) for c in task.feature_names] for row in csv.DictReader(f)])
    for X in (from_pandas, from_csv_module):
        # bit-for-bit, not merely ==: the CSV must not lose a single ulp
        np.testing.assert_array_equal(X.view(np.int64), task.X_test.view(np.int64))
        for model in (task.primary, task.cheap):
            np.testing.assert_array_equal(model.predict(X), model.predict(task.X_test))


def test_server_config_is_validated() -> None:
    assert ServerConfig() == ServerConfig(seed=0, service_time_ms=0, degrade_above=None, shed_above=None)
    with pytest.raises(ValueError, match="service_time_ms must be a non-negative"):
        ServerConfig(service_time_ms=-1)
    with pytest.raises(ValueError, match="shed_above must be a non-negative"):
        ServerConfig(shed_above=-1)
    with pytest.raises(ValueError, match="shed_mode must be '503' or 'fallback'; got 'drop'"):
        ServerConfig(shed_mode="drop")  # type: ignore[arg-type]
