"""Streamed LLM replies end to end: real Locust processes, the reference server streaming as an LLM server does.

Below the server's cut-short threshold every streamed answer equals the model's offline prediction, and each record
carries token latencies that agree with each other; above it, the cut-short replies are recorded as such.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from loadgrade.servers.models import train_models
from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

SCENARIOS = {"openai-chat": "digits-openai-chat.yaml", "openai-completions": "digits-openai-completions.yaml"}


@pytest.fixture(scope="module")
def offline() -> dict[str, int]:
    truth = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str}).set_index("id")
    predicted = train_models().digits.primary.predict(truth.filter(like="px").to_numpy())
    return dict(zip(truth.index, predicted.tolist(), strict=True))


def numbers(records: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(records[column]).to_numpy(dtype=float)


@pytest.mark.parametrize("kind", sorted(SCENARIOS))
def test_streamed_answers_equal_offline_predict_with_consistent_token_latencies(
    tmp_path: Path, reference_server: str, offline: dict[str, int], kind: str
) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml", ROOT / "scenarios" / SCENARIOS[kind], protocol={"stream": True}, load={"users": 4}
    )
    run = run_locust(scenario, tmp_path / "run", host=reference_server)
    records = assert_spine_invariants(run)
    assert records["ok"].all(), records.loc[~records["ok"], ["error_kind", "error"]].head().to_string()
    got = {sid: int(json.loads(p)) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)}
    assert got == offline
    ttft, e2e = numbers(records, "ttft_ms"), numbers(records, "latency_ms")
    tokens, itl, tpot = numbers(records, "output_tokens"), numbers(records, "itl_mean_ms"), numbers(records, "tpot_ms")
    assert (ttft > 0).all()
    assert (ttft <= e2e).all()
    assert (tokens >= 2).all()
    # the gaps between tokens add up to the time from the first token to the last, which ends before the stream
    assert (itl * (tokens - 1) <= e2e - ttft + 1.0).all()
    assert np.allclose(tpot, (e2e - ttft) / (tokens - 1), atol=0.01)
    assert set(records["finish_reason"]) == {"stop"}
    assert records["reply"].str.contains(r"\d").all()


def header_server_args(path: Path) -> list[str]:
    """The reference server's options from the scenario's header (a command line continued with ``\\``)."""
    lines = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("python -m loadgrade.servers.reference"))
    command = ""
    for line in lines[start:]:
        command += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            break
    args = shlex.split(command)[3:]
    port = args.index("--port")
    return args[:port] + args[port + 2 :]


def test_shipped_streaming_scenario_shows_token_latencies_growing_and_replies_cut_short(tmp_path: Path) -> None:
    shipped = ROOT / "scenarios" / "digits-openai-stream.yaml"
    steps = yaml.safe_load(shipped.read_text())["load"]["steps"]
    scenario = write_scenario(
        tmp_path / "s.yaml", shipped, load={"steps": [{**step, "duration_s": 5} for step in steps]}
    )
    with running_server(*header_server_args(shipped)) as url:
        run = run_locust(scenario, tmp_path / "run", mode="processes", host=url)
    records = assert_spine_invariants(run)
    by_users = records.assign(users=pd.to_numeric(records["target_users"])).groupby("users")
    cut = by_users["error_kind"].apply(lambda kinds: float((kinds == "cut_short").mean()))
    assert cut[2] == cut[6] == 0.0
    assert cut[16] > 0.5
    reasons = records.loc[records["error_kind"] == "cut_short", "error"].str.extract(r"^cut short \((\w+)\)")[0]
    assert set(reasons) == {"empty", "length", "no_end"}
    out = tmp_path / "analysis"
    report = subprocess.run(
        [sys.executable, "-m", "loadgrade", "report", str(run.run_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert report.returncode == 0, report.stderr
    levels = pd.read_csv(out / "levels.csv")
    ttft = levels["p95_ttft_ms"].to_numpy()
    assert (ttft[1:] > ttft[:-1]).all(), ttft  # the server's TTFT grows with the requests in flight
    assert (
        levels["n_cut_short"].iloc[-1]
        == levels[["n_cut_short_empty", "n_cut_short_length", "n_cut_short_no_end"]].iloc[-1].sum()
    )
    assert "cut short" in report.stdout
    assert (out / "tokens.svg").exists()
    check = subprocess.run(
        [sys.executable, "-m", "loadgrade", "check", str(run.run_dir), "--rule", "p95_ttft_ms<=500"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert check.returncode == 0, check.stdout + check.stderr
