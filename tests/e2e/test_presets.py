"""Every protocol preset end to end: its shipped scenario, real Locust processes, the reference server speaking it.

For each preset: the spine's invariants hold (one row per request Locust counted, unique ids, each sample once),
every reply was understood, and every recorded prediction equals the model's offline prediction for that sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loadgrade.servers.models import train_models
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

PRESET_SCENARIOS = {
    "open-inference-v2": "digits-oip.yaml",
    "tf-serving": "digits-tf-serving.yaml",
    "torchserve": "digits-torchserve.yaml",
    "openai-chat": "digits-openai-chat.yaml",
    "openai-completions": "digits-openai-completions.yaml",
    "python": "digits-python.yaml",
}


@pytest.fixture(scope="module")
def offline() -> dict[str, int]:
    """The primary digits model's prediction for every test sample, by sample id."""
    truth = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str}).set_index("id")
    predicted = train_models().digits.primary.predict(truth.filter(like="px").to_numpy())
    return dict(zip(truth.index, predicted.tolist(), strict=True))


@pytest.mark.parametrize("kind", sorted(PRESET_SCENARIOS))
def test_preset_predictions_equal_offline_predict(
    tmp_path: Path, reference_server: str, offline: dict[str, int], kind: str
) -> None:
    # the shipped file itself (the python preset finds its functions next to it), pointed at the test server
    scenario = ROOT / "scenarios" / PRESET_SCENARIOS[kind]
    run = run_locust(scenario, tmp_path / "run", host=reference_server)
    records = assert_spine_invariants(run)
    assert run.info["scenario"]["protocol"]["kind"] == kind
    assert sorted(records["sample_id"]) == sorted(offline)
    assert records["ok"].all(), records.loc[~records["ok"], ["error_kind", "error"]].head().to_string()
    got = {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)}
    # the OpenAI-style presets answer text ("7"); the others the class itself
    assert {sid: int(p) for sid, p in got.items()} == offline
    if kind.startswith("openai"):
        assert all(isinstance(p, str) for p in got.values())
        # the server reports usage: its token counts are recorded with every answer
        assert (records["prompt_tokens"].astype(int) > 0).all()
        assert (records["completion_tokens"].astype(int) > 0).all()
    else:
        assert (records["prompt_tokens"] == "").all()
    if kind == "python":  # run.json spells the options as the scenario file does
        assert run.info["scenario"]["protocol"] == {
            "kind": "python",
            "build": "digits_hooks:build_request",
            "extract": "digits_hooks:find_prediction",
        }


def test_oip_with_two_worker_processes(tmp_path: Path, reference_server: str, offline: dict[str, int]) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        ROOT / "scenarios" / "digits-oip.yaml",
        protocol={"version": "1", "datatype": "FP32"},
    )
    run = run_locust(scenario, tmp_path / "run", mode="processes", host=reference_server)
    records = assert_spine_invariants(run)
    assert sorted(records["worker_index"].unique().tolist()) == [0, 1]
    assert records["ok"].all()
    # FP32 is a datatype on the wire; the reference server computes in float64, and the digits' pixels are whole
    # numbers, exact in either
    assert {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)} == offline


def test_wrong_model_name_becomes_http_error_rows(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml", ROOT / "scenarios" / "digits-tf-serving.yaml", protocol={"model_name": "no-such-model"}
    )
    run = run_locust(scenario, tmp_path / "run", host=reference_server, extra=("--skip-preflight",))
    records = assert_spine_invariants(run)
    assert set(records["error_kind"]) == {"http"}
    assert (records["status_code"] == 404).all()
    assert records["error"].str.contains("unknown model 'no-such-model'").all()


def test_answer_regex_without_a_match_is_a_wrong_answer_not_an_error(tmp_path: Path, reference_server: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        ROOT / "scenarios" / "digits-openai-chat.yaml",
        protocol={"answer_regex": "the number is (\\d)"},
    )
    run = run_locust(scenario, tmp_path / "run", host=reference_server, extra=("--skip-preflight",))
    records = assert_spine_invariants(run)
    assert records["ok"].all()
    assert set(records["prediction"]) == {"null"}
