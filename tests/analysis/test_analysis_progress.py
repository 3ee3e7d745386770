"""Progress bars: on stderr for long work when it is a terminal, never in a pipe or a log."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from conftest import Level

import loadgrade.analysis.io
from loadgrade.analysis import analyse_run, assign_levels, join_truth, level_table, load_run
from loadgrade.analysis.cli import main

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


def test_report_is_quiet_when_stderr_is_not_a_terminal(make_run, capsys, monkeypatch):
    monkeypatch.setattr(loadgrade.analysis.io, "_PROGRESS_MIN_BYTES", 0)
    assert main(["report", str(make_run(LEVELS)), "--no-charts"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("threshold", "expected"), [(0, True), (1 << 40, False)])
def test_bars_on_a_terminal_only_for_big_files(make_run, capsys, monkeypatch, threshold, expected):
    run_dir = make_run(LEVELS)
    monkeypatch.setattr(loadgrade.analysis.io, "_PROGRESS_MIN_BYTES", threshold)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    analyse_run(run_dir)
    err = capsys.readouterr().err
    assert ("reading records.csv" in err and "levels" in err) is expected
    assert (err == "") is not expected
