"""``run.json``: what a run was (scenario without secrets, versions, times, workers) and how many rows it kept."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import loadgrade
from loadgrade.recording import Stage
from loadgrade.scenario import Scenario


def iso_utc(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC with microseconds.

    >>> iso_utc(0.5)
    '1970-01-01T00:00:00.500000Z'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_info(
    scenario: Scenario,
    *,
    t_start: float,
    t_end: float | None,
    worker_count: int,
    locust_requests: int | None,
    locust_failures: int | None,
    records_written: int,
    stages: list[Stage],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``run.json``; ``t_end`` and the counts are None while the run is going."""
    return {
        "loadgrade_version": loadgrade.__version__,
        "locust_version": _version("locust"),
        "python_version": platform.python_version(),
        "scenario_path": str(scenario.source) if scenario.source else None,
        "scenario": scenario.redacted(),
        # the URL requests went to, as the scenario wrote it (${NAME} references unexpanded, no password)
        "endpoint_url": scenario.base_url_as_written + scenario.request_path,
        "started_at": iso_utc(t_start),
        "ended_at": iso_utc(t_end) if t_end is not None else None,
        "t_start": t_start,
        "t_end": t_end,
        "worker_count": worker_count,
        "locust_requests": locust_requests,
        "locust_failures": locust_failures,
        "records_written": records_written,
        "stages": [asdict(stage) for stage in stages],
        **(extra or {}),
    }


def write_run_info(path: Path, info: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def default_run_dir(scenario: Scenario, *, now: float | None = None, root: Path = Path("runs")) -> Path:
    """``runs/<scenario>-<UTC timestamp>``, or the scenario's ``output.dir``."""
    if scenario.output.dir is not None:
        return scenario.output.dir
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{scenario.name}-{stamp}"
