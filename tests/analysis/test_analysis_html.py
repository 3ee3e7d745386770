from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import Level

from loadgrade.analysis import analyse_run, render_html
from loadgrade.analysis.cli import main

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SLO = {"latency_ms": 200.0, "rules": ["accuracy_drop<=0.01", "p95_ms<=200"]}
RAMP = (Level(2, 300, 0.95, latency_ms=20), Level(8, 300, 0.9, 0.05, 40), Level(32, 300, 0.6, 0.2, 250))


class _Page(HTMLParser):
    """Tags, attribute values and the cells of every table (by id) of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(value or "" for _, value in attrs)
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture
def evil_run(make_run, tmp_path):
    """A run whose scenario name, labels, predictions and error messages carry markup and a URL."""
    run_dir = make_run(RAMP, slo=SLO)
    names = {"0": "cat", "1": EVIL, "2": "a&b"}
    truth_path = tmp_path / "run_truth.csv"
    truth = pd.read_csv(truth_path, dtype=str)
    truth["label"] = truth["label"].map(names)
    truth.to_csv(truth_path, index=False)
    records = pd.read_csv(run_dir / "records.csv", dtype=str, keep_default_na=False)
    records["prediction"] = records["prediction"].map(lambda p: names.get(p, p))
    failed = records["ok"] == "False"
    records.loc[failed, "error"] = f"{EVIL} from http://evil.example/x"
    records.to_csv(run_dir / "records.csv", index=False)
    info = json.loads((run_dir / "run.json").read_text())
    info["scenario"]["name"] = f"v2 {EVIL}"
    info["scenario"]["description"] = '"quoted" & <b>bold</b>'
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def test_report_html_is_self_contained_and_escaped(evil_run, capsys):
    assert main(["report", str(evil_run)]) == 0
    assert "report.html" in capsys.readouterr().out
    out_dir = evil_run / "analysis"
    text = (out_dir / "report.html").read_text(encoding="utf-8")
    page = _parse(text)
    # Nothing executable, nothing fetched: no script or link tags, no attribute pointing anywhere but a data URI.
    assert "script" not in page.tags
    assert "link" not in page.tags
    assert not [a for a in page.attributes if "://" in a or a.startswith("//")]
    # an inlined chart refers to its own clip paths and glyphs (url(#...), href="#..."), never to another document
    assert text.count("url(") == text.count("url(#chart-")
    assert text.count('href="#') == text.count('href="#chart-')
    # The only http:// are the ones inside the (escaped) error message, one row per error kind.
    assert text.count("http://") == text.count(f"{ESCAPED} from http://evil.example/x") == 5
    assert "https://" not in text
    assert EVIL not in text
    assert "<b>bold</b>" not in text
    assert f"v2 {ESCAPED}" in text
    wrong = page.tables["wrong"]
    assert {cell for row in wrong[1:] for cell in row[:2]} <= {"cat", EVIL, "a&b"}
    charts = sorted(out_dir.glob("*.png"))
    assert len(charts) == 7
    # every chart inlined as its SVG (vectors), none as a PNG image: one file, no second request
    assert page.tags.count("figure") == page.tags.count("svg") == len(charts)
    assert "img" not in page.tags
    assert "check --rule" in text or "SLO rules:" in text


def test_report_html_table_matches_levels_csv(make_run):
    run_dir = make_run(RAMP, slo=SLO)
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    out_dir = run_dir / "analysis"
    text = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," not in text
    levels = pd.read_csv(out_dir / "levels.csv").sort_values(["users", "level"])
    table = _parse(text).tables["levels"]
    header, rows = table[0], table[1:]
    shown = pd.DataFrame(rows, columns=header)
    assert shown["level"].astype(int).tolist() == levels["level"].tolist()
    assert shown["n"].astype(int).tolist() == levels["n"].tolist()
    assert shown["users"].astype(float).tolist() == levels["users"].tolist()
    for label, name in (
        ("accuracy over every request % [95% CI]", "effective_accuracy"),
        ("accuracy among answered % [95% CI]", "accuracy"),
    ):
        accuracy = shown[label].str.extract(r"^([\d.]+) \[([\d.]+), ([\d.]+)\]$").astype(float)
        for position, column in enumerate([name, f"{name}_low", f"{name}_high"]):
            assert accuracy[position].to_numpy() == pytest.approx(100 * levels[column].to_numpy(), abs=0.051)
    percent = {"lost %": "lost_rate", "errors %": "error_rate", "coverage %": "coverage"}
    percent["shed %"] = "error_rate_shed"  # synth_run's HTTP errors are all 503
    assert "server errors %" not in shown.columns  # no level had one
    percent.update({f"{k} %": f"error_rate_{k}" for k in ("http", "timeout", "connection", "decode", "extract")})
    assert shown["samples"].astype(int).tolist() == levels["n_samples"].tolist()
    plain = {"req/s": "throughput_rps", "p50 ms": "p50_ms", "p95 ms": "p95_ms", "p99 ms": "p99_ms"}
    plain["goodput/s"] = "goodput_rps"
    for label, column in percent.items():
        assert shown[label].astype(float).to_numpy() == pytest.approx(100 * levels[column].to_numpy(), abs=0.051)
    for label, column in plain.items():
        assert shown[label].astype(float).to_numpy() == pytest.approx(levels[column].to_numpy(), abs=0.051)
    # 8 users lose 6.7 % of their requests: over every request that level is degraded too
    assert shown["vs baseline"].tolist() == ["baseline", "DEGRADED", "DEGRADED"]
    rules = _parse(text).tables["rules"]
    assert rules[0] == ["rule", "limit", "measured", "at users", "first breaks at", "verdict"]
    assert [row[0] for row in rules[1:]] == SLO["rules"]
    assert [row[5] for row in rules[1:]] == ["fail", "fail"]
    # in the tables' units: the drop in points, latency in ms, and where it first breaks in users
    drop = levels.set_index("users")["accuracy_drop"].max()
    assert rules[1][1:3] == ["≤ 1.0 points", f"{100 * drop:.1f} points"]
    assert rules[2][1] == "≤ 200.0 ms"
    assert rules[2][2] == f"{levels['p95_ms'].max():.1f} ms"
    assert [row[4] for row in rules[1:]] == ["8 users", "32 users"]


def test_render_html_without_rules_or_charts(make_run):
    analysis = analyse_run(make_run((Level(2, 300, 0.95), Level(8, 300, 0.95))))
    text = render_html(analysis)
    assert "SLO rules: none set" in text
    assert "Charts were not written" in text
    assert "Quality knee: none, holds up to the highest load tested (8 users)." in text
    assert "<strong>Quality holds up to the highest load tested, 8 users</strong>: accuracy over every request" in text


def test_render_html_headline_names_where_quality_breaks(make_run):
    # 5 % of the requests at 8 users fail: over every request that is a loss, not "holds"
    analysis = analyse_run(make_run(RAMP[:2]))
    text = render_html(analysis)
    assert "Quality knee: 2 users; fails from 8 users: " in text
    verdict = text[text.index('<p class="verdict" id="verdict">') :].split("</p>")[0]
    assert verdict.startswith('<p class="verdict" id="verdict"><strong>Quality breaks at 8 users</strong>: accuracy')
    assert "through failed requests and wrong answers: " in verdict
    assert "requests failed (" in verdict
    assert "connection ×" in verdict
    page = _parse(text)
    versions = dict(row for row in page.tables["versions"][1:])
    assert versions == {"loadgrade": "0.1.0", "analysis": "0.1.0"}


def test_render_html_bad_rule_is_reported_not_raised(make_run):
    analysis = analyse_run(make_run(RAMP[:2]))
    text = render_html(analysis, rules=["p95<=200"])
    assert "could not be evaluated" in text
    assert "unknown metric &#x27;p95&#x27;" in text


def test_write_html_embeds_given_charts(make_run, tmp_path):
    from loadgrade.analysis import write_charts, write_html

    analysis = analyse_run(make_run(RAMP[:2]))
    charts = write_charts(analysis, tmp_path / "out")
    given = {k: charts[k] for k in ("accuracy.png", "latency.png")}
    path = write_html(analysis, tmp_path / "out", charts=given)
    assert path == Path(tmp_path / "out" / "report.html")
    page = _parse(path.read_text(encoding="utf-8"))
    # each PNG's SVG twin beside it is what gets inlined
    assert page.tags.count("svg") == 2
    assert "img" not in page.tags
    # without the twin, the PNG as before
    charts["latency.png"].with_suffix(".svg").unlink()
    text = write_html(analysis, tmp_path / "out", charts=given).read_text(encoding="utf-8")
    assert _parse(text).tags.count("svg") == 1
    assert text.count('<img alt="Latency percentiles against load" src="data:image/png;base64,') == 1
