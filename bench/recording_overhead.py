"""How much throughput does loadgrade's user (dataset partitioning, reply parsing, per-request records shipped to
one CSV) cost against a bare FastHttpUser POSTing the same payloads to the same fast endpoint?

Both run as one Locust process with the same users against ``bench/fast_server.py``, alternating, several rounds
in one invocation; the server is pinned to one core and Locust to the other when the machine allows. Prints
requests/s of each and the ratio (target: >= 0.95).

    .venv/bin/python bench/recording_overhead.py [--users 20] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def _requests_per_second(json_file: Path) -> tuple[float, int]:
    stats = json.loads(json_file.read_text())
    total = sum(entry["num_requests"] for entry in stats)
    start = min(entry["start_time"] for entry in stats)
    end = max(entry["last_request_timestamp"] for entry in stats)
    return total / (end - start), total


def run_one(kind: str, scenario: Path, host: str, users: int, seconds: int, workdir: Path) -> tuple[float, int, float]:
    """Requests/s, requests, and CPU seconds the Locust process used per request (robust to a busy machine)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SCENARIO": str(scenario)}
    out = workdir / kind
    common = [
        "--headless",
        "--host",
        host,
        "--json-file",
        str(out),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    if kind == "bare":
        command = [
            "-f",
            str(ROOT / "bench" / "bare_locustfile.py"),
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            *common,
        ]
    else:
        command = [
            "-f",
            str(ROOT / "locustfiles" / "replay.py"),
            "--scenario",
            str(scenario),
            "--run-dir",
            str(workdir / f"run-{len(list(workdir.glob('run-*')))}"),
            *common,
        ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [*_pinned(0), sys.executable, "-m", "locust", *command],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rps, total = _requests_per_second(out.with_suffix(".json"))
    return rps, total, cpu / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scenario = workdir / "bench.yaml"
        scenario.write_text(
            "endpoint: {base_url: 'http://127.0.0.1:1', timeout_s: 10}\n"
            "protocol: {kind: flask-predict}\n"
            f"dataset: {{path: '{ROOT / 'scenarios/data/digits_test.csv'}', input_columns: ['px*']}}\n"
            f"load: {{users: {args.users}, run_time_s: {args.seconds}}}\n"
        )
        results: dict[str, list[float]] = {"bare": [], "loadgrade": []}
        cpu_per_request: dict[str, list[float]] = {"bare": [], "loadgrade": []}
        with fast_server() as host:
            for round_number in range(1, args.rounds + 1):
                for kind in ("bare", "loadgrade"):
                    rps, total, cpu = run_one(kind, scenario, host, args.users, args.seconds, workdir)
                    results[kind].append(rps)
                    cpu_per_request[kind].append(cpu)
                    print(
                        f"round {round_number}: {kind:9s} {rps:8.0f} req/s ({total} requests, "
                        f"{cpu * 1e6:.0f} us CPU per request)",
                        flush=True,
                    )
    bare, ours = statistics.median(results["bare"]), statistics.median(results["loadgrade"])
    print(f"\nmedian over {args.rounds} rounds, {args.users} users, {args.seconds} s each:")
    print(f"  bare FastHttpUser     {bare:8.0f} req/s")
    print(f"  loadgrade (recording) {ours:8.0f} req/s")
    print(f"  ratio                 {ours / bare:8.3f}   (target >= 0.95)")
    cpu_bare, cpu_ours = (statistics.median(cpu_per_request[k]) for k in ("bare", "loadgrade"))
    print(
        f"  CPU per request       {cpu_bare * 1e6:.0f} us bare, {cpu_ours * 1e6:.0f} us loadgrade "
        f"(ratio {cpu_bare / cpu_ours:.3f}; includes each process's start-up)"
    )


if __name__ == "__main__":
    main()
