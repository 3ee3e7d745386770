"""The web UI path: start, stop and start again from Locust's own HTTP API; each test gets its own run directory."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.support.locust_run import ROOT, web_ui, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _post(url: str, form: dict[str, str]) -> dict[str, object]:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
        return json.loads(response.read())


def _wait_for_state(ui: str, states: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = json.loads(_get(f"{ui}/stats/requests"))["state"]
        if state in states:
            return
        time.sleep(0.2)
    raise AssertionError(f"web UI state stayed {state!r}, expected one of {states}")


@pytest.mark.parametrize("processes", [0, 2])
def test_start_stop_start_gives_two_separate_runs(tmp_path: Path, reference_server: str, processes: int) -> None:
    scenario = write_scenario(tmp_path / "s.yaml", DIGITS)
    with web_ui(scenario, tmp_path / "run", processes=processes) as ui:
        for _ in range(2):
            started = _post(
                f"{ui}/swarm",
                {"user_count": "3", "spawn_rate": "3", "host": reference_server, "scenario": str(scenario)},
            )
            assert started["success"], started
            _wait_for_state(ui, {"running"})
            time.sleep(2)
            _post(f"{ui}/stop", {})
            _wait_for_state(ui, {"stopped"})
            time.sleep(0.5)

    runs = [tmp_path / "run", tmp_path / "run-2"]
    frames = []
    for run_dir in runs:
        info = json.loads((run_dir / "run.json").read_text())
        records = pd.read_csv(run_dir / "records.csv", dtype={"request_id": str})
        assert info["ended_at"] is not None
        assert info["records_written"] == info["locust_requests"] == len(records) > 0
        assert not records["request_id"].duplicated().any()
        assert records["ok"].all()
        frames.append((info, records))
    (first_info, first), (second_info, second) = frames
    assert first["t_sent"].max() <= first_info["t_end"] <= second_info["t_start"] <= second["t_sent"].min()
    assert not (tmp_path / "run-3").exists()


def test_a_user_count_changed_by_hand_is_a_stage_live_and_offline(tmp_path: Path, reference_server: str) -> None:
    """Editing the users in the web UI starts a stage in run.json; the Quality tab's levels are the analysis's."""
    from loadgrade.analysis import analyse_run

    scenario = write_scenario(tmp_path / "s.yaml", DIGITS)
    form = {"spawn_rate": "10", "host": reference_server, "scenario": str(scenario)}
    with web_ui(scenario, tmp_path / "run", processes=2) as ui:
        assert _post(f"{ui}/swarm", {**form, "user_count": "1"})["success"]
        _wait_for_state(ui, {"running"})
        time.sleep(3)
        assert _post(f"{ui}/swarm", {**form, "user_count": "4"})["success"]  # the edit while running
        time.sleep(3)
        _post(f"{ui}/stop", {})
        _wait_for_state(ui, {"stopped"})
        time.sleep(1)
        live = pd.read_csv(f"{ui}/quality/stages.csv")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [stage["target_users"] for stage in info["stages"]] == [1, 4]
    levels = analyse_run(tmp_path / "run", progress=False).levels
    assert levels["users"].tolist() == [1.0, 4.0]
    assert live["n"].tolist() == levels["n"].tolist()
    # both workers took part once the edit gave them users
    records = pd.read_csv(tmp_path / "run" / "records.csv", dtype={"sample_id": str})
    assert set(records.loc[records["stage"] == 1, "worker_index"]) == {0, 1}
