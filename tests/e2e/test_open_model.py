"""Open-model load (``load.kind: rate``): arrivals at a target rate across workers, and latency from the due time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadgrade.servers.reference import running_server
from tests.support.fault_server import fault_server
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"


@pytest.fixture(scope="module")
def fixed_service_time() -> Iterator[str]:
    with running_server("--service-time-ms", "10") as url:
        yield url


def inter_arrival_cv(times: pd.Series) -> float:
    gaps = np.diff(np.sort(times.to_numpy()))
    return float(gaps.std() / gaps.mean())


def test_poisson_arrivals_at_100_per_second_over_two_workers(tmp_path: Path, fixed_service_time: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        load={"kind": "rate", "rate": 100, "duration_s": 20, "max_users": 20, "seed": 7, "_replace": True},
    )
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=fixed_service_time)
    records = assert_spine_invariants(run)
    arrivals = len(records)
    assert abs(arrivals - 2000) <= 3 * np.sqrt(2000), arrivals  # Poisson count: mean = variance = rate × time
    assert sorted(records["worker_index"].unique()) == [0, 1]
    assert 0.85 <= inter_arrival_cv(records["t_scheduled"]) <= 1.15  # exponential gaps: CV 1
    for _, share in records.groupby("worker_index"):
        assert 0.8 <= inter_arrival_cv(share["t_scheduled"]) <= 1.2
    lag_ms = (records["t_sent"] - records["t_scheduled"]) * 1000
    assert lag_ms.median() < 5  # 20 users for 100/s × 10 ms: arrivals hardly ever wait
    assert (records["target_rps"] == 100).all()
    assert (records["target_users"] == 20).all()


def test_uniform_arrivals_are_evenly_spaced(tmp_path: Path, fixed_service_time: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        load={"kind": "rate", "rate": 50, "duration_s": 6, "max_users": 10, "arrival": "uniform", "_replace": True},
    )
    run = run_locust(scenario, tmp_path / "run", host=fixed_service_time)
    records = assert_spine_invariants(run)
    assert abs(len(records) - 300) <= 5
    assert inter_arrival_cv(records["t_scheduled"]) < 0.05


def test_a_stall_shows_in_latency_from_the_due_time_not_from_the_send(tmp_path: Path) -> None:
    """Coordinated omission: with 3 users, a 1 s stall holds back ~50 arrivals that never see the server slow."""
    data = pd.DataFrame({"id": [f"s{i}" for i in range(50)], "a": range(50), "b": range(50)})
    data["label"] = (data["a"] + data["b"]) % 10
    data.to_csv(tmp_path / "data.csv", index=False)
    with fault_server() as url:
        scenario = write_scenario(
            tmp_path / "s.yaml",
            {
                "endpoint": {"base_url": url, "path": "/stall", "timeout_s": 5},
                "protocol": {"kind": "flask-predict"},
                "dataset": {"path": str(tmp_path / "data.csv"), "input_columns": ["a", "b"]},
                "load": {"kind": "rate", "rate": 50, "duration_s": 8, "max_users": 3, "seed": 3},
            },
        )
        run = run_locust(scenario, tmp_path / "run")
    records = assert_spine_invariants(run)
    uncorrected = np.percentile(records["latency_ms"], 99)
    corrected = np.percentile((records["t_sent"] - records["t_scheduled"]) * 1000 + records["latency_ms"], 99)
    assert corrected > 500, corrected  # the stall, as a client arriving on schedule would have seen it
    assert uncorrected < 200, uncorrected  # only the 3 requests in flight saw it: below the 99th percentile


def test_a_cap_too_low_for_the_rate_is_reported(tmp_path: Path, fixed_service_time: str) -> None:
    """One user and 10 ms answers cannot carry 200 arrivals/s: the stage says so, and the lag shows why."""
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        load={
            "kind": "rate",
            "steps": [{"rate": 200, "duration_s": 3}, {"rate": 20, "duration_s": 2}],
            "max_users": 1,
            "_replace": True,
        },
    )
    run = run_locust(scenario, tmp_path / "run", host=fixed_service_time)
    records = assert_spine_invariants(run)
    assert "stage 0 offered 200 arrivals/s but achieved" in run.output
    assert "the cap of 1 users may be too low" in run.output
    first = records[records["stage"] == 0]
    assert len(first) < 0.5 * 200 * 3
    assert ((first["t_sent"] - first["t_scheduled"]) * 1000).max() > 500  # arrivals waited for the one user
