from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Level

from loadgrade.analysis import analyse_run
from loadgrade.analysis.cli import main

REPO = Path(__file__).resolve().parents[2]

SLO = {"latency_ms": 200.0, "tolerance": 0.01, "rules": ["accuracy_drop<=0.01", "p95_ms<=200"]}
RAMP = (
    Level(2, 400, 0.95, latency_ms=20),
    Level(8, 400, 0.95, 0.01, 40),
    Level(16, 600, 0.95, 0.02, 50),
    Level(32, 800, 0.7, 0.2, 250),
)


def test_report_writes_outputs_and_prints_table(make_run, capsys):
    run_dir = make_run(RAMP, slo=SLO)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "level  users      n    req/s  all requests [95% CI]  answered  failed%  shed%   p95 ms" in out
    assert "DEGRADED" in out
    assert "quality knee: 16 users; fails from 32 users: " in out
    levels = pd.read_csv(run_dir / "analysis" / "levels.csv")
    assert levels["level"].tolist() == [0, 1, 2, 3]
    assert levels["degraded"].tolist() == [False, False, False, True]
    assert levels["t_start"].iloc[0] == pytest.approx(1795000000.0, abs=1e-6)
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    # the headline, as summary.json holds it, is the one printed: where quality breaks, by how much and why
    assert summary["headline"] in out.splitlines()
    assert summary["headline"].startswith("quality breaks at 32 users: accuracy over every request ")
    assert "through failed requests and wrong answers: " in summary["headline"]
    assert summary["quality_knee"]["users"] == 16.0
    assert summary["latency_knee"]["first_bad_users"] == 32.0
    assert summary["baseline"]["users"] == 2.0
    assert summary["counts"]["n_records"] == 2200
    assert summary["slo_latency_ms"] == 200.0


def test_report_out_and_truth_options(make_run, tmp_path, capsys):
    run_dir = make_run(RAMP[:2])
    truth = pd.read_csv(tmp_path / "run_truth.csv", dtype={"id": str})
    truth.rename(columns={"id": "id", "label": "label"}).to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    out_dir = tmp_path / "elsewhere"
    assert main(["report", str(run_dir), "--truth", str(tmp_path / "t.jsonl"), "--out", str(out_dir)]) == 0
    assert (out_dir / "levels.csv").exists()
    assert "t.jsonl" in capsys.readouterr().out


def test_report_window_levels_without_stages(make_run, capsys):
    run_dir = make_run(RAMP)
    records = pd.read_csv(run_dir / "records.csv", dtype=str)
    records["stage"] = ""
    records["target_users"] = ""
    records.to_csv(run_dir / "records.csv", index=False)
    assert main(["report", str(run_dir), "--window-s", "5"]) == 0
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["level_kind"] == "window"
    assert summary["n_levels"] == 8
    assert "no stages recorded: levels are 5 s time windows" in summary["assumptions"]


def test_unusable_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: run directory '{tmp_path / 'missing'}' does not exist\n"


def test_duplicate_truth_exit_2(make_run, tmp_path, capsys):
    run_dir = make_run(RAMP[:2])
    truth = pd.read_csv(tmp_path / "run_truth.csv", dtype={"id": str})
    pd.concat([truth, truth.head(2)]).to_csv(tmp_path / "dup.csv", index=False)
    assert main(["report", str(run_dir), "--truth", str(tmp_path / "dup.csv")]) == 2
    assert "2 duplicated sample ids (e.g. 's00000', 's00001')" in capsys.readouterr().err


def test_bad_option_values_are_rejected(make_run, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "x", "--window-s", "0"])
    assert exc.value.code == 2
    assert "expected a positive number" in capsys.readouterr().err


def test_module_entry_point_and_help():
    result = subprocess.run(
        [sys.executable, "-m", "analysis", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0
    assert "report" in result.stdout
    assert "exit status" in result.stdout
    assert "report.html" in result.stdout
    assert "python -m analysis compare runs/model-v1 runs/model-v2" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "analysis", "report", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert "--window-s N" in result.stdout
    assert "--truth FILE" in result.stdout
    assert "report.html" in result.stdout


def test_cli_subprocess_report_writes_every_file(make_run, tmp_path):
    run_dir = make_run(RAMP[:3], slo=SLO)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(run_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    # stderr is progress only (no warning, no traceback): the run, then one line per step with its time
    first, *steps = result.stderr.splitlines()
    assert first == f"analysing {run_dir}: 1,400 records ({(run_dir / 'records.csv').stat().st_size / 1e6:.1f} MB)"
    timed = [re.fullmatch(r" *(\d+\.\d) s  (.+)", s) for s in steps]
    assert all(timed), steps
    seconds = [float(m[1]) for m in timed if m]
    assert seconds == sorted(seconds)
    assert [m[2].split(":")[0] for m in timed if m] == [
        "reading records.csv and the labels",
        "joining 1,400 records with 200 labelled samples",
        "levels",
        "statistics",
        "writing levels.csv and summary.json",
        "charts",
        "report.html",
        "done",
    ]
    assert "report.html" in result.stdout
    assert "analysing" not in result.stdout
    charts = ["accuracy", "latency", "throughput", "errors", "over_time", "class_recall", "confusion"]
    expected = {"levels.csv", "summary.json", "report.html"}
    expected |= {f"{name}.{kind}" for name in charts for kind in ("png", "svg")}
    assert {p.name for p in out.iterdir()} == expected
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<figure") == page.count("<svg role=") == len(charts)
    for name in charts:
        assert f"{name}.svg" in result.stdout


def test_records_without_truth_are_reported(make_run, tmp_path):
    run_dir = make_run(RAMP[:2])
    truth = pd.read_csv(tmp_path / "run_truth.csv", dtype={"id": str})
    truth.iloc[5:].to_csv(tmp_path / "partial.csv", index=False)
    analysis = analyse_run(run_dir, truth=tmp_path / "partial.csv")
    counts = analysis.summary.counts
    assert counts.n_without_truth == 2 * 4 * 5 // 2  # samples 0..4 sent twice per level, two levels
    assert counts.without_truth_examples == ["s00000", "s00001", "s00002", "s00003", "s00004"]
    assert analysis.levels["n_truth"].sum() == 800 - counts.n_without_truth


def test_degradation_knee_and_consistency(make_run):
    analysis = analyse_run(make_run(RAMP, slo=SLO))
    levels = analysis.levels
    assert levels["is_baseline"].tolist() == [True, False, False, False]
    # each sample is sent twice at the baseline and four times at level 3, and its repeats disagree: the
    # paired comparison of per-sample accuracies is a t-interval, not McNemar on one answer per sample
    assert levels["vs_baseline_test"].iloc[3] == "paired-t/sign-flip"
    assert levels["vs_baseline_n_pairs"].iloc[3] == 200
    assert levels["consistency"].iloc[0] == 1.0
    assert levels["consistency"].iloc[3] < levels["consistency"].iloc[1]
    assert analysis.summary.degraded_levels == [3]
    assert np.isnan(levels["vs_baseline_p_value"].iloc[0])
