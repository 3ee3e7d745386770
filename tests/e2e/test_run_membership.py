"""Which workers belong to a run: late workers take part, workers of another run are refused, orphans stop.

Real Locust masters and workers on 127.0.0.1, each on a port of its own, each stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.support.locust_run import LOCUSTFILE, ROOT, _environment, _stop, free_port, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"


def locust(*args: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "INFO", *args]
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=_environment(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for(predicate, *, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_worker_that_joins_mid_run_takes_samples_and_is_listed(tmp_path: Path, reference_server: str) -> None:
    """A second worker joins during the first stage: from the next stage on it has users, and they send."""
    port = free_port()
    steps = [{"users": 2, "duration_s": 5}, {"users": 4, "duration_s": 5}]
    scenario = write_scenario(tmp_path / "s.yaml", DIGITS, load={"kind": "steps", "_replace": True, "steps": steps})
    common = ["--exit-code-on-error", "0", "--master-host", "127.0.0.1", "--master-port", str(port)]
    master = locust(
        "--headless", "--scenario", str(scenario), "--host", reference_server, "--run-dir", str(tmp_path / "run"),
        "--no-gate", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "1", "--exit-code-on-error", "0", log=tmp_path / "master.log",
    )  # fmt: skip
    started = [master, locust("--worker", *common, log=tmp_path / "w0.log")]
    try:
        records = tmp_path / "run" / "records.csv"
        wait_for(lambda: records.exists() and records.stat().st_size > 2000, timeout=60, what="the first rows")
        started.append(locust("--worker", *common, log=tmp_path / "w1.log"))
        master.wait(timeout=60)
    finally:
        for process in started:
            _stop(process)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["records_written"] == info["locust_requests"], (tmp_path / "master.log").read_text()[-3000:]
    late = [w for w in info["workers"] if w["joined_at"] > info["t_start"] + 0.5]
    assert len(info["workers"]) == 2
    assert len(late) == 1
    sent = pd.read_csv(records, dtype={"sample_id": str})
    second_stage = sent[sent["stage"] == 1]
    assert (second_stage["worker_index"] == late[0]["worker_index"]).sum() > 0  # its users sent, none idled


def test_processes_children_of_a_master_that_could_not_bind_are_refused(tmp_path: Path, reference_server: str) -> None:
    """Run B's master finds run A's port taken; B's --processes children must not join A and take its users."""
    port = free_port()
    scenario = write_scenario(
        tmp_path / "s.yaml", DIGITS, load={"kind": "users", "users": 2, "run_time_s": 12, "_replace": True}
    )
    common = ["--headless", "--scenario", str(scenario), "--host", reference_server, "--exit-code-on-error", "0"]
    a_log, b_log, w_log = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "a-worker.log"
    run_a = locust(
        *common, "--run-dir", str(tmp_path / "run-a"), "--no-gate", "--master", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", str(port), "--expect-workers", "1", log=a_log,
    )  # fmt: skip
    started = [run_a]
    try:
        started.append(locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port), log=w_log))
        records = tmp_path / "run-a" / "records.csv"
        wait_for(lambda: records.exists() and records.stat().st_size > 2000, timeout=60, what="run A under way")
        run_b = locust(
            *common, "--run-dir", str(tmp_path / "run-b"), "--processes", "2", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(port), "--master-port", str(port), log=b_log,
        )  # fmt: skip
        started.append(run_b)
        wait_for(lambda: a_log.read_text().count("refused worker") >= 2, timeout=40, what="A to refuse B's children")
        run_a.wait(timeout=60)
    finally:
        for process in started:
            _stop(process)
        if len(started) > 2:  # B's parent exits when it cannot bind; its children are in its process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started[2].pid, signal.SIGKILL)
    a_text = a_log.read_text()
    assert "--processes child of process" in a_text, a_text[-3000:]
    assert "refused this worker" in b_log.read_text()
    records = pd.read_csv(tmp_path / "run-a" / "records.csv", dtype={"sample_id": str})
    assert len(records) > 0
    assert set(records["worker_index"]) == {0}  # only A's own worker sent anything


def test_workers_stop_within_seconds_of_losing_their_master(tmp_path: Path, reference_server: str) -> None:
    """A SIGKILLed master: its workers must not go on loading the endpoint, unrecorded, for Locust's 60 s."""
    scenario = write_scenario(
        tmp_path / "s.yaml", DIGITS, load={"kind": "users", "users": 2, "run_time_s": 120, "_replace": True}
    )
    stopped_after: list[float] = []

    def kill_master(processes: list[subprocess.Popen[str]]) -> None:
        records = tmp_path / "run" / "records.csv"
        wait_for(lambda: records.exists() and records.stat().st_size > 2000, timeout=60, what="the first rows")
        os.kill(processes[0].pid, signal.SIGKILL)
        killed = time.monotonic()
        processes[1].wait(timeout=30)
        stopped_after.append(time.monotonic() - killed)

    run = run_locust(scenario, tmp_path / "run", mode="workers", workers=1, host=reference_server, during=kill_master)
    assert run.returncode == -signal.SIGKILL
    assert len(stopped_after) == 1
    assert stopped_after[0] < 12, stopped_after
