"""How fast does loadgrade's user (the samples' hand-out, reply parsing, a record per request written to one CSV)
send load, against a bare FastHttpUser POSTing the same payloads to the same fast endpoint?

Three users run as one Locust process each, with the same users against ``bench/fast_server.py``, one after the
other, several rounds in one invocation: the bare FastHttpUser (``bench/bare_locustfile.py``), loadgrade's HTTP
client alone (``bench/client_locustfile.py``: no hand-out, parsing or records) and loadgrade's user
(``locustfiles/replay.py``). The first ratio is the target; the second is what the recording itself costs. Locust
is pinned to one core and the server to the other when ``taskset`` exists. Two figures per run, both over the
steady middle of the run (ramp-up and start-up excluded):

- requests/s, from Locust's own per-second history (``--csv``);
- CPU time of the Locust process per request, from ``/proc/PID/stat``: what the recording costs, and the figure
  least disturbed by other work on the machine (requests/s drops when anything else takes the core).

The target is a ratio of at least 0.95 (loadgrade / bare).

    .venv/bin/python bench/recording_overhead.py [--users 20] [--seconds 12] [--rounds 5]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _pinned(cpu: int) -> list[str]:
    """``taskset -c CPU`` when there are two cores to share out and taskset exists, else nothing."""
    usable = (os.cpu_count() or 1) >= 2
    has_taskset = subprocess.run(["sh", "-c", "command -v taskset"], capture_output=True, check=False).returncode == 0
    return ["taskset", "-c", str(cpu)] if usable and has_taskset else []


@contextmanager
def fast_server() -> Iterator[str]:
    """Start bench/fast_server.py on a free port; stop it by its PID."""
    command = [*_pinned(1), sys.executable, str(ROOT / "bench" / "fast_server.py")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"fast server did not start: {line!r}")
        yield line.split()[1]
    finally:
        process.kill()
        process.wait(10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _requests_at(history: Path, t: float) -> float:
    """Locust's cumulative request count at epoch time t, interpolated from its per-second history."""
    points = []
    with history.open() as file:
        for row in csv.DictReader(file):
            if row["Name"] == "Aggregated":
                points.append((float(row["Timestamp"]), float(row["Total Request Count"])))
    for (t0, n0), (t1, n1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return n0 + (n1 - n0) * (t - t0) / (t1 - t0) if t1 > t0 else n1
    raise ValueError(f"{t} is outside the history ({points[0][0]}..{points[-1][0]})")


BASELINES = {"bare": "bare_locustfile.py", "client": "client_locustfile.py"}  # locustfiles of the baselines


@dataclass
class Measurement:
    requests_per_s: float
    cpu_us_per_request: float


def run_one(kind: str, scenario: Path, host: str, users: int, seconds: int, workdir: Path) -> Measurement:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SCENARIO": str(scenario)}
    prefix = workdir / f"{kind}-{time.monotonic_ns()}"
    common = ["--headless", "--host", host, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"]
    common += ["--exit-code-on-error", "0"]
    if kind in BASELINES:
        command = ["-f", str(ROOT / "bench" / BASELINES[kind]), "-u", str(users), "-r", str(users)]
        command += ["-t", f"{seconds}s", *common]
    else:
        command = ["-f", str(ROOT / "locustfiles" / "replay.py"), "--scenario", str(scenario)]
        command += ["--run-dir", str(prefix.with_suffix(".run")), *common]
    process = subprocess.Popen(
        [*_pinned(0), sys.executable, "-m", "locust", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = Path(f"{prefix}_stats_history.csv")
    try:
        steady_from, steady_to = seconds * 0.25, seconds * 0.75
        deadline = time.monotonic() + 60
        while not (history.exists() and history.read_text().count("\n") >= 2):  # the first second is logged
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: Locust did not start")
            time.sleep(0.1)
        time.sleep(steady_from)
        t0, cpu0 = time.time(), _cpu_seconds(process.pid)
        time.sleep(steady_to - steady_from)
        t1, cpu1 = time.time(), _cpu_seconds(process.pid)
        process.wait(seconds + 60)
    finally:
        if process.poll() is None:
            process.kill()
    requests = _requests_at(history, t1) - _requests_at(history, t0)
    return Measurement(requests / (t1 - t0), (cpu1 - cpu0) / requests * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20, help="users of each Locust process (default 20)")
    parser.add_argument("--seconds", type=int, default=12, help="length of each run, at least 10 (default 12)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each user; medians are shown (default 5)")
    args = parser.parse_args()
    if args.seconds < 10:  # the steady middle half must end inside Locust's per-second history
        parser.error("--seconds must be at least 10")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scenario = workdir / "bench.yaml"
        scenario.write_text(
            "endpoint: {base_url: 'http://127.0.0.1:1', timeout_s: 10}\n"
            "protocol: {kind: flask-predict}\n"
            f"dataset: {{path: '{ROOT / 'scenarios/data/digits_test.csv'}', input_columns: ['px*']}}\n"
            f"load: {{users: {args.users}, run_time_s: {args.seconds}}}\n"
        )
        results: dict[str, list[Measurement]] = {"bare": [], "client": [], "loadgrade": []}
        with fast_server() as host:
            for round_number in range(1, args.rounds + 1):
                for kind in results:
                    m = run_one(kind, scenario, host, args.users, args.seconds, workdir)
                    results[kind].append(m)
                    print(
                        f"round {round_number}: {kind:9s} {m.requests_per_s:8.0f} req/s "
                        f"{m.cpu_us_per_request:7.1f} us CPU/request",
                        flush=True,
                    )
    rps = {k: statistics.median(m.requests_per_s for m in v) for k, v in results.items()}
    cpu = {k: statistics.median(m.cpu_us_per_request for m in v) for k, v in results.items()}
    print(f"\nmedian over {args.rounds} rounds, {args.users} users, steady {args.seconds * 0.5:.0f} s of each run:")
    print(f"  bare FastHttpUser          {rps['bare']:8.0f} req/s  {cpu['bare']:6.1f} us CPU/request")
    print(f"  loadgrade's client alone   {rps['client']:8.0f} req/s  {cpu['client']:6.1f} us CPU/request")
    print(f"  loadgrade (recording)      {rps['loadgrade']:8.0f} req/s  {cpu['loadgrade']:6.1f} us CPU/request")
    print(f"  loadgrade / bare FastHttpUser:  {rps['loadgrade'] / rps['bare']:6.3f} req/s   (target >= 0.95)")
    print(f"                                  {cpu['bare'] / cpu['loadgrade']:6.3f} CPU efficiency")
    print(f"  loadgrade / its client alone:   {rps['loadgrade'] / rps['client']:6.3f} req/s   (what recording costs)")
    print(f"                                  {cpu['client'] / cpu['loadgrade']:6.3f} CPU efficiency")


if __name__ == "__main__":
    main()
