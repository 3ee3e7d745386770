"""Gaps are shown, not hidden: a run that never ended, lost workers, a records file cut off mid-line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import Level

from loadgrade.analysis import analyse_run, read_records
from loadgrade.analysis.cli import main

LOST = {
    "client_id": "w-abc",
    "worker_index": 1,
    "how": "lost",
    "at": 1795000012.5,
    "rows_received": 310,
    "locust_requests_reported": 330,
    "unrecorded_estimate": 45,
}
GRACEFUL = {**LOST, "client_id": "w-def", "worker_index": 2, "how": "graceful", "unrecorded_estimate": 0}
RULE = ["--rule", "p95_ms<=100000"]


def _edit_info(run_dir: Path, **changes) -> None:
    path = run_dir / "run.json"
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))


@pytest.fixture
def run_dir(make_run) -> Path:
    return make_run((Level(2, 200, 0.95), Level(8, 200, 0.9)))


def test_complete_run_has_no_warnings(run_dir):
    _edit_info(run_dir, ended_at="2026-11-23T15:00:20.000000Z", locust_requests=400, workers_left=[])
    summary = analyse_run(run_dir, progress=False).summary
    assert summary.warnings == []
    assert not summary.incomplete
    assert (summary.records_written, summary.locust_requests, summary.unrecorded_estimate) == (400, 400, 0)


def test_lost_worker_is_in_the_summary_the_console_and_the_page(run_dir, capsys):
    _edit_info(run_dir, ended_at="2026-11-23T15:00:20.000000Z", locust_requests=445, workers_left=[LOST, GRACEFUL])
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: 1 worker was lost without warning (worker 1): about 45 requests it made were never recorded" in out
    assert "WARNING: records.csv holds 400 records but Locust counted 445 requests (45 not recorded)" in out
    # the warnings come before the table
    assert out.index("WARNING") < out.index("level  users")
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["incomplete"] is False
    assert [w["how"] for w in summary["workers_left"]] == ["lost", "graceful"]
    assert summary["workers_left"][0]["rows_received"] == 310
    assert summary["unrecorded_estimate"] == 45
    assert (summary["records_written"], summary["locust_requests"]) == (400, 445)
    page = (run_dir / "analysis" / "report.html").read_text()
    assert page.index('id="warnings"') < page.index('id="headline"')
    assert "about 45 requests it made were never recorded" in page
    assert "worker 1 (lost, 310 rows)" in page


def test_check_on_a_run_with_a_lost_worker_still_judges_the_rules(run_dir, capsys):
    _edit_info(run_dir, ended_at="2026-11-23T15:00:20.000000Z", locust_requests=445, workers_left=[LOST])
    assert main(["check", str(run_dir), *RULE]) == 0
    out = capsys.readouterr().out
    assert "about 45 requests it made were never recorded" in out
    assert main(["check", str(run_dir), "--rule", "p95_ms<=1"]) == 1


def test_check_refuses_an_incomplete_run_unless_allowed(run_dir, capsys):
    _edit_info(run_dir, ended_at=None, locust_requests=None)
    assert main(["check", str(run_dir), *RULE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: run '")
    assert "is incomplete: run.json has ended_at null" in err[0]
    assert "--allow-incomplete" in err[0]
    assert main(["check", str(run_dir), "--allow-incomplete", *RULE]) == 0
    assert "WARNING: the run did not finish" in capsys.readouterr().out


def test_report_on_an_incomplete_run_says_so(run_dir, capsys):
    _edit_info(run_dir, ended_at=None, locust_requests=None)
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    assert "WARNING: the run did not finish: run.json has ended_at null" in capsys.readouterr().out
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["incomplete"] is True
    assert summary["locust_requests"] is None
    assert "the run did not finish" in (run_dir / "analysis" / "report.html").read_text()


def test_run_json_without_ended_at_is_not_called_incomplete(run_dir):
    # older run.json files (and notebooks writing their own) have no ended_at at all: nothing says it was cut short
    assert not analyse_run(run_dir, progress=False).summary.incomplete
    assert main(["check", str(run_dir), *RULE]) == 0


def test_cut_off_last_line_is_left_out_and_reported(run_dir, capsys):
    path = run_dir / "records.csv"
    whole = path.read_bytes()
    path.write_bytes(whole + b"r9-0,s00001,0,1,1795000019.9,12.5,20")  # a row the master never finished
    records = read_records(path, progress=False)
    assert len(records) == 400
    assert records.attrs["cut_off_bytes"] == 36
    _edit_info(run_dir, ended_at=None)
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    assert "the last line of records.csv was cut off mid-write (36 bytes) and was left out" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_records(path, progress=True), records)


CAPACITY = {
    "variable": "users",
    "highest_passing": 4.0,
    "lowest_failing": 5.0,
    "levels": [
        {"value": 2.0, "passed": True},
        {"value": 8.0, "passed": False},
        {"value": 4.0, "passed": True},
        {"value": 5.0, "passed": False},
    ],
}


def test_capacity_search_answer_in_console_summary_and_page(run_dir, capsys):
    _edit_info(run_dir, capacity=CAPACITY)
    assert main(["report", str(run_dir)]) == 0
    assert "capacity search: highest users meeting every SLO: 4; 5 breaks" in capsys.readouterr().out
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["capacity"]["highest_passing"] == 4.0
    assert summary["capacity"]["lowest_failing"] == 5.0
    assert [level["value"] for level in summary["capacity"]["levels"]] == [2.0, 8.0, 4.0, 5.0]
    assert summary["capacity"]["sentence"] == "highest users meeting every SLO: 4; 5 breaks"
    page = (run_dir / "analysis" / "report.html").read_text()
    headline = page[page.index('id="headline"') : page.index('id="levels-heading"')]
    assert "Capacity search: highest users meeting every SLO: 4; 5 breaks." in headline
    assert 'id="capacity"' in headline


def test_rate_search_and_no_search(run_dir):
    _edit_info(run_dir, capacity={**CAPACITY, "variable": "rate", "highest_passing": 40.0, "lowest_failing": 50.0})
    summary = analyse_run(run_dir, progress=False).summary
    assert summary.capacity is not None
    assert summary.capacity["sentence"] == "highest rate meeting every SLO: 40 req/s; 50 req/s breaks"
    _edit_info(run_dir, capacity=None)
    assert analyse_run(run_dir, progress=False).summary.capacity is None
