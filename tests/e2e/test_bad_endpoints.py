"""A misbehaving endpoint yields error rows of the right kind, and the run still ends normally with every row."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import trustme

from tests.support.fault_server import MIXED, MIXED_ERROR_KIND, expected_prediction, fault_server, refused_url
from tests.support.locust_run import assert_spine_invariants, run_locust, write_scenario

N_SAMPLES = 60


@pytest.fixture(scope="module")
def faults() -> Iterator[str]:
    with fault_server() as url:
        yield url


def scenario(tmp_path: Path, base_url: str, path: str, *, users: int = 4, verify_tls: bool = True) -> Path:
    data = pd.DataFrame(
        {
            "id": [f"s{i:03d}" for i in range(N_SAMPLES)],
            "a": [i % len(MIXED) for i in range(N_SAMPLES)],
            "b": [i for i in range(N_SAMPLES)],
        }
    )
    data["label"] = [expected_prediction([a, b]) for a, b in zip(data["a"], data["b"], strict=True)]
    data.to_csv(tmp_path / "data.csv", index=False)
    return write_scenario(
        tmp_path / "s.yaml",
        {
            "endpoint": {"base_url": base_url, "path": path, "timeout_s": 0.5, "verify_tls": verify_tls},
            "protocol": {"kind": "flask-predict"},
            "dataset": {"path": str(tmp_path / "data.csv"), "input_columns": ["a", "b"], "passes": 1},
            "load": {"users": users, "run_time_s": 60},
        },
    )


@pytest.mark.parametrize("mode", ["standalone", "processes"])
def test_every_failure_becomes_a_row_of_its_kind(tmp_path: Path, faults: str, mode: str) -> None:
    run = run_locust(
        scenario(tmp_path, faults, "/mixed"),
        tmp_path / "run",
        mode=mode,  # type: ignore[arg-type]
        extra=("--skip-preflight",),  # every kind of failure on purpose: the pre-flight would stop the run
    )
    records = assert_spine_invariants(run)
    assert sorted(records["sample_id"]) == [f"s{i:03d}" for i in range(N_SAMPLES)]
    behaviour = records["sample_id"].str[1:].astype(int) % len(MIXED)
    expected_kind = behaviour.map(lambda b: MIXED_ERROR_KIND[MIXED[b]])
    assert records["error_kind"].tolist() == expected_kind.tolist()
    assert (records["ok"] == (expected_kind == "")).all()
    assert run.info["locust_failures"] == int((expected_kind != "").sum())
    by_kind = records.set_index("error_kind")
    assert (by_kind.loc["http", "status_code"] == 500).all()
    assert (by_kind.loc["timeout", "latency_ms"] >= 450).all()
    assert (records.loc[~records["ok"], "prediction"] == "").all()
    assert records.loc[records["error_kind"] == "extract", "error"].str.contains("output_data").all()
    assert records.loc[records["error_kind"] == "decode", "error"].str.contains("not JSON").all()
    good = records[records["ok"]]
    assert (
        good["prediction"].astype(int)
        == good["sample_id"].str[1:].astype(int).map(lambda i: expected_prediction([i % len(MIXED), i]))
    ).all()


def test_a_dead_endpoint_stops_the_run_before_any_load(tmp_path: Path) -> None:
    url = refused_url()
    run = run_locust(scenario(tmp_path, url, "/ok", users=2), tmp_path / "run")
    assert run.returncode == 2, run.output[-3000:]
    lines = [line for line in run.output.splitlines() if line.startswith("loadgrade: pre-flight failed")]
    assert len(lines) == 1, run.output[-3000:]
    assert url in lines[0]
    assert "--skip-preflight" in lines[0]
    assert not (tmp_path / "run" / "records.csv").exists()
    assert "Traceback" not in run.output


def test_a_wrong_path_stops_the_run_before_any_load_with_the_reply(tmp_path: Path, faults: str) -> None:
    run = run_locust(scenario(tmp_path, faults, "/no-such-path", users=2), tmp_path / "run", mode="processes")
    assert run.returncode == 2, run.output[-3000:]
    line = next(line for line in run.output.splitlines() if line.startswith("loadgrade: pre-flight failed"))
    assert "HTTP 404" in line
    assert "/no-such-path" in line
    assert not (tmp_path / "run" / "records.csv").exists()
    assert "Traceback" not in run.output


def test_connection_refused_rows_and_a_normal_end(tmp_path: Path) -> None:
    run = run_locust(scenario(tmp_path, refused_url(), "/ok", users=2), tmp_path / "run", extra=("--skip-preflight",))
    records = assert_spine_invariants(run)
    assert len(records) == N_SAMPLES
    assert set(records["error_kind"]) == {"connection"}
    assert (records["status_code"] == 0).all()
    assert records["error"].str.contains("refused", case=False).all()


@pytest.mark.parametrize("verify_tls", [False, True])
def test_a_self_signed_https_endpoint_is_answered_only_without_verification(tmp_path: Path, verify_tls: bool) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with fault_server(tls=context) as url:
        tls_scenario = scenario(tmp_path, url, "/ok", users=2, verify_tls=verify_tls)
        run = run_locust(tls_scenario, tmp_path / "run", extra=("--skip-preflight",))
    records = assert_spine_invariants(run)
    assert len(records) == N_SAMPLES
    if verify_tls:
        assert set(records["error_kind"]) == {"connection"}
        assert records["error"].str.contains("CERTIFICATE_VERIFY_FAILED").all()
    else:
        assert records["ok"].all()
        assert (records["prediction"].astype(int) == records["sample_id"].map(_label_of(tmp_path))).all()


def _label_of(tmp_path: Path) -> dict[str, int]:
    data = pd.read_csv(tmp_path / "data.csv")
    return dict(zip(data["id"], data["label"], strict=True))
