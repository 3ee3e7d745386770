"""Run real Locust processes (standalone, ``--processes``, or a master with separately started workers)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "locustfiles" / "replay.py"
Mode = Literal["standalone", "processes", "workers"]


@dataclass
class LocustRun:
    run_dir: Path
    returncode: int
    output: str

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "run.json").read_text())

    @property
    def records(self) -> pd.DataFrame:
        return pd.read_csv(
            self.run_dir / "records.csv",
            dtype={"sample_id": str, "request_id": str, "prediction": str, "error": str},
            keep_default_na=False,
        )

    @property
    def locust_json_requests(self) -> int:
        stats = json.loads((self.run_dir / "locust.json").read_text())
        return sum(entry["num_requests"] for entry in stats)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_scenario(path: Path, base: Path | dict[str, Any], **changes: Any) -> Path:
    """A scenario file derived from a shipped one (or a dict), with top-level sections replaced or merged."""
    data = yaml.safe_load(base.read_text()) if isinstance(base, Path) else dict(base)
    if isinstance(base, Path):
        dataset = data.get("dataset", {})
        dataset["path"] = str((base.parent / dataset["path"]).resolve())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and not value.pop("_replace", False):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("LOADGRADE_SCENARIO", None)
    env.pop("LOADGRADE_RUN_DIR", None)
    return env


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def run_locust(
    scenario: Path,
    run_dir: Path,
    *,
    mode: Mode = "standalone",
    host: str | None = None,
    workers: int = 2,
    timeout: float = 120,
    extra: tuple[str, ...] = (),
    during: Callable[[list[subprocess.Popen[str]]], None] | None = None,
    workers_after_s: float = 0.0,
    gate: bool = False,
) -> LocustRun:
    """Run a headless test to its end and return its run directory; every process is stopped by its PID.

    The scenario's ``slo.rules`` are judged at the end either way; only with ``gate`` does a failing rule set the
    exit status (tests of the spine should not fail because a busy machine broke a latency rule).
    """
    common = ["-f", str(LOCUSTFILE), "--exit-code-on-error", "0", "--loglevel", "INFO"]
    master = [
        sys.executable,
        "-m",
        "locust",
        *common,
        "--headless",
        "--scenario",
        str(scenario),
        "--run-dir",
        str(run_dir),
        "--json-file",
        str(run_dir / "locust"),
        "--only-summary",
        *(() if gate else ("--no-gate",)),
        *extra,
    ]
    if host:
        master += ["--host", host]
    worker_cmds: list[list[str]] = []
    if mode == "processes":
        # a free port rather than 5557, so runs never collide; --processes children need both options
        port = free_port()
        master += ["--processes", str(workers), "--master-bind-port", str(port), "--master-port", str(port)]
    elif mode == "workers":
        port = free_port()
        master += [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(workers),
        ]
        worker_cmds = [
            [
                sys.executable,
                "-m",
                "locust",
                *common,
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                str(port),
            ]
            for _ in range(workers)
        ]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[str]] = []
    try:
        main = subprocess.Popen(
            master,
            cwd=ROOT,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        processes.append(main)
        time.sleep(workers_after_s if worker_cmds else 0.0)
        for i, cmd in enumerate(worker_cmds):  # worker logs beside the run directory, for post-mortems
            with (run_dir.parent / f"{run_dir.name}-worker-{i}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        cmd,
                        cwd=ROOT,
                        env=_environment(),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        text=True,
                        start_new_session=True,
                    )
                )
        if during is not None:  # e.g. kill a worker mid-run: gets [master, *separately started workers]
            during(processes)
        output, _ = main.communicate(timeout=timeout)
        for worker in processes[1:]:
            worker.wait(timeout=30)
        return LocustRun(run_dir, main.returncode, output)
    finally:
        for process in processes:
            _stop(process)


def assert_spine_invariants(run: LocustRun) -> pd.DataFrame:
    """rows in records.csv == records_written == Locust's own count (run.json and --json-file); ids unique."""
    assert run.returncode == 0, run.output[-3000:]
    records = run.records
    info = run.info
    assert info["records_written"] == info["locust_requests"] == len(records) == run.locust_json_requests, (
        info["records_written"],
        info["locust_requests"],
        len(records),
        run.locust_json_requests,
    )
    assert len(records) > 0
    assert not records["request_id"].duplicated().any()
    assert info["ended_at"] is not None
    return records


@contextmanager
def web_ui(
    scenario: Path, run_dir: Path, *, processes: int = 0, timeout: float = 30, log: Path | None = None
) -> Iterator[str]:
    """Locust's web UI on a free port of 127.0.0.1 (``replay_manual.py``: load set by hand); yields its URL once it
    answers and, with ``processes``, once its workers are connected; stopped by its PID (SIGTERM, then SIGKILL).
    With ``log``, the master's stdout and stderr go to that file."""
    import urllib.request

    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "replay_manual.py")]
    command += ["--scenario", str(scenario), "--web-host", "127.0.0.1", "--web-port", str(port)]
    command += ["--run-dir", str(run_dir), *(["--processes", str(processes)] if processes else [])]
    output = log.open("w") if log is not None else None
    locust = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_environment(),
        stdout=output or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{ui}/stats/requests", timeout=10) as response:
                    workers = json.loads(response.read()).get("worker_count", 0)
                if workers >= processes:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the web UI did not come up (or its workers did not connect)"
            time.sleep(0.2)
        yield ui
    finally:
        os.killpg(locust.pid, signal.SIGTERM)
        try:
            locust.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(locust.pid, signal.SIGKILL)
            locust.wait(5)
        if output is not None:
            output.close()
