"""Synthetic run directories: records.csv + run.json + truth.csv built from seeded numpy data."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

RECORD_COLUMNS = [
    "request_id",
    "sample_id",
    "worker_index",
    "user_id",
    "t_sent",
    "latency_ms",
    "status_code",
    "ok",
    "error_kind",
    "error",
    "prediction",
    "response_bytes",
    "users_active",
    "pass",
    "stage",
    "target_users",
]
T0 = 1795000000.0
ERROR_KINDS = ("http", "timeout", "connection", "decode", "extract")


@dataclass
class Level:
    users: int
    n: int
    accuracy: float = 0.9
    error_rate: float = 0.0
    latency_ms: float = 50.0
    duration: float = 10.0


def synth_run(
    levels: Sequence[Level],
    *,
    seed: int = 0,
    n_samples: int = 200,
    n_classes: int = 3,
    t0: float = T0,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Records, truth and stages with a known accuracy per level.

    Samples are sent in order, so every sample is answered at every level once
    ``n >= n_samples`` (pairs exist for McNemar).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_samples)
    truth = pd.DataFrame({"id": [f"s{i:05d}" for i in range(n_samples)], "label": labels})
    frames = []
    stages = []
    start = t0
    for index, level in enumerate(levels):
        sample = np.arange(level.n) % n_samples
        ok = rng.random(level.n) >= level.error_rate
        right = rng.random(level.n) < level.accuracy
        true = labels[sample]
        wrong = (true + rng.integers(1, max(n_classes, 2), size=level.n)) % n_classes
        pred = np.where(right, true, wrong)
        t_sent = np.sort(start + rng.random(level.n) * level.duration)
        latency = rng.exponential(level.latency_ms, size=level.n) + 1.0
        kinds = rng.choice(ERROR_KINDS, size=level.n)
        frames.append(
            pd.DataFrame(
                {
                    "request_id": [f"r{index}-{i}" for i in range(level.n)],
                    "sample_id": truth["id"].to_numpy()[sample],
                    "worker_index": rng.integers(0, 2, size=level.n),
                    "user_id": rng.integers(0, level.users, size=level.n),
                    "t_sent": t_sent,
                    "latency_ms": latency,
                    "status_code": np.where(ok, 200, np.where(kinds == "http", 503, 0)),
                    "ok": ok,
                    "error_kind": np.where(ok, "", kinds),
                    "error": np.where(ok, "", "boom"),
                    "prediction": np.where(ok, pred.astype(str), ""),
                    "response_bytes": np.where(ok, 20, 0),
                    "users_active": np.full(level.n, level.users),
                    "pass": 1 + np.arange(level.n) // n_samples,
                    "stage": index,
                    "target_users": level.users,
                }
            )
        )
        stages.append(
            {
                "index": index,
                "users": level.users,
                "spawn_rate": 10.0,
                "t_start": start,
                "t_end": start + level.duration,
            }
        )
        start += level.duration
    records = pd.concat(frames, ignore_index=True)
    return records, truth, stages


def write_run(
    run_dir: Path,
    records: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    stages: list[dict[str, Any]] | None = None,
    slo: dict[str, Any] | None = None,
    task: str | None = None,
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    truth_path = run_dir.parent / f"{run_dir.name}_truth.csv"
    truth.to_csv(truth_path, index=False)
    out = records.copy()
    out["t_sent"] = out["t_sent"].map(lambda t: f"{t:.6f}")
    out.to_csv(run_dir / "records.csv", index=False)
    info = {
        "loadgrade_version": "0.1.0",
        "scenario_path": str(run_dir.parent / "scenario.yaml"),
        "scenario": {
            "name": "synthetic",
            "dataset": {
                "path": str(truth_path),
                "format": "csv",
                "id_column": "id",
                "label_column": "label",
                "task": task,
            },
            "slo": slo,
        },
        "t_start": float(records["t_sent"].min()),
        "t_end": float((records["t_sent"] + records["latency_ms"] / 1000).max()),
        "worker_count": 2,
        "records_written": len(records),
        "stages": stages or [],
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=1))
    return run_dir


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Build a run directory under tmp_path from synthetic levels."""

    def build(
        levels: Sequence[Level] = (Level(2, 300, 0.95), Level(8, 300, 0.9), Level(32, 300, 0.6, error_rate=0.1)),
        *,
        name: str = "run",
        seed: int = 0,
        slo: dict[str, Any] | None = None,
        task: str | None = None,
        **kwargs: Any,
    ) -> Path:
        records, truth, stages = synth_run(levels, seed=seed, **kwargs)
        return write_run(tmp_path / name, records, truth, stages=stages, slo=slo, task=task)

    return build
