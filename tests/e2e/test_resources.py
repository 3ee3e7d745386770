"""resources.csv during a real run: the reference server's /metrics (counters as rates) and its process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"


def test_metrics_and_process_are_sampled_during_the_run(tmp_path: Path) -> None:
    with running_server("--service-time-ms", "5") as url:
        port = urlparse(url).port
        scenario = write_scenario(
            tmp_path / "s.yaml",
            DIGITS,
            load={"kind": "users", "users": 4, "run_time_s": 5, "_replace": True},
            resources={"interval_s": 0.5, "metrics_url": f"{url}/metrics", "port": port},
        )
        run = run_locust(scenario, tmp_path / "run", host=url)
    records = assert_spine_invariants(run)
    resources = pd.read_csv(tmp_path / "run" / "resources.csv")
    by_metric = resources.groupby("metric")["value"]
    assert {
        "reference_requests_total",
        "reference_requests_total:rate",
        "reference_in_flight",
        "cpu_percent",
        "rss_bytes",
    } <= set(by_metric.groups)
    # the server counted what the records say was sent (it may have counted a few more before the last sample)
    assert by_metric.max()["reference_requests_total"] <= len(records)
    assert by_metric.max()["reference_requests_total"] >= 0.8 * len(records)
    assert by_metric.median()["reference_requests_total:rate"] > 100
    assert by_metric.max()["cpu_percent"] > 5
    assert by_metric.min()["rss_bytes"] > 20e6

    # the analysis joins them with the load levels and prices quality in compute
    report = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    levels = pd.read_csv(tmp_path / "run" / "analysis" / "levels.csv")
    assert levels["cpu_percent"].iloc[0] > 5
    assert levels["resource_samples"].iloc[0] > 4
    expected = levels["n_correct"] / (levels["cpu_percent"] / 100 * levels["duration_s"])
    assert levels["correct_per_cpu_s"].tolist() == pytest.approx(expected.tolist())
    html = (tmp_path / "run" / "analysis" / "report.html").read_text()
    assert "What the load cost the served model" in html
    assert (tmp_path / "run" / "analysis" / "resources.png").exists()


def test_a_broken_metrics_source_never_fails_the_run(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 1},
        load={"kind": "users", "users": 2, "run_time_s": 60, "_replace": True},
        resources={"metrics_url": f"{reference_server}/health", "process": "no-such-server-process-here"},
    )
    run = run_locust(scenario, tmp_path / "run", host=reference_server)
    assert_spine_invariants(run)
    assert "did not answer Prometheus text" in run.output
    assert "found no server process for command line containing 'no-such-server-process-here'" in run.output
    assert pd.read_csv(tmp_path / "run" / "resources.csv").empty
