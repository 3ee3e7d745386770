"""Several samples per request (open-inference-v2 ``batch_size``): one record per sample, one Locust request each."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from loadgrade.servers.models import train_models
from tests.support.locust_run import ROOT, run_locust, write_scenario

OIP = ROOT / "scenarios" / "digits-oip.yaml"


@pytest.mark.parametrize("mode", ["standalone", "processes"])
def test_batched_requests_record_every_sample_once(tmp_path: Path, reference_server: str, mode: str) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        OIP,
        protocol={"batch_size": 8},
        dataset={"passes": 1},
        load={"kind": "users", "users": 3, "run_time_s": 60, "_replace": True},
    )
    run = run_locust(scenario, tmp_path / "run", mode=mode, host=reference_server)  # type: ignore[arg-type]
    assert run.returncode == 0, run.output[-3000:]
    records, info = run.records, run.info
    truth = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str}).set_index("id")
    assert sorted(records["sample_id"]) == sorted(truth.index)  # each sample exactly once in the pass
    assert info["records_written"] == len(records) == len(truth)
    # Locust counts requests: one per batch, and so does run.json
    requests = records["request_id"].str.rsplit(".", n=1).str[0]
    assert info["requests_recorded"] == info["locust_requests"] == run.locust_json_requests == requests.nunique()
    assert requests.value_counts().max() == 8
    assert requests.nunique() < len(records) / 4  # most requests carried a full batch
    # all samples of a request share its send time and latency
    spread = records.groupby(requests)[["t_sent", "latency_ms"]].agg(lambda values: values.max() - values.min())
    assert (spread == 0).all().all()
    assert records["ok"].all()
    model = train_models().digits.primary
    offline = dict(zip(truth.index, model.predict(truth.filter(like="px").to_numpy()).tolist(), strict=True))
    assert {sid: json.loads(p) for sid, p in zip(records["sample_id"], records["prediction"], strict=True)} == offline


def test_batch_size_with_a_fixed_shape_is_a_scenario_error(tmp_path: Path) -> None:
    from loadgrade.errors import ScenarioError
    from loadgrade.scenario import load_scenario

    scenario = write_scenario(tmp_path / "s.yaml", OIP, protocol={"batch_size": 4, "shape": [1, 64]})
    with pytest.raises(ScenarioError, match="'batch_size' stacks samples along a first dimension"):
        load_scenario(scenario)
