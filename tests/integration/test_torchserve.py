"""TorchServe serving a joblib scikit-learn model through a custom handler, driven by real Locust.

Every recorded prediction must equal the model's offline ``predict`` for its sample: one request per handler call,
and with TorchServe's server-side batching (``batchSize``/``maxBatchDelay``) merging several users' requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.model_servers import DigitsModel, torchserve
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

SCENARIO = ROOT / "scenarios" / "digits-torchserve.yaml"


@pytest.mark.parametrize(
    ("users", "batching"),
    [
        pytest.param(1, {}, id="low-load"),
        pytest.param(8, {"batch_size": 8, "max_batch_delay_ms": 10}, id="server-batching"),
    ],
)
def test_predictions_equal_offline_predict(
    tmp_path: Path, digits_model: DigitsModel, users: int, batching: dict[str, int]
) -> None:
    scenario = write_scenario(tmp_path / "s.yaml", SCENARIO, load={"users": users, "run_time_s": 90, "_replace": True})
    with torchserve(digits_model, tmp_path / "torchserve", **batching) as url:
        run = run_locust(scenario, tmp_path / "run", host=url)
    sizes = [int(n) for n in (tmp_path / "torchserve" / "batch_sizes.txt").read_text().split()]
    assert sum(sizes) >= len(digits_model.offline) + 1  # every sample, and the start-up probe(s)
    if batching:
        assert max(sizes) > 1, "TorchServe never merged requests: the batching path was not exercised"
    else:
        assert set(sizes) == {1}
    records = assert_spine_invariants(run)
    assert records["ok"].all(), records.loc[~records["ok"], ["error_kind", "error"]].head().to_string()
    assert sorted(records["sample_id"]) == sorted(digits_model.offline)
    got = {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)}
    assert got == digits_model.offline
