"""Charts a person reads at a glance: where quality breaks, what the requests became, the run they belong to.

The run here is built like the reference server's: quality falls from 8 users on, and at 16 users the server
sheds most requests with HTTP 503, answering the rest as badly as at 12. Every figure a chart draws is checked
against the level table it was drawn from.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis import analyse_run
from loadgrade.analysis.plots import (
    PNG_DPI,
    plot_accuracy,
    plot_errors,
    plot_over_time,
    plot_throughput,
    run_title,
    write_charts,
)
from loadgrade.analysis.report import RunAnalysis

LEVELS = (
    Level(2, 600, 0.97),
    Level(4, 600, 0.97),
    Level(8, 600, 0.80),
    Level(12, 600, 0.70),
    Level(16, 2000, 0.70, error_rate=0.7),
)


def _shedding_run(run_dir: Path, levels=LEVELS) -> Path:
    """A run whose only failures are HTTP 503 (shed), like a server refusing load."""
    records, truth, stages = synth_run(levels, seed=3)
    failed = ~records["ok"].to_numpy(dtype=bool)
    records.loc[failed, "error_kind"] = "http"
    records.loc[failed, "status_code"] = 503
    return write_run(run_dir, records, truth, stages=stages, slo={"latency_ms": 200})


@pytest.fixture(scope="module")
def shedding(tmp_path_factory) -> RunAnalysis:
    return analyse_run(_shedding_run(tmp_path_factory.mktemp("charts") / "shed-run"), progress=False)


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _marks(ax) -> dict[str, np.ndarray]:
    """The points of each labelled scatter of a chart, by label."""
    return {c.get_label(): c.get_offsets() for c in ax.collections if c.get_label() and c.get_offsets().size}


def _annotations(ax) -> dict[str, float]:
    return {t.get_text(): float(t.xy[0]) for t in ax.texts if hasattr(t, "xy")}


def test_accuracy_marks_where_quality_breaks_and_the_last_good_level(shedding):
    levels, knee = shedding.levels, shedding.summary.quality_knee
    assert knee is not None
    assert (knee.first_bad_load, knee.load) == (8.0, 4.0)
    ax = plot_accuracy(levels, knee=knee).axes[0]
    assert _annotations(ax) == {"breaks at 8 users": 8.0, "last good: 4 users": 4.0}
    # the same marks from the level table alone (a notebook's call without the knee)
    assert _annotations(plot_accuracy(levels).axes[0]) == {"breaks at 8 users": 8.0, "last good: 4 users": 4.0}


def test_each_accuracy_curve_carries_its_own_significance_marks(shedding):
    levels = shedding.levels.set_index("level")
    ax = plot_accuracy(shedding.levels, knee=shedding.summary.quality_knee).axes[0]
    marks = _marks(ax)
    over_all = marks["significantly worse (all requests)"]
    answered = marks["significantly worse (answered)"]
    degraded = levels[levels["degraded"]]
    # the marks sit on the curve over every request, down to its worst point (the level that sheds)
    assert over_all[:, 0].tolist() == degraded["users"].tolist() == [8.0, 12.0, 16.0]
    assert over_all[:, 1].tolist() == pytest.approx((100 * degraded["effective_accuracy"]).tolist())
    assert min(over_all[:, 1]) == pytest.approx(100 * levels["effective_accuracy"].min())
    answered_bad = levels[levels["answered_degraded"]]
    assert answered[:, 0].tolist() == answered_bad["users"].tolist()
    assert answered[:, 1].tolist() == pytest.approx((100 * answered_bad["accuracy"]).tolist())
    assert ax.get_legend().get_title().get_text() == "bands: 95 % confidence intervals"


def test_accuracy_curves_stay_apart_where_they_coincide(shedding):
    ax = plot_accuracy(shedding.levels).axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() != "_hover" and line.get_marker() in ("o", "s")]
    over_all, answered = lines
    assert (over_all.get_marker(), answered.get_marker()) == ("o", "s")
    assert over_all.get_linestyle() == "-"
    assert answered.get_linestyle() != "-"
    assert answered.get_markerfacecolor() == "none"  # an open square round the filled circle: both show
    bands = ax.collections[:2]
    assert bands[0].get_hatch() is None
    assert bands[1].get_hatch() == "////"


def test_accuracy_says_when_no_level_degrades(tmp_path):
    analysis = analyse_run(_shedding_run(tmp_path / "calm", LEVELS[:2]), progress=False)
    ax = plot_accuracy(analysis.levels, knee=analysis.summary.quality_knee).axes[0]
    assert list(_annotations(ax)) == ["no level significantly worse than baseline, up to 4 users"]


def test_throughput_splits_into_right_wrong_and_failed(shedding):
    levels = shedding.levels.sort_values("users")
    ax = plot_throughput(levels).axes[0]
    parts = {c.get_label(): np.array([p.get_height() for p in c]) for c in ax.containers}
    assert list(parts) == ["answered, right", "answered, wrong", "failed (error, timeout or shed)"]
    duration = levels["duration_s"].to_numpy()
    assert parts["failed (error, timeout or shed)"] == pytest.approx(levels["n_failed"].to_numpy() / duration)
    assert parts["answered, right"] == pytest.approx(levels["n_correct"].to_numpy() / duration)
    # the stack is the whole request rate: the 503s at the top level read as failures, not as capacity
    assert sum(parts.values()) == pytest.approx(levels["throughput_rps"].to_numpy())
    top = levels.iloc[-1]
    assert parts["failed (error, timeout or shed)"][-1] > parts["answered, right"][-1]
    assert f"{top['n_failed'] / top['n']:.0%} failed" in [t.get_text().split("\n")[-1] for t in ax.texts]


def test_throughput_of_a_regression_run_is_answered_and_failed():
    levels = pd.DataFrame(
        {"level": [0, 1], "users": [1.0, 4.0], "throughput_rps": [10.0, 40.0], "goodput_rps": [10.0, 20.0],
         "duration_s": 10.0, "n": [100, 400], "n_ok": [100, 200], "n_correct": 0, "n_wrong": 0,
         "n_failed": [0, 200], "accuracy": np.nan}
    )  # fmt: skip
    ax = plot_throughput(levels).axes[0]
    assert [c.get_label() for c in ax.containers] == ["answered", "failed (error, timeout or shed)"]


def test_errors_chart_names_only_the_kinds_that_occurred(shedding):
    levels = shedding.levels.sort_values("users")
    ax = plot_errors(levels).axes[0]
    assert _legend(ax) == ["shed (HTTP 429/503)"]
    (bars,) = ax.containers
    assert [p.get_height() for p in bars] == pytest.approx((100 * levels["error_rate_shed"]).tolist())


def test_over_time_draws_the_users_as_recorded_and_bins_within_stages(shedding):
    joined, levels = shedding.joined, shedding.levels
    fig = plot_over_time(joined, levels=levels, bin_s=5.0)
    accuracy_ax, load_ax, fail_ax, latency_ax = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "accuracy (%)",
        "active users",
        "failed (% of requests)",
        "latency (ms)",
    ]
    assert latency_ax.get_xlabel() == "time since the first stage started (s)"
    origin = levels["t_start"].min()
    corners = load_ax.get_lines()[0].get_xydata()
    first_sent = joined.groupby("level")["t_sent"].min().sort_index().to_numpy() - origin
    # each step up sits at the first request that recorded the new user count, not at a bin's middle
    assert corners[::2, 0] == pytest.approx(first_sent)
    assert corners[::2, 1].tolist() == [2.0, 4.0, 8.0, 12.0, 16.0]
    boundaries = np.r_[np.sort(levels["t_start"].to_numpy()) - origin, np.inf]
    for bar in fail_ax.patches:
        stage = np.searchsorted(boundaries, bar.get_x() + 1e-9, side="right") - 1
        assert bar.get_x() + bar.get_width() <= boundaries[stage + 1] + 1e-6  # no bin spans two stages
    shed = [p.get_height() for p in fail_ax.containers[0]]
    assert max(shed) == pytest.approx(70, abs=8)
    assert _legend(fail_ax) == ["shed (HTTP 429/503)"]
    effective, answered = (line.get_ydata() for line in accuracy_ax.get_lines()[:2])
    assert np.nanmin(effective) < 35 < np.nanmin(answered)  # shedding shows over every request, not in the answers


def test_write_charts_writes_svg_and_hidpi_png_named_for_the_run(shedding, tmp_path):
    paths = write_charts(shedding, tmp_path / "out")
    name = run_title(shedding)
    assert name == "synthetic · run shed-run"
    expected = ["accuracy", "latency", "throughput", "errors", "over_time", "class_recall", "confusion"]
    assert list(paths) == [f"{chart}.png" for chart in expected]
    for chart, path in paths.items():
        assert path == tmp_path / "out" / chart
        width, _ = struct.unpack(">II", path.read_bytes()[16:24])
        assert width >= 8 * PNG_DPI * 0.7
        svg = path.with_suffix(".svg").read_text(encoding="utf-8")
        assert svg.rstrip().endswith("</svg>")
        assert f">{name}</text>" in svg, chart  # the run's name is a line of the title
        assert "loadgrade-tip" not in svg  # the hover targets' ids are gone once their titles are in
    accuracy = (tmp_path / "out" / "accuracy.svg").read_text(encoding="utf-8")
    assert "<title>8 users (level 2)\nall requests: " in accuracy
    confusion = (tmp_path / "out" / "confusion.svg").read_text(encoding="utf-8")
    assert ">first degraded level: 8 users</text>" in confusion
    assert ">baseline: 2 users</text>" in confusion


def test_confusion_falls_back_to_the_highest_load_and_says_so(tmp_path):
    analysis = analyse_run(_shedding_run(tmp_path / "calm", LEVELS[:2]), progress=False)
    write_charts(analysis, tmp_path / "out")
    confusion = (tmp_path / "out" / "confusion.svg").read_text(encoding="utf-8")
    assert ">highest load (no level degraded): 4 users</text>" in confusion


def test_a_level_without_any_answer_charts_without_failing(tmp_path):
    run_dir = _shedding_run(tmp_path / "dark", (Level(2, 400, 0.95), Level(8, 400, 0.95, error_rate=1.0)))
    analysis = analyse_run(run_dir, progress=False)
    paths = write_charts(analysis, tmp_path / "out")
    assert all(p.with_suffix(".svg").is_file() for p in paths.values())
    ax = plot_accuracy(analysis.levels, knee=analysis.summary.quality_knee).axes[0]
    assert _marks(ax)["no request answered"][:, 0].tolist() == [8.0]
    assert "no request answered" in _legend(ax)
    assert _annotations(ax)["breaks at 8 users"] == 8.0
