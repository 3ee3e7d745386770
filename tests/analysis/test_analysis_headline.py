"""What a reader sees first: what was tested, and where quality breaks and why, alike in console, JSON and HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import Level

from loadgrade.analysis import analyse_run, render_html
from loadgrade.analysis.cli import main
from loadgrade.analysis.report import describe_knee

SCENARIO = {
    "endpoint": {
        "base_url": "http://127.0.0.1:8000",
        "path": None,
        "method": "POST",
        "headers": {"Authorization": "<redacted>"},
        "timeout_s": 5.0,
        "verify_tls": True,
    },
    "protocol": {"kind": "openai-chat", "model": "digits-small", "prompt": "Digit? {{input}}"},
    "load": {"kind": "steps", "steps": [{"users": 2}, {"users": 8}, {"users": 32}]},
}
RUN_JSON = {
    "locust_version": "2.47.0",
    "python_version": "3.11.7",
    "endpoint_url": "http://127.0.0.1:8000/v1/chat/completions",
    "started_at": "2026-12-03T09:59:17.440280Z",
    "ended_at": "2026-12-03T09:59:47.440280Z",
    "run_id": "d772d33b75eb",
}


class _Dl(HTMLParser):
    """The terms and definitions of ``<dl id="tested">``."""

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, str] = {}
        self._inside = False
        self._tag: str | None = None
        self._term = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "dl" and dict(attrs).get("id") == "tested":
            self._inside = True
        elif self._inside and tag in ("dt", "dd"):
            self._tag = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "dl":
            self._inside = False
        self._tag = None

    def handle_data(self, data: str) -> None:
        if self._tag == "dt":
            self._term = data
        elif self._tag == "dd":
            self.items[self._term] = self.items.get(self._term, "") + data


def _tested(page: str) -> dict[str, str]:
    parser = _Dl()
    parser.feed(page)
    return parser.items


def _edit_info(run_dir: Path, **scenario: object) -> None:
    path = run_dir / "run.json"
    info = json.loads(path.read_text())
    info.update(RUN_JSON)
    info["scenario"].update(scenario)
    path.write_text(json.dumps(info))


def _shed(run_dir: Path, *, users: int, status: int = 503) -> None:
    """Every failure of the level at ``users`` becomes the server shedding the request."""
    records = pd.read_csv(run_dir / "records.csv", dtype=str, keep_default_na=False)
    failed = (records["ok"] == "False").to_numpy() & (records["target_users"] == str(users)).to_numpy()
    records.loc[failed, ["error_kind", "status_code", "error"]] = ["http", str(status), f"HTTP {status}"]
    records.loc[~failed & (records["ok"] == "False").to_numpy(), "ok"] = "True"
    records.loc[records["ok"] == "True", ["error_kind", "error", "status_code"]] = ["", "", "200"]
    records.loc[(records["ok"] == "True").to_numpy() & (records["prediction"] == "").to_numpy(), "prediction"] = "0"
    records.to_csv(run_dir / "records.csv", index=False)


def test_report_opens_with_what_was_tested(make_run, capsys):
    run_dir = make_run((Level(2, 300, 0.95), Level(8, 300, 0.9), Level(32, 300, 0.9)))
    _edit_info(run_dir, **SCENARIO)
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    out = capsys.readouterr().out
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    tested = _tested(page)
    assert re.fullmatch(r"\d+\.\d s", tested.pop("Duration"))
    assert tested == {
        "Run": "run (id d772d33b75eb)",
        "Scenario": "synthetic",
        "Scenario file": str(run_dir.parent / "scenario.yaml"),
        "Endpoint": "POST http://127.0.0.1:8000/v1/chat/completions (time-out 5 s; headers Authorization)",
        "Protocol": "openai-chat, model digits-small",
        "Dataset": "run_truth.csv: 200 labelled samples, replayed until each stage ends",
        "Load": "steps 2 → 8 → 32 users, 10 s each",
        "Load generator": "2 Locust workers",
        "Started": "2026-12-03 09:59:17 UTC",
        "Versions": "loadgrade 0.1.0, Locust 2.47.0, Python 3.11.7, analysis 0.1.0",
    }
    assert "<redacted>" not in page  # header names only
    # first on the page, before the headline
    assert page.index('id="tested"') < page.index('id="headline"') < page.index('id="levels"')
    # the same facts in summary.json and, in short, on the console
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["tested"]["endpoint"] == tested["Endpoint"]
    assert summary["tested"]["load generator"] == "2 Locust workers"
    assert out.splitlines()[1] == (
        "tested: POST http://127.0.0.1:8000/v1/chat/completions (time-out 5 s; headers Authorization); "
        "protocol openai-chat, model digits-small; steps 2 → 8 → 32 users, 10 s each; 2 Locust workers; "
        f"ran {summary['tested']['duration']}"
    )


def test_a_run_json_without_endpoint_url_names_the_preset_path(make_run):
    run_dir = make_run((Level(2, 300, 0.95), Level(8, 300, 0.95)))
    _edit_info(run_dir, **SCENARIO)
    info = json.loads((run_dir / "run.json").read_text())
    del info["endpoint_url"]
    (run_dir / "run.json").write_text(json.dumps(info))
    tested = analyse_run(run_dir, progress=False).summary.tested
    assert tested["endpoint"] == (
        "POST http://127.0.0.1:8000 (path: the openai-chat preset's default; time-out 5 s; headers Authorization)"
    )


def test_headline_of_a_shedding_run_names_the_load_the_share_and_the_status(make_run, capsys):
    run_dir = make_run((Level(2, 400, 0.95), Level(8, 400, 0.95), Level(16, 1000, 0.95, error_rate=0.85)))
    _shed(run_dir, users=16)
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    out = capsys.readouterr().out
    levels = pd.read_csv(run_dir / "analysis" / "levels.csv").set_index("users")
    top, base = levels.loc[16.0], levels.loc[2.0]
    n_shed = int(top["n_shed"])
    assert n_shed == int(top["n_failed"]) > 800
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    headline = summary["headline"]
    change = f"{100 * base['effective_accuracy']:.1f} % → {100 * top['effective_accuracy']:.1f} %"
    assert headline.startswith(f"quality breaks at 16 users: accuracy over every request {change} (")
    assert f"through failed requests: {n_shed} of 1000 requests failed ({n_shed / 10:.1f} %: HTTP 503 ×{n_shed})" in (
        headline
    )
    # the answers that came are as good as at the baseline: not the model's fault
    assert headline.endswith(f"among answered requests {100 * base['accuracy']:.1f} % → {100 * top['accuracy']:.1f} %")
    assert "level" not in headline  # loads, not level indexes
    # console, summary.json and the page say the same
    assert headline in out.splitlines()
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "<strong>Quality breaks at 16 users</strong>: " in page
    assert f"HTTP 503 ×{n_shed}" in page
    assert summary["most_failures_at"]["users"] == 16.0


def test_headline_of_a_wrong_answer_run_counts_the_wrong_answers_and_the_worst_failures_elsewhere(make_run):
    run_dir = make_run((Level(2, 400, 0.95), Level(8, 400, 0.6), Level(32, 1000, 0.6, error_rate=0.8)))
    _shed(run_dir, users=32)
    analysis = analyse_run(run_dir, progress=False)
    levels = analysis.levels.set_index("users")
    at8, at32 = levels.loc[8.0], levels.loc[32.0]
    headline = analysis.summary.headline
    low, high = (f"{-100 * at8[f'accuracy_drop_{b}']:+.1f}" for b in ("high", "low"))
    assert headline.startswith(
        f"quality breaks at 8 users: accuracy over every request {100 * levels.loc[2.0, 'effective_accuracy']:.1f} % "
        f"→ {100 * at8['effective_accuracy']:.1f} % ({-100 * at8['accuracy_drop']:+.1f} points "
        f"[95 % CI {low}, {high}], paired on 200 samples), through wrong answers: "
        f"{int(at8['n_wrong'])} of 400 requests answered wrongly ({100 * at8['wrong_rate']:.1f} %, "
        f"{100 * levels.loc[2.0, 'wrong_rate']:.1f} % at baseline), none failed; "
    )
    # the most striking failure figure, at another load than the break
    assert headline.endswith(
        f"; {100 * at32['error_rate']:.1f} % of requests failed at 32 users (HTTP 503 ×{int(at32['n_shed'])})"
    )
    assert analysis.summary.quality_breaks_at is not None
    assert analysis.summary.quality_breaks_at.users == 8.0


def test_a_level_index_only_where_two_levels_offer_the_same_load(make_run):
    run_dir = make_run((Level(2, 400, 0.95), Level(8, 400, 0.6), Level(2, 400, 0.95)))
    analysis = analyse_run(run_dir, progress=False)
    summary = analysis.summary
    assert summary.headline.startswith("quality breaks at 8 users: ")
    knee = describe_knee("quality knee", summary.quality_knee, levels=analysis.levels)
    assert knee.startswith("quality knee: 2 users (level ")
    assert "; fails from 8 users: " in knee


def test_check_prints_rule_values_in_the_tables_units(make_run, capsys):
    run_dir = make_run((Level(2, 400, 0.95, latency_ms=20), Level(8, 400, 0.95), Level(32, 400, 0.6, 0.2, 250)))
    rules = ["accuracy_drop<=0.01", "p95_ms<=100000", "failed_rate<=5%", "goodput>=1000000"]
    assert main(["check", str(run_dir), *(f"--rule={r}" for r in rules)]) == 1
    out = capsys.readouterr().out.splitlines()
    levels = analyse_run(run_dir, progress=False).levels.set_index("users")
    assert out[0].split() == ["rule", "measured", "at", "users", "first", "breaks", "at", "verdict"]
    drop, shed = levels.loc[32.0, "accuracy_drop"], levels.loc[32.0, "error_rate"]
    first = next(users for users, row in levels.sort_index().iterrows() if row["accuracy_drop"] > 0.01)
    assert out[1].split() == ["accuracy_drop<=0.01", f"{100 * drop:.1f}", "points", "32", f"{first:g}", "users", "FAIL"]
    assert out[2].split()[1:4] == [f"{levels['p95_ms'].max():.1f}", "ms", "32"]
    assert out[2].split()[-2:] == ["-", "pass"]
    assert out[3].split() == ["failed_rate<=5%", f"{100 * shed:.1f}", "%", "32", "32", "users", "FAIL"]
    best = levels["goodput_rps"].max()
    assert out[4].split()[1:4] == [f"{best:.1f}", "req/s", f"{levels['goodput_rps'].idxmax():g}"]
    assert out[4].endswith("no level reaches it  FAIL")


@pytest.mark.parametrize("with_svg", [True, False])
def test_inlined_charts_share_no_id(make_run, tmp_path, with_svg):
    from loadgrade.analysis import write_charts

    analysis = analyse_run(make_run((Level(2, 300, 0.95), Level(8, 300, 0.9, 0.05))), progress=False)
    paths = write_charts(analysis, tmp_path / "out")
    charts = {name: path.read_bytes() for name, path in paths.items()}
    if with_svg:
        charts |= {path.with_suffix(".svg").name: path.with_suffix(".svg").read_bytes() for path in paths.values()}
    page = render_html(analysis, charts=charts)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert page.count("<figure") == len(paths)
    assert page.count("<svg role=") == (len(paths) if with_svg else 0)
    assert page.count("<img alt=") == (0 if with_svg else len(paths))
    assert "<?xml" not in page
    assert "<!DOCTYPE svg" not in page
