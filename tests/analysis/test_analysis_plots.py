from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import Level
from matplotlib.figure import Figure

from loadgrade.analysis import analyse_run
from loadgrade.analysis.cli import main
from loadgrade.analysis.plots import plot_accuracy, plot_class_recall, plot_errors, plot_latency, write_charts

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_writes_readable_charts(make_run, capsys):
    run_dir = make_run((Level(2, 300, 0.95), Level(8, 300, 0.9), Level(32, 300, 0.6, error_rate=0.1)))
    assert main(["report", str(run_dir)]) == 0
    out_dir = run_dir / "analysis"
    expected = ["accuracy", "latency", "throughput", "errors", "over_time", "class_recall", "confusion"]
    for name in expected:
        assert (out_dir / f"{name}.png").read_bytes()[:8] == PNG
        assert (out_dir / f"{name}.svg").read_text(encoding="utf-8").rstrip().endswith("</svg>")
    assert "confusion.png" in capsys.readouterr().out


def test_no_charts_option(make_run):
    run_dir = make_run((Level(2, 100), Level(8, 100)))
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    assert not list((run_dir / "analysis").glob("*.png"))
    assert not list((run_dir / "analysis").glob("*.svg"))


def test_chart_functions_return_labelled_figures(make_run):
    analysis = analyse_run(make_run())
    figure = plot_accuracy(analysis.levels, knee=analysis.summary.quality_knee)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_title() == "Accuracy against load"
    assert ax.get_xlabel() == "offered load (users)"
    assert plot_latency(analysis.levels, slo_latency_ms=100).axes[0].get_ylabel() == "latency (ms)"
    assert plot_errors(analysis.levels).axes[0].get_ylabel() == "failed (% of requests)"
    recall = pd.DataFrame({"0": [1.0, 0.5], "1": [0.9, np.nan]}, index=pd.Index([0, 1], name="level"))
    assert len(plot_class_recall(recall).axes) == 2  # heatmap and its colour bar


def test_regression_run_charts_skip_accuracy(tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    run_dir = tmp_path / "reg"
    run_dir.mkdir()
    truth = pd.DataFrame({"id": [f"x{i}" for i in range(n)], "label": rng.normal(50, 10, n)})
    truth.to_csv(tmp_path / "truth.csv", index=False)
    records = pd.DataFrame(
        {
            "request_id": [str(i) for i in range(n)],
            "sample_id": truth["id"],
            "worker_index": 0,
            "user_id": 0,
            "t_sent": 1795000000 + np.arange(n) * 0.1,
            "latency_ms": 10.0,
            "status_code": 200,
            "ok": True,
            "error_kind": "",
            "error": "",
            "prediction": [f"{v:.4f}" for v in truth["label"] + rng.normal(0, 1, n)],
            "response_bytes": 10,
            "users_active": np.where(np.arange(n) < 100, 1, 4),
            "pass": 1,
        }
    )
    records.to_csv(run_dir / "records.csv", index=False)
    info = {"scenario": {"name": "reg", "dataset": {"path": str(tmp_path / "truth.csv"), "format": "csv"}}}
    (run_dir / "run.json").write_text(json.dumps(info))
    analysis = analyse_run(run_dir)
    assert analysis.summary.task == "regression"
    assert analysis.summary.quality_knee is None
    paths = write_charts(analysis, tmp_path / "out")
    assert "accuracy.png" not in paths
    assert "latency.png" in paths
    assert not (tmp_path / "out" / "accuracy.svg").exists()
    assert (tmp_path / "out" / "latency.svg").is_file()
