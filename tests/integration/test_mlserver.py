"""MLServer (Seldon) serving a joblib scikit-learn model over the Open Inference Protocol, driven by real Locust.

Every recorded prediction must equal the model's offline ``predict`` for its sample: at low load, and with
MLServer's adaptive batching on, where requests from several users are merged into one ``predict`` call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.model_servers import DigitsModel, mlserver
from tests.support.locust_run import ROOT, assert_spine_invariants, run_locust, write_scenario

SCENARIO = ROOT / "scenarios" / "digits-oip.yaml"


@pytest.mark.parametrize(
    ("users", "batching"),
    [
        pytest.param(1, {}, id="low-load"),
        pytest.param(8, {"max_batch_size": 8, "max_batch_time": 0.01}, id="adaptive-batching"),
    ],
)
def test_predictions_equal_offline_predict(
    tmp_path: Path, digits_model: DigitsModel, users: int, batching: dict[str, float]
) -> None:
    scenario = write_scenario(tmp_path / "s.yaml", SCENARIO, load={"users": users, "run_time_s": 90, "_replace": True})
    with mlserver(digits_model, tmp_path / "mlserver", **batching) as url:  # type: ignore[arg-type]
        run = run_locust(scenario, tmp_path / "run", host=url)
    records = assert_spine_invariants(run)
    assert records["ok"].all(), records.loc[~records["ok"], ["error_kind", "error"]].head().to_string()
    assert sorted(records["sample_id"]) == sorted(digits_model.offline)
    got = {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)}
    assert got == digits_model.offline
