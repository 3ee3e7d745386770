"""Workers that die or are stopped mid-run: the run completes, and every row that reached the master is there once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loadgrade.dispenser import MAX_CHUNK, SampleDispenser
from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    """40 ms per answer: a pass over 540 samples with 4 users takes about 5 s, long enough to interfere with."""
    with running_server("--service-time-ms", "40") as url:
        yield url


def signal_one_worker(run_dir: Path, sig: signal.Signals, after_s: float, *, which: int = 2):
    """Signal a process (default: the second worker; 0 is the master) ``after_s`` seconds after the first rows
    reached the master (a busy machine may take a while to connect everyone, and a worker killed before the test
    starts proves nothing)."""

    def act(processes: list[subprocess.Popen[str]]) -> None:
        records = run_dir / "records.csv"
        deadline = time.monotonic() + 60
        while not (records.exists() and records.stat().st_size > 2000):
            assert time.monotonic() < deadline, "the test never started"
            time.sleep(0.1)
        time.sleep(after_s)
        os.kill(processes[which].pid, sig)

    return act


def sequence_numbers(records: pd.DataFrame, worker_index: int) -> list[int]:
    ids = records.loc[records["worker_index"] == worker_index, "request_id"]
    return sorted(ids.str.split("-").str[1].astype(int).tolist())


def test_sigterm_worker_ships_everything_before_it_leaves(tmp_path: Path, slow_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml", DIGITS, load={"kind": "users", "users": 4, "run_time_s": 7, "_replace": True}
    )
    run = run_locust(
        scenario,
        tmp_path / "run",
        mode="workers",
        host=slow_server,
        during=signal_one_worker(tmp_path / "run", signal.SIGTERM, 3),
    )
    records = assert_spine_invariants(run)  # 0 rows lost: records == Locust's count
    (left,) = run.info["workers_left"]
    assert left["how"] == "graceful"
    assert left["unrecorded_estimate"] == 0
    rows_of_leaver = (records["worker_index"] == left["worker_index"]).sum()
    assert left["rows_received"] == left["locust_requests_reported"] == rows_of_leaver > 0
    for index in (0, 1):
        numbers = sequence_numbers(records, index)
        assert numbers == list(range(1, len(numbers) + 1))


def test_sigkill_worker_the_run_completes_and_the_gap_is_reported(tmp_path: Path, slow_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml", DIGITS, load={"kind": "users", "users": 4, "run_time_s": 9, "_replace": True}
    )
    run = run_locust(
        scenario,
        tmp_path / "run",
        mode="workers",
        host=slow_server,
        during=signal_one_worker(tmp_path / "run", signal.SIGKILL, 3),
    )
    assert run.returncode == 0, run.output[-3000:]
    records, info = run.records, run.info
    assert not records["request_id"].duplicated().any()
    assert info["ended_at"] is not None
    (lost,) = info["workers_left"]
    assert lost["how"] == "lost"
    lost_index = lost["worker_index"]
    survivor = 1 - lost_index
    # what was shipped arrived once, in order: a gap-free prefix of the lost worker's requests
    numbers = sequence_numbers(records, lost_index)
    assert numbers == list(range(1, len(numbers) + 1))
    assert lost["rows_received"] == len(numbers) > 0
    assert sequence_numbers(records, survivor) == list(range(1, (records["worker_index"] == survivor).sum() + 1))
    # the survivor kept going after the loss
    assert records.loc[records["worker_index"] == survivor, "t_sent"].max() > lost["at"] - 3.5
    # the totals differ exactly by what the lost worker shipped but never reported to Locust
    assert info["records_written"] == len(records)
    assert info["records_written"] - info["locust_requests"] == lost["rows_received"] - lost["locust_requests_reported"]
    assert lost["unrecorded_estimate"] >= 0


def test_sigkill_worker_with_passes_the_others_finish_and_the_run_stops(tmp_path: Path, slow_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 1},
        load={"kind": "users", "users": 4, "run_time_s": 120, "_replace": True},
    )
    started = time.monotonic()
    run = run_locust(
        scenario,
        tmp_path / "run",
        mode="workers",
        host=slow_server,
        during=signal_one_worker(tmp_path / "run", signal.SIGKILL, 1),
    )
    assert time.monotonic() - started < 60, "the run should stop once the survivor has sent the rest of the pass"
    records = run.records
    assert not records["sample_id"].duplicated().any()  # never a sample twice within the pass
    (lost,) = run.info["workers_left"]
    survivor_samples = records.loc[records["worker_index"] != lost["worker_index"], "sample_id"]
    ids = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str})["id"]
    # the survivor took over the rest of the pass: unsent are only the samples the lost worker held (one chunk)
    unsent = set(ids) - set(records["sample_id"])
    assert len(unsent) <= SampleDispenser(len(ids), passes=1).chunk_size(MAX_CHUNK, 2)
    assert len(survivor_samples) > len(ids) // 2


def test_master_started_before_its_workers(tmp_path: Path, reference_server: str) -> None:
    """--expect-workers makes the master wait; the workers start 3 s later; each sample exactly once."""
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 1},
        load={"kind": "users", "users": 4, "run_time_s": 60, "_replace": True},
    )
    run = run_locust(scenario, tmp_path / "run", mode="workers", host=reference_server, workers_after_s=3)
    records = assert_spine_invariants(run)
    assert sorted(records["sample_id"]) == sorted(
        pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str})["id"]
    )
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["workers_left"] == []
    assert len(info["workers"]) == 2  # run.json lists every worker


@pytest.mark.parametrize("mode", ["standalone", "processes"])
def test_sigterm_master_mid_run_closes_the_run_properly(tmp_path: Path, slow_server: str, mode: str) -> None:
    """A cancelled CI job or a deleted pod: the test stops, the workers' tails are drained, run.json is complete."""
    scenario = write_scenario(
        tmp_path / "s.yaml", DIGITS, load={"kind": "steps", "_replace": True, "steps": [{"users": 4, "duration_s": 60}]}
    )
    started = time.monotonic()
    run = run_locust(
        scenario,
        tmp_path / "run",
        mode=mode,  # type: ignore[arg-type]
        host=slow_server,
        during=signal_one_worker(tmp_path / "run", signal.SIGTERM, 1, which=0),
    )
    assert time.monotonic() - started < 40
    records = assert_spine_invariants(run)
    assert run.info["workers_left"] == []
    assert len(records) > 0
