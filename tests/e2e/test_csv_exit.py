"""Locust's ``--csv`` statistics beside the records: the run ends without a traceback, however slowly it exits.

Locust closes the CSV files at shutdown while the greenlet rewriting them every second still runs; loadgrade stops
that greenlet first (loadgrade/locust_plugin.py). The locustfile here yields for 1.5 s after the files are closed,
which without that stop lets the greenlet write to a closed file every time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, write_scenario

LOCUSTFILE = ROOT / "tests" / "support" / "slow_exit_locustfile.py"


def test_a_run_with_csv_statistics_exits_without_a_traceback(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        ROOT / "scenarios" / "digits.yaml",
        load={"kind": "steps", "steps": [{"users": 2, "duration_s": 3}], "_replace": True},
    )
    with running_server() as url:
        done = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--scenario", str(scenario),
             "--host", url, "--run-dir", str(tmp_path / "run"), "--csv", str(tmp_path / "locust"),
             "--no-gate", "--exit-code-on-error", "0"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "I/O operation on closed file" not in done.stderr
    # Locust's own statistics were still written: its CSV is a snapshot rewritten every second, so it may miss the
    # last second's requests (the exact count is Locust's --json-file and run.json's locust_requests)
    stats = (tmp_path / "locust_stats.csv").read_text().splitlines()
    with (tmp_path / "run" / "records.csv").open() as records:
        recorded = sum(1 for _ in records) - 1
    aggregated = next(line for line in stats if ",Aggregated," in line).split(",")
    assert 0 < int(aggregated[2]) <= recorded
