"""The spine end to end with real processes: reference server, Locust (standalone, --processes, master+workers).

Invariants: rows in records.csv == records_written == Locust's own request count; no duplicate request ids;
with ``passes`` every sample is sent exactly once per pass; at low load every prediction equals the model's
offline prediction for that sample.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadgrade.servers.models import train_models
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"
GENERIC = ROOT / "scenarios" / "digits-generic.yaml"
DIABETES = ROOT / "scenarios" / "diabetes.yaml"


def digits_ids() -> list[str]:
    return pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str})["id"].tolist()


def assert_each_sample_once_per_pass(records: pd.DataFrame, ids: list[str], passes: int) -> None:
    assert sorted(records["pass"].unique().tolist()) == list(range(1, passes + 1))
    for _, group in records.groupby("pass"):
        assert Counter(group["sample_id"]) == Counter(ids)


def test_standalone_one_user_predictions_equal_offline_predict(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(tmp_path / "s.yaml", GENERIC, load={"users": 1, "run_time_s": 60, "_replace": True})
    run = run_locust(scenario, tmp_path / "run", host=reference_server)
    records = assert_spine_invariants(run)
    assert_each_sample_once_per_pass(records, digits_ids(), passes=1)
    assert records["ok"].all()
    assert set(records["users_active"]) == {1}
    truth = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str}).set_index("id")
    offline = train_models().digits.primary.predict(truth.filter(like="px").to_numpy())
    expected = dict(zip(truth.index, offline.tolist(), strict=True))
    assert {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)} == expected


def test_regression_predictions_equal_offline_predict(tmp_path: Path, reference_server: str) -> None:
    run = run_locust(DIABETES, tmp_path / "run", host=reference_server)
    records = assert_spine_invariants(run)
    truth = pd.read_csv(ROOT / "scenarios/data/diabetes_test.csv", dtype={"id": str}).set_index("id")
    models = train_models().diabetes
    # one C-ordered row at a time, as the server gets it from JSON: a batched or strided matrix product (pandas
    # hands out Fortran order) may round the last bit differently
    features = np.ascontiguousarray(truth[list(models.feature_names)].to_numpy())
    expected = {sid: float(models.primary.predict(features[i : i + 1])[0]) for i, sid in enumerate(truth.index)}
    got = {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)}
    assert got == expected


def test_processes_two_workers_two_passes(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 2},
        load={"kind": "users", "users": 4, "run_time_s": 90, "_replace": True},
    )
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=reference_server)
    records = assert_spine_invariants(run)
    assert_each_sample_once_per_pass(records, digits_ids(), passes=2)
    assert sorted(records["worker_index"].unique().tolist()) == [0, 1]
    assert run.info["worker_count"] == 2


def test_master_and_two_separate_workers(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 1},
        load={"kind": "users", "users": 4, "run_time_s": 90, "_replace": True},
    )
    run = run_locust(scenario, tmp_path / "run", mode="workers", host=reference_server)
    records = assert_spine_invariants(run)
    assert_each_sample_once_per_pass(records, digits_ids(), passes=1)
    assert sorted(records["worker_index"].unique().tolist()) == [0, 1]


@pytest.mark.parametrize("mode", ["standalone", "processes"])
def test_time_limited_steps_keep_the_tail(tmp_path: Path, reference_server: str, mode: str) -> None:
    """A run cut by time, not by passes: rows written at the very end must still all be there."""
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        load={
            "kind": "steps",
            "_replace": True,
            "steps": [{"users": 1, "duration_s": 2}, {"users": 3, "duration_s": 2}],
        },
    )
    run = run_locust(scenario, tmp_path / "run", mode=mode, host=reference_server)  # type: ignore[arg-type]
    records = assert_spine_invariants(run)
    stages = run.info["stages"]
    assert [s["target_users"] for s in stages] == [1, 3]
    assert set(records["stage"]) == {0, 1}
    first, second = (records[records["stage"] == i] for i in (0, 1))
    assert first["t_sent"].max() < stages[1]["t_start"] <= second["t_sent"].min()
    assert (first["target_users"] == 1).all()
    assert (second["target_users"] == 3).all()
