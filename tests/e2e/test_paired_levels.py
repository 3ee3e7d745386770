"""Every level replays the same samples, whatever the users and workers, and the verdict is paired on them.

Real Locust processes (``--processes 2``) against the reference server: a 1-user first step leaves one worker
without users, which used to leave its half of the dataset unsent at that level.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loadgrade.dataset import pass_order
from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"
IDS = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str})["id"].tolist()


def steps(*stages: tuple[int, float]) -> dict[str, object]:
    return {"kind": "steps", "_replace": True, "steps": [{"users": u, "duration_s": d} for u, d in stages]}


@pytest.fixture(scope="module")
def paced_server() -> Iterator[str]:
    """Answers never change with load (no degradation, no shedding); 10 ms each, so a stage is shorter than a pass."""
    with running_server("--service-time-ms", "10") as url:
        yield url


@pytest.fixture(scope="module")
def shedding_server() -> Iterator[str]:
    """The same answers, but more than 2 requests in flight are shed with HTTP 503."""
    with running_server("--service-time-ms", "10", "--shed-above", "2") as url:
        yield url


def test_each_stage_sends_every_sample_once_with_a_one_user_first_step(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 1},
        slo={"_replace": True, "rules": ["accuracy_drop<=0"]},
        load=steps((1, 8), (3, 8)),
    )
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=reference_server, workers=2)
    records = assert_spine_invariants(run)
    for stage, sent in records.groupby("stage")["sample_id"]:
        assert sorted(sent) == sorted(IDS), f"stage {stage} did not send each sample exactly once"
    assert set(records["worker_index"]) == {0, 1}  # the second stage had users on both workers
    assert "✓ accuracy_drop<=0" in run.output, run.output[-2000:]


def test_stages_shorter_than_a_pass_cover_the_same_samples(tmp_path: Path, paced_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        slo={"_replace": True, "rules": ["accuracy_drop<=0"]},
        load=steps((1, 3), (4, 3)),
    )
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=paced_server, workers=2, gate=True)
    records = assert_spine_invariants(run)
    first = records[records["stage"] == 0]
    second = records[records["stage"] == 1]
    assert 50 < first["sample_id"].nunique() < len(IDS)  # a fraction of a pass
    # both stages began at the first sample of the same order: the slow stage's samples are a prefix of the fast's
    order = [IDS[i] for i in pass_order(len(IDS), pass_number=1, order="shuffle", seed=1)]
    reach = max(order.index(s) for s in first["sample_id"]) + 1
    assert set(first["sample_id"]) <= set(order[:reach])
    assert set(first["sample_id"]) <= set(second["sample_id"])
    # the answers never change, so the paired drop is exactly 0 and the run passes accuracy_drop<=0 by itself
    assert run.returncode == 0
    assert "✓ accuracy_drop<=0" in run.output, run.output[-2000:]


def test_the_same_server_shedding_at_the_top_level_fails_the_gate(tmp_path: Path, shedding_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        slo={"_replace": True, "rules": ["accuracy_drop<=0.01"]},
        load=steps((1, 3), (12, 3)),
    )
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=shedding_server, workers=2, gate=True)
    records = run.records
    top = records[records["stage"] == 1]
    assert (top["status_code"] == 503).mean() > 0.7
    assert run.returncode == 1, run.output[-3000:]
    assert "✗ accuracy_drop<=0.01" in run.output, run.output[-2000:]
