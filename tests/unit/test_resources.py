"""Resource sampling: Prometheus text to tidy rows with counter rates; every broken source is a warning only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from loadgrade.resources import RESOURCE_COLUMNS, ResourceSampler, ResourcesSpec, parse_prometheus

TEXT = """\
# HELP served_total Requests.
# TYPE served_total counter
served_total{model="a"} 10
served_created{model="a"} 1.7e9
# TYPE queue gauge
queue 3
# TYPE other gauge
other 1
"""


def read(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    assert tuple(frame.columns) == RESOURCE_COLUMNS
    return frame


def test_parse_keeps_chosen_families_and_drops_created_timestamps() -> None:
    assert parse_prometheus(TEXT, ["served", "queue"]) == [
        ('served_total{model="a"}', 10.0, True),
        ("queue", 3.0, False),
    ]
    assert len(parse_prometheus(TEXT)) == 3


def test_counters_become_rates(tmp_path: Path) -> None:
    bodies = iter([TEXT, TEXT.replace('served_total{model="a"} 10', 'served_total{model="a"} 30')])
    sampler = ResourceSampler(
        ResourcesSpec(metrics_url="http://127.0.0.1:1/metrics"), tmp_path / "r.csv", fetch=lambda url: next(bodies)
    )
    sampler.sample(t=100.0)
    sampler.sample(t=102.0)
    sampler.close()
    frame = read(tmp_path / "r.csv")
    rate = frame[frame["metric"] == 'served_total{model="a"}:rate']
    assert rate[["t", "value"]].to_numpy().tolist() == [[102.0, 10.0]]
    assert frame[frame["metric"] == "queue"]["value"].tolist() == [3.0, 3.0]


def test_unreachable_and_non_prometheus_sources_warn_and_leave_no_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(url: str) -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    unreachable = ResourceSampler(
        ResourcesSpec(metrics_url="http://127.0.0.1:1/metrics"), tmp_path / "a.csv", fetch=refuse
    )
    not_prometheus = ResourceSampler(
        ResourcesSpec(metrics_url="http://127.0.0.1:1/metrics"),
        tmp_path / "b.csv",
        fetch=lambda url: '{"status": "ready"}',
    )
    for sampler in (unreachable, not_prometheus):
        sampler.sample()
        sampler.sample()
        sampler.close()
        assert sampler.rows_written == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # once per problem, not once per sample
    assert "cannot read http://127.0.0.1:1/metrics" in warnings[0]
    assert "did not answer Prometheus text" in warnings[1]


def test_a_process_that_does_not_exist_or_exits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = ResourceSampler(ResourcesSpec(pid=2**22 + 12345), tmp_path / "a.csv")
    missing.sample()
    missing.close()
    assert missing.rows_written == 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sampler = ResourceSampler(ResourcesSpec(pid=child.pid), tmp_path / "b.csv")
        sampler.sample()
        assert sampler.rows_written == 3  # cpu_percent, rss_bytes, processes
        child.kill()
        child.wait(10)
        sampler.sample()
        sampler.sample()
        sampler.close()
    finally:
        if child.poll() is None:
            child.kill()
    assert read(tmp_path / "b.csv")["metric"].tolist() == ["cpu_percent", "rss_bytes", "processes"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "found no server process for pid" in messages
    assert f"the server process {child.pid} exited" in messages


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "expected 'metrics_url' and/or one of 'pid', 'process', 'port'"),
        ({"pid": 1, "port": 80}, "at most one of"),
        ({"metrics_url": "localhost:9090"}, "http:// or https://"),
    ],
)
def test_bad_resources_sections(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResourcesSpec.model_validate(spec)
