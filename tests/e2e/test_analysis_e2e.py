"""The analysis end to end: a real Locust step load against the reference server's degradation, then
``python -m analysis report`` and ``check`` as subprocesses.

The server answers from its cheap model (~72 % accuracy instead of ~97 %) once more than 3 requests are in flight.
At 2 users that never happens; at 6 users nearly every answer comes from the cheap model. The analysis must see
accuracy fall at exactly that step, put the knee at 2 users, and make ``check`` fail a rule that should fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"
STEPS = [{"users": 2, "duration_s": 6}, {"users": 6, "duration_s": 6}]


@pytest.fixture(scope="module")
def degrading_server() -> Iterator[str]:
    """The reference server with 20 ms of service time that degrades above 3 requests in flight."""
    with running_server("--service-time-ms", "20", "--degrade-above", "3") as url:
        yield url


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, degrading_server: str) -> Path:
    tmp_path = tmp_path_factory.mktemp("analysis-e2e")
    scenario = write_scenario(tmp_path / "s.yaml", DIGITS, load={"kind": "steps", "_replace": True, "steps": STEPS})
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=degrading_server)
    assert_spine_invariants(run)
    return run.run_dir


def analysis_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def report(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return analysis_cli("report", str(run_dir))


def test_report_shows_accuracy_falling_at_the_degradation_threshold(run_dir: Path, report) -> None:
    assert report.returncode == 0, report.stderr
    levels = pd.read_csv(run_dir / "analysis" / "levels.csv").set_index("users")
    assert levels.index.tolist() == [2.0, 6.0]
    low, high = levels.loc[2.0], levels.loc[6.0]
    assert low["error_rate"] == 0.0
    assert high["error_rate"] == 0.0
    # the primary model is ~97 % accurate on this split, the cheap one ~72 %
    assert low["accuracy"] >= 0.93, levels[["n", "accuracy", "inflight_max"]]
    assert high["accuracy"] <= 0.85, levels[["n", "accuracy", "inflight_max"]]
    assert low["accuracy"] - high["accuracy"] >= 0.1
    assert low["inflight_max"] <= 3
    assert bool(low["is_baseline"])
    assert not bool(low["degraded"])
    assert bool(high["degraded"])
    assert "DEGRADED" in report.stdout
    assert "quality knee: 2 users; fails from 6 users: " in report.stdout


def test_report_writes_summary_and_html(run_dir: Path, report) -> None:
    assert report.returncode == 0, report.stderr
    out = run_dir / "analysis"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["level_kind"] == "stage"
    assert summary["quality_knee"]["users"] == 2.0
    assert summary["quality_knee"]["first_bad_users"] == 6.0
    assert summary["degraded_levels"] == [1]
    assert summary["counts"]["n_without_truth"] == 0
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "data:image/png;base64," in html
    for chart in ("accuracy.png", "latency.png"):
        assert (out / chart).stat().st_size > 0


def test_check_fails_a_rule_that_should_fail(run_dir: Path) -> None:
    result = analysis_cli("check", str(run_dir), "--rule", "accuracy_drop<=0.01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout
    assert "0 of 1 rules pass; 1 fail" in result.stdout


def test_check_passes_a_rule_that_should_pass(run_dir: Path) -> None:
    result = analysis_cli("check", str(run_dir), "--rule", "accuracy>=0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 of 1 rules pass" in result.stdout
