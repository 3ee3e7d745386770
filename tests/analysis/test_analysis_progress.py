"""Progress bars: on stderr for long work when it is a terminal, never in a pipe or a log."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import Level

import loadgrade.analysis.io
from loadgrade.analysis import analyse_run, assign_levels, join_truth, level_table, load_run
from loadgrade.analysis.cli import main
from loadgrade.analysis.io import Progress

REPO = Path(__file__).resolve().parents[2]

LEVELS = (Level(2, 300, 0.95), Level(8, 300, 0.9), Level(32, 300, 0.6, error_rate=0.1))


def test_level_table_progress_bar_changes_nothing_but_stderr(make_run, capsys):
    run = load_run(make_run(LEVELS), progress=False)
    joined, _ = join_truth(run.records, run.truth)
    joined["level"], bounds = assign_levels(joined, stages=run.info["stages"])
    quiet = level_table(joined, bounds, task="classification")
    assert capsys.readouterr().err == ""
    with_bar = level_table(joined, bounds, task="classification", progress=True)
    assert "levels" in capsys.readouterr().err
    pd.testing.assert_frame_equal(with_bar, quiet)


def test_report_prints_a_line_per_step_and_no_bar_when_stderr_is_not_a_terminal(make_run, capsys, monkeypatch):
    # a CI log: even a big run gets plain lines, never a bar's carriage returns
    monkeypatch.setattr(loadgrade.analysis.io, "_PROGRESS_MIN_BYTES", 0)
    run_dir = make_run(LEVELS)
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith(f"analysing {run_dir}: 900 records (")
    steps = [re.fullmatch(r" *\d+\.\d s  (.+)", line) for line in lines[1:]]
    assert all(steps), lines
    assert [m[1] for m in steps if m] == [
        "reading records.csv and the labels",
        "joining 900 records with 200 labelled samples",
        "levels: 3 load stages",
        "statistics: each level against the baseline, paired per sample",
        "writing levels.csv and summary.json",
        "report.html",
        "done",
    ]
    assert "\r" not in captured.err
    # stdout stays the result
    assert captured.out.startswith(f"run {run_dir}")
    assert "analysing" not in captured.out
    assert " s  reading" not in captured.out


def test_report_says_which_run_before_loading_the_analysis_libraries(make_run):
    # -X importtime logs every import to stderr as it happens: the first line must come before pandas loads
    run_dir = make_run(LEVELS)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "analysis", "report", str(run_dir), "--no-charts"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("analysing "))
    pandas = next(i for i, line in enumerate(lines) if re.search(r"\|\s*pandas$", line))
    assert first < pandas


def test_analyse_run_prints_steps_only_when_given_a_progress(make_run, capsys):
    run_dir = make_run(LEVELS)
    analyse_run(run_dir, progress=False)
    assert capsys.readouterr().err == ""
    analyse_run(run_dir, progress=Progress())
    err = capsys.readouterr().err
    assert "reading records.csv and the labels" in err
    assert "statistics: each level against the baseline" in err


@pytest.mark.parametrize(("threshold", "expected"), [(0, True), (1 << 40, False)])
def test_bars_on_a_terminal_only_for_big_files(make_run, capsys, monkeypatch, threshold, expected):
    run_dir = make_run(LEVELS)
    monkeypatch.setattr(loadgrade.analysis.io, "_PROGRESS_MIN_BYTES", threshold)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    analyse_run(run_dir)
    err = capsys.readouterr().err
    assert ("reading records.csv" in err and "levels" in err) is expected
    assert (err == "") is not expected
