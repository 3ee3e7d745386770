"""Capacity search against the reference server: it finds the server's configured degradation threshold."""

from __future__ import annotations

from pathlib import Path

from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"


def test_search_over_users_finds_the_degradation_threshold(tmp_path: Path) -> None:
    """The server answers from its cheap model above 4 requests in flight: 4 users is the capacity."""
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        load={"kind": "search", "start": 2, "step": 2, "max": 12, "stage_s": 6, "bisect_steps": 2, "_replace": True},
        slo={"tolerance": 0.02, "rules": ["error_rate<=0.01"], "_replace": True},
    )
    with running_server("--service-time-ms", "20", "--degrade-above", "4") as url:
        run = run_locust(scenario, tmp_path / "run", mode="processes", host=url, timeout=150)
    assert run.returncode == 0, run.output[-3000:]
    capacity = run.info["capacity"]
    assert capacity["variable"] == "users"
    assert capacity["highest_passing"] == 4
    assert capacity["lowest_failing"] == 5
    assert [(level["value"], level["passed"]) for level in capacity["levels"]] == [
        (2, True),
        (4, True),
        (6, False),
        (5, False),
    ]
    assert [stage["target_users"] for stage in run.info["stages"]] == [2, 4, 6, 5]
    assert "the highest users meeting every SLO is 4; 5 breaks" in run.output
