"""resources.csv joined with load levels: means per level, samples outside every level left out, efficiency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.resources import correct_per_cpu_second, read_resources, resources_by_level


def test_means_per_level_match_a_direct_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(-5, 35, 400))
    frame = pd.concat(
        [
            pd.DataFrame({"t": t, "source": "process", "metric": "cpu_percent", "value": rng.uniform(0, 200, t.size)}),
            pd.DataFrame({"t": t, "source": "metrics", "metric": "queue", "value": rng.integers(0, 9, t.size)}),
        ]
    )
    frame.to_csv(tmp_path / "resources.csv", index=False)
    bounds = pd.DataFrame({"level": [0, 1, 2], "t_start": [0.0, 10.0, 20.0], "t_end": [10.0, 20.0, 30.0]})
    table = resources_by_level(read_resources(tmp_path), bounds)
    for level, lo, hi in bounds.itertuples(index=False):
        inside = frame[(frame["t"] >= lo) & (frame["t"] < hi)]
        row = table[table["level"] == level].iloc[0]
        assert row["resource_samples"] == len(inside)
        for metric in ("cpu_percent", "queue"):
            assert row[metric] == pytest.approx(inside.loc[inside["metric"] == metric, "value"].mean(), rel=1e-12)


def test_a_level_without_samples_has_none() -> None:
    samples = pd.DataFrame({"t": [1.0], "source": "process", "metric": "rss_bytes", "value": [5e7]})
    bounds = pd.DataFrame({"level": [0, 1], "t_start": [0.0, 10.0], "t_end": [10.0, 20.0]})
    table = resources_by_level(samples, bounds)
    assert table["resource_samples"].tolist() == [1, 0]
    assert np.isnan(table.loc[1, "rss_bytes"])


def test_no_file_means_no_resources_and_a_broken_file_is_an_error(tmp_path: Path) -> None:
    assert read_resources(tmp_path) is None
    (tmp_path / "resources.csv").write_text("t,metric,value\n1,cpu_percent,3\n")
    with pytest.raises(AnalysisInputError, match="has no column 'source'"):
        read_resources(tmp_path)


def test_correct_answers_per_cpu_second() -> None:
    levels = pd.DataFrame({"n_correct": [100, 100, 5], "cpu_percent": [25.0, 0.0, np.nan], "duration_s": [8.0] * 3})
    assert correct_per_cpu_second(levels).tolist()[0] == 50.0
    assert np.isnan(correct_per_cpu_second(levels).tolist()[1:]).all()
