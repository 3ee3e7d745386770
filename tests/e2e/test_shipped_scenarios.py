"""The shipped scenarios: every one validates, and each example of a load kind does what its header says.

Each example runs here as a copy with every duration of its ``load:`` section divided by a factor (the shape, the
users and the rates as shipped), against the reference server started with the command line its header gives.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, LocustRun, assert_spine_invariants, run_locust, write_scenario

SCENARIOS = ROOT / "scenarios"
EXAMPLES = {  # load kind -> its shipped example
    "rate": "digits-rate.yaml",
    "search": "digits-search.yaml",
    "ramp": "digits-ramp.yaml",
    "spike": "digits-spike.yaml",
    "soak": "digits-soak.yaml",
}
SERVER_COMMAND = re.compile(r"^#\s+python -m loadgrade\.servers\.reference (.*)$", re.MULTILINE)


def server_args(path: Path) -> list[str]:
    """The reference server's options from the scenario's header, without its port."""
    match = SERVER_COMMAND.search(path.read_text())
    assert match is not None, f"{path.name} has no reference server command line in its header"
    args = shlex.split(match.group(1))
    port = args.index("--port")
    return args[:port] + args[port + 2 :]


@pytest.fixture(scope="module")
def example_server() -> Iterator[str]:
    """One reference server for every example: their headers start it the same way."""
    (args,) = {tuple(server_args(SCENARIOS / name)) for name in EXAMPLES.values()}
    with running_server(*args) as url:
        yield url


def brief_copy(path: Path, out: Path, factor: float) -> Path:
    """The scenario with every duration (a key ending in ``_s``) of its ``load:`` section divided by ``factor``."""

    def scaled(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v / factor if k.endswith("_s") else scaled(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scaled(v) for v in value]
        return value

    load = yaml.safe_load(path.read_text())["load"]
    return write_scenario(out / path.name, path, load={**scaled(load), "_replace": True})


def run_example(kind: str, tmp_path: Path, url: str, factor: float, *extra: str) -> tuple[LocustRun, pd.DataFrame]:
    scenario = brief_copy(SCENARIOS / EXAMPLES[kind], tmp_path, factor)
    run = run_locust(scenario, tmp_path / "run", host=url, extra=extra)
    assert "loadgrade: loadgrade:" not in run.output
    return run, assert_spine_invariants(run)


def per_stage(records: pd.DataFrame) -> pd.DataFrame:
    """Per stage: its target users and rate, requests, all-request accuracy and the share shed (HTTP 503)."""
    records = records.assign(
        correct=records["ok"] & (records["prediction"] == records["label"].astype(str)),
        shed=records["status_code"] == 503,
    )
    return records.groupby("stage").agg(
        users=("target_users", "first"),
        rate=("target_rps", "first"),
        n=("request_id", "size"),
        accuracy=("correct", "mean"),
        shed=("shed", "mean"),
    )


@pytest.fixture(scope="module")
def labels() -> pd.Series:
    truth = pd.read_csv(SCENARIOS / "data" / "digits_test.csv", dtype={"id": str}, usecols=["id", "label"])
    return truth.set_index("id")["label"]


def with_labels(records: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    return records.assign(label=records["sample_id"].map(labels))


def test_every_shipped_scenario_validates() -> None:
    paths = sorted(SCENARIOS.glob("*.yaml"))
    assert {name for name in EXAMPLES.values()} <= {path.name for path in paths}
    result = subprocess.run(
        [sys.executable, "-m", "loadgrade", "validate", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split(": ok: ")[0] for line in result.stdout.splitlines()] == list(map(str, paths))
    for kind, name in EXAMPLES.items():
        text = (SCENARIOS / name).read_text()
        assert yaml.safe_load(text)["load"]["kind"] == kind
        assert f"locust -f locustfiles/replay.py --scenario scenarios/{name} --headless" in text


def test_rate_example_offers_its_rates_whatever_the_users(
    tmp_path: Path, example_server: str, labels: pd.Series
) -> None:
    run, records = run_example("rate", tmp_path, example_server, 10)
    stages = per_stage(with_labels(records, labels))
    assert stages["rate"].tolist() == [100, 200, 300, 400]
    assert (stages["users"] == 40).all()  # the cap, the same at every rate
    first_due = records.groupby("stage")["t_scheduled"].min()
    for stage in run.info["stages"]:
        # from the first arrival: the first stage spends its first few tenths of a second starting 40 users
        span = stage["t_end"] - max(stage["t_start"], first_due[stage["index"]])
        achieved = stages.loc[stage["index"], "n"] / span
        assert achieved == pytest.approx(stage["target_rps"], rel=0.15), (stage, achieved)
    assert first_due[0] - run.info["stages"][0]["t_start"] < 1.0
    # about 2 requests in flight at 100/s, 8 at 400/s: the cheap model answers most of the last stage
    assert stages["accuracy"].iloc[0] > 0.9
    assert stages["accuracy"].iloc[-1] < stages["accuracy"].iloc[0] - 0.1


def test_search_example_finds_the_servers_capacity(tmp_path: Path, example_server: str) -> None:
    run, _ = run_example("search", tmp_path, example_server, 10)
    capacity = run.info["capacity"]
    assert (capacity["highest_passing"], capacity["lowest_failing"]) == (6, 7), capacity
    assert [level["value"] for level in capacity["levels"]] == [2, 4, 6, 8, 7]
    assert "the highest users meeting every SLO is 6; 7 breaks" in run.output


def test_ramp_example_raises_the_users_stage_by_stage(tmp_path: Path, example_server: str, labels: pd.Series) -> None:
    _, records = run_example("ramp", tmp_path, example_server, 20)
    stages = per_stage(with_labels(records, labels))
    assert stages["users"].tolist() == [2, 4, 6, 8, 10, 12, 14]
    held = records.groupby("stage")["users_active"].median()
    assert held.is_monotonic_increasing
    assert held.iloc[-1] == 14
    # the knee: the primary model up to 6 users, the cheap one answers most requests at 14
    assert (stages["accuracy"].iloc[:3] > 0.9).all()
    assert stages["accuracy"].iloc[-1] < stages["accuracy"].iloc[0] - 0.1


def test_spike_example_goes_up_then_down_and_recovers(tmp_path: Path, example_server: str, labels: pd.Series) -> None:
    run, records = run_example("spike", tmp_path, example_server, 15)
    stages = per_stage(with_labels(records, labels))
    assert stages["users"].tolist() == [4, 16, 4]
    base, spike, after = stages.itertuples()
    assert spike.shed > 0.02
    assert base.shed == after.shed == 0
    assert spike.accuracy < base.accuracy - 0.1  # the cheap model, and lost answers
    assert after.accuracy == pytest.approx(base.accuracy, abs=0.03)  # back at once
    quality = [line for line in run.output.splitlines() if re.match(r"loadgrade: \[\d\d:\d\d\] stage \d ", line)]
    ended = [line for line in quality if ", so far" not in line]
    assert [line.split(" (")[0].split("] ")[1] for line in ended] == ["stage 0", "stage 1", "stage 2"]
    assert "DEGRADED" in ended[1]
    assert "DEGRADED" not in ended[2]


def test_soak_example_holds_its_users_window_by_window(tmp_path: Path, example_server: str) -> None:
    # 10-minute soak in 10 s; --quality-every as a soak user would see it, one line in the middle of each window
    run, records = run_example("soak", tmp_path, example_server, 60, "--quality-every", "0.5")
    assert [stage["target_users"] for stage in run.info["stages"]] == [6] * 10
    assert records["stage"].nunique() == 10
    assert (records.groupby("stage")["users_active"].median() == 6).all()
    summary = next(line for line in run.output.splitlines() if "] over the test (10 levels)" in line)
    assert "DEGRADED" not in summary  # the reference server does not drift, and 6 users never degrade it
    assert re.search(r"\] stage \d \(6 users\), so far: ", run.output)
