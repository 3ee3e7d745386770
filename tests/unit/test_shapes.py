"""Load shapes from the scenario: their stage plans, and their bad inputs caught before any load starts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loadgrade.errors import ScenarioError
from loadgrade.scenario import load_scenario
from loadgrade.shapes import RateLoad, SpikeLoad, StageClock, StagePlan, stage_plan

HEAD = """\
endpoint: {base_url: "http://127.0.0.1:8000"}
protocol: {kind: flask-predict}
dataset: {path: data.csv, input_columns: [x]}
"""


def load(tmp_path: Path, section: str):
    (tmp_path / "data.csv").write_text("id,label,x\na,1,0.5\n")
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + "load:\n" + textwrap.indent(textwrap.dedent(section), "  "))
    return load_scenario(path)


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("kind: steps\nsteps: [{users: 2, duration_s: 0}]", "load.steps[0].duration_s", "greater than 0"),
        ("kind: steps\nsteps: [{users: -1, duration_s: 5}]", "load.steps[0].users", "greater than or equal to 0"),
        ("kind: steps\nsteps: []", "load.steps", "at least 1 item"),
        ("kind: ramp\nto_users: 5\nduration_s: -3", "load.duration_s", "greater than 0"),
        ("kind: rate\nrate: 10\nduration_s: 5", "load.max_users", "missing required key"),
        ("kind: rate\nmax_users: 4", "load", "either 'rate' and 'duration_s', or 'steps'"),
        ("kind: spike\nbaseline_users: 2\nspike_users: 9\nbefore_s: 5\nspike_s: 5", "load.after_s", "missing"),
        ("kind: soak\nusers: 2\nduration_s: 60\nwindow_s: 0", "load.window_s", "greater than 0"),
        ("kind: surge\nusers: 2", "load.kind", "unknown load kind 'surge'"),
    ],
)
def test_bad_load_sections_are_scenario_errors(tmp_path: Path, section: str, key: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        load(tmp_path, section)
    assert caught.value.key == key


def test_default_kind_is_users(tmp_path: Path) -> None:
    scenario = load(tmp_path, "users: 3\nrun_time_s: 10")
    assert stage_plan(scenario.load) == [StagePlan(3, 3.0, 10.0)]


def test_spike_and_rate_plans(tmp_path: Path) -> None:
    spike = load(tmp_path, "kind: spike\nbaseline_users: 2\nspike_users: 10\nbefore_s: 5\nspike_s: 3\nafter_s: 4")
    assert isinstance(spike.load, SpikeLoad)
    assert [(s.users, s.duration_s) for s in stage_plan(spike.load)] == [(2, 5.0), (10, 3.0), (2, 4.0)]
    rate = load(tmp_path, "kind: rate\nmax_users: 8\nsteps: [{rate: 10, duration_s: 5}, {rate: 40, duration_s: 5}]")
    assert isinstance(rate.load, RateLoad)
    assert [(s.users, s.target_rps) for s in stage_plan(rate.load)] == [(8, 10.0), (8, 40.0)]


def test_stage_clock_never_skips_a_short_stage() -> None:
    """Locust's start() can block past a short stage's end; the clock still holds it for its full duration."""
    clock = StageClock([StagePlan(10, 1.0, 2.0), StagePlan(20, 1.0, 1.0), StagePlan(30, 1.0, 1.0)])
    assert clock.stage(0.0) == 0
    assert clock.stage(9.0) == 1  # ticked again only after a long blocking ramp: stage 1 begins now ...
    assert clock.stage(9.9) == 1  # ... and lasts its second
    assert clock.stage(10.0) == 2
    assert clock.stage(11.0) is None
