"""The main job, end to end: a real model server, a distributed step-load run, and the analysis report.

    make demo            (or: .venv/bin/python scripts/demo.py --help)

1. starts the reference model server on 127.0.0.1 (a free port) with load-dependent degradation;
2. runs ``scenarios/digits.yaml`` headless with a Locust master and ``--processes`` workers, a staircase of
   users that crosses the server's degradation threshold, into a new run directory (records.csv, run.json and
   Locust's own CSVs);
3. runs ``python -m analysis report`` on it and prints the run directory as the last line.
The server is stopped by its PID whatever happens.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadgrade.servers.reference import running_server  # noqa: E402  (after the path is set, when run as a script)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "digits.yaml"), help="scenario file")
    parser.add_argument("--processes", type=int, default=2, help="Locust worker processes (default: 2)")
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="folder for run directories (default: runs/)")
    parser.add_argument("--service-time-ms", default="20", help="reference server service time (default: 20)")
    parser.add_argument("--degrade-above", default="6", help="in-flight requests before the cheap model answers")
    parser.add_argument("--shed-above", default="14", help="in-flight requests before requests are shed (503)")
    args = parser.parse_args(argv)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(args.runs) / f"{Path(args.scenario).stem}-{stamp}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    server_args = (
        "--service-time-ms",
        args.service_time_ms,
        "--degrade-above",
        args.degrade_above,
        "--shed-above",
        args.shed_above,
        "--shed-mode",
        "503",
    )
    print(f"demo: starting the reference server ({' '.join(server_args)})", flush=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running_server(*server_args) as url:
        print(f"demo: server at {url}; running {args.scenario} with {args.processes} worker processes", flush=True)
        started = time.monotonic()
        locust = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "locustfiles" / "replay.py"),
                "--headless",
                "--scenario",
                args.scenario,
                "--host",
                url,
                "--processes",
                str(args.processes),
                # a free port, not Locust's default 5557 (which another Locust may hold); children need both
                "--master-bind-port",
                str(port),
                "--master-port",
                str(port),
                "--run-dir",
                str(run_dir),
                "--csv",
                str(run_dir / "locust"),
                "--json-file",
                str(run_dir / "locust"),
                "--exit-code-on-error",
                "0",
                "--only-summary",
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        print(
            f"demo: load test finished in {time.monotonic() - started:.0f} s (exit status {locust.returncode})",
            flush=True,
        )
    if locust.returncode == 1:  # the run's own SLO verdict: this server is built to break them above 6 in flight
        print("demo: the scenario's slo.rules failed at the higher loads, as the server is set up to do", flush=True)
    elif locust.returncode != 0:
        return locust.returncode
    report = subprocess.run([sys.executable, "-m", "analysis", "report", str(run_dir)], cwd=ROOT, env=env, check=False)
    if report.returncode != 0:
        return report.returncode
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
