"""The live aggregator: the figures the master shows during a test equal the analysis's figures afterwards."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loadgrade.analysis.cli import main as analysis_main
from loadgrade.live import ROLLING_WINDOWS_S, LiveQuality
from loadgrade.recording import LoadTimeline, RecordWriter, worker_row
from loadgrade.runinfo import run_info, write_run_info
from loadgrade.scenario import load_scenario
from tests.support.locust_run import ROOT, write_scenario

T0 = 1_795_000_000.0
KINDS = ("http", "timeout", "connection", "decode", "extract")


def row(sequence: int, sample_id: str, t_sent: float, *, latency_ms: float = 20.0, **kw: Any) -> list[Any]:
    values: dict[str, Any] = dict(
        request_id=f"0-{sequence}",
        sample_id=sample_id,
        worker_index=0,
        user_id=1,
        t_sent=t_sent,
        latency_ms=latency_ms,
        status_code=200,
        ok=True,
        error_kind="",
        error="",
        prediction="",
        response_bytes=10,
        pass_number=1,
    )
    values.update(kw)
    return worker_row(**values)


def simulated_rows(ids: list[str], labels: list[Any], *, seed: int) -> list[tuple[int, list[Any]]]:
    """(stage, row) pairs for a 3-stage run whose accuracy, errors and latency get worse with the stage.

    Predictions come in every form a server may use for the same class (3, 3.0, "3", [3], a probability vector),
    and some rows name samples the labels do not have, so both scorers must agree on the awkward cases too.
    """
    rng = random.Random(seed)
    rows: list[tuple[int, list[Any]]] = []
    sequence = 0
    for stage, (accuracy, error_rate, latency) in enumerate([(0.97, 0.0, 15.0), (0.85, 0.05, 40.0), (0.7, 0.3, 90.0)]):
        for i in range(900 + 300 * stage):
            sequence += 1
            t_sent = T0 + 10.0 * stage + i * 10.0 / (900 + 300 * stage)
            index = rng.randrange(len(ids))
            sample_id = ids[index] if rng.random() > 0.01 else f"unknown-{i}"
            label = int(labels[index])
            latency_ms = round(rng.expovariate(1 / latency), 3)
            if rng.random() < error_rate:
                kind = rng.choice(KINDS)
                rows.append(
                    (
                        stage,
                        row(sequence, sample_id, t_sent, latency_ms=latency_ms, ok=False, error_kind=kind, error="x"),
                    )
                )
                continue
            answer = label if rng.random() < accuracy else (label + rng.randrange(1, 10)) % 10
            form = rng.randrange(5) if rng.random() > 0.02 else 5
            if form == 5:
                prediction = rng.choice(["null", "[null]"])  # an answer without an answer: wrong
            elif form == 4:
                vector = [0.01] * 10
                vector[answer] = 0.91
                prediction = json.dumps(vector)
            else:
                prediction = [json.dumps(answer), json.dumps(float(answer)), json.dumps(str(answer)), f"[{answer}]"][
                    form
                ]
            rows.append((stage, row(sequence, sample_id, t_sent, latency_ms=latency_ms, prediction=prediction)))
    return rows


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[LiveQuality, pd.DataFrame, float]:
    """The same simulated rows written to a run directory (as the master writes it) and fed to a LiveQuality."""
    tmp = tmp_path_factory.mktemp("live")
    scenario = load_scenario(
        write_scenario(tmp / "s.yaml", ROOT / "scenarios" / "digits.yaml", slo={"latency_ms": 60.0, "rules": []})
    )
    dataset = scenario.data()
    assert scenario.slo is not None
    live = LiveQuality(dataset.ids, dataset.labels, task=scenario.dataset.task, slo_latency_ms=scenario.slo.latency_ms)
    timeline = LoadTimeline()
    run_dir = tmp / "run"
    run_dir.mkdir()
    writer = RecordWriter(run_dir / "records.csv", timeline)
    rows = simulated_rows(dataset.ids, dataset.labels, seed=7)
    current = -1
    batch: list[list[Any]] = []

    def ship() -> None:
        # exactly what the master does with one batch: write it, and tally it with the same stamps
        stamps = timeline.stamp_many([r[4] for r in batch])
        writer.write_rows(batch)
        live.add(batch, stamps)
        batch.clear()

    for stage, values in rows:
        if stage != current:
            ship()
            current = stage
            t = T0 + 10.0 * stage
            timeline.note_users(t, 2 + 4 * stage)
            timeline.start_stage(t, target_users=2 + 4 * stage, spawn_rate=10.0)
            live.start_level(t, users=2 + 4 * stage, index=stage)
        batch.append(values)
        if len(batch) == 250:
            ship()
    ship()
    t_end = T0 + 30.5
    timeline.close(t_end)
    live.finish(t_end)
    writer.close()
    info = run_info(
        scenario,
        t_start=T0,
        t_end=t_end,
        worker_count=1,
        locust_requests=len(rows),
        locust_failures=None,
        records_written=len(rows),
        stages=timeline.stages,
    )
    write_run_info(run_dir / "run.json", info)
    assert analysis_main(["report", str(run_dir), "--out", str(tmp / "out"), "--no-charts"]) == 0
    return live, pd.read_csv(tmp / "out" / "levels.csv"), t_end


FIGURES = [
    "n",
    "n_ok",
    "n_truth",
    "n_scored",
    "n_correct",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "effective_accuracy",
    "effective_accuracy_low",
    "effective_accuracy_high",
    "error_rate",
    *(f"error_rate_{kind}" for kind in KINDS),
    "n_no_answer",
    "no_answer_rate",
    "p95_ms",
    "throughput_rps",
    "goodput_rps",
    "duration_s",
]


def test_live_stage_figures_equal_the_analysis_levels(analysed_run: tuple[LiveQuality, pd.DataFrame, float]) -> None:
    live, levels, _ = analysed_run
    assert levels["level"].tolist() == [0, 1, 2]
    for expected in levels.to_dict("records"):
        got = live.stage_summary(int(expected["level"]))
        assert got["users"] == expected["users"]
        for name in FIGURES:
            assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), (expected["level"], name)
    # the simulation really exercised every path: wrong answers, each error kind, rows without labels
    last = live.stage_summary(2)
    assert 0.6 < last["accuracy"] < 0.8
    assert last["effective_accuracy"] < last["accuracy"]
    assert all(last[f"error_rate_{kind}"] > 0 for kind in KINDS)
    assert last["n_truth"] < last["n"]
    assert last["n_no_answer"] > 0
    assert live.problems == []


VS_BASELINE = ["vs_baseline_diff", "vs_baseline_diff_low", "vs_baseline_diff_high", "vs_baseline_n_pairs"]


def test_live_verdict_against_the_baseline_is_the_reports(
    analysed_run: tuple[LiveQuality, pd.DataFrame, float],
) -> None:
    """Baseline, paired change with its interval, Holm p-value and DEGRADED: what levels.csv says afterwards."""
    from loadgrade.analysis.report import DEFAULT_TOLERANCE
    from loadgrade.live import DEFAULT_TOLERANCE as LIVE_TOLERANCE

    assert LIVE_TOLERANCE == DEFAULT_TOLERANCE
    live, levels, _ = analysed_run
    shown = {level["level"]: level for level in live.levels()}
    for expected in levels.to_dict("records"):
        got = shown[int(expected["level"])]
        assert got["is_baseline"] == bool(expected["is_baseline"])
        assert got["degraded"] == bool(expected["degraded"])
        assert got["vs_baseline_significantly_worse"] == bool(expected["vs_baseline_significantly_worse"])
        for name in VS_BASELINE:
            assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), (expected["level"], name)
        if not got["is_baseline"]:
            assert got["vs_baseline_p_holm"] == pytest.approx(expected["vs_baseline_p_holm"], rel=1e-9, abs=1e-300)
    assert [level["degraded"] for level in live.levels()] == [False, True, True]


def test_the_tab_marks_the_baseline_and_the_degraded_levels_in_points(
    analysed_run: tuple[LiveQuality, pd.DataFrame, float],
) -> None:
    from loadgrade.webui import TABLE_STRUCTURE, render_panel, tab_rows

    live, levels, _ = analysed_run
    rows = tab_rows(live.snapshot())
    assert [(row["flag"], row["mark"]) for row in rows] == [
        ("baseline", "baseline"),
        ("DEGRADED", "degraded"),
        ("DEGRADED", "degraded"),
        ("", ""),  # the rolling windows are not levels
        ("", ""),
    ]
    assert rows[0]["change"] == "–"
    level_1 = levels.set_index("level").loc[1]
    diff, low, high = (100 * level_1[name] for name in VS_BASELINE[:3])
    assert rows[1]["change"] == f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]"
    assert rows[1]["change"].startswith("-14.8 [")  # points, level minus baseline
    assert {c["key"] for c in TABLE_STRUCTURE} <= set(rows[0])
    panel = render_panel(live)
    assert panel.count('<tr class="degraded">') == 2
    assert panel.count('<tr class="baseline">') == 1
    assert "significantly worse than the baseline" in panel
    assert "by more than 1 point" in panel
    assert panel.count('data-mark="degraded"') == 2  # ringed in the chart against load


def test_a_level_significantly_worse_within_the_tolerance_is_not_degraded() -> None:
    from loadgrade.webui import tab_rows

    ids = [f"s{i}" for i in range(400)]
    live = LiveQuality(ids, [1] * 400, tolerance=0.2, t_start=T0)
    live.start_level(T0, users=1, index=0)
    live.start_level(T0 + 10, users=4, index=1)
    rows = [row(i, sid, T0 + i / 100, prediction="1") for i, sid in enumerate(ids)]
    rows += [row(400 + i, sid, T0 + 10 + i / 100, prediction="1" if i % 10 else "2") for i, sid in enumerate(ids)]
    live.add(rows, [(1, 0, 1, "")] * 400 + [(4, 1, 4, "")] * 400)
    level = live.levels()[1]
    assert level["vs_baseline_diff"] == pytest.approx(-0.1)
    assert (level["vs_baseline_significantly_worse"], level["degraded"]) == (True, False)
    assert tab_rows(live.snapshot())[1]["flag"] == "worse (within tolerance)"


def test_run_summary_and_snapshot_are_plain_json(analysed_run: tuple[LiveQuality, pd.DataFrame, float]) -> None:
    live, levels, t_end = analysed_run
    snapshot = live.snapshot()
    json.dumps(snapshot, allow_nan=False)  # what the web UI sends: no NaN, no numpy types
    assert [level["level"] for level in snapshot["levels"]] == [0, 1, 2]
    assert all(level["done"] for level in snapshot["levels"])
    assert snapshot["rows"] == int(levels["n"].sum())
    total = live.run_summary()
    assert total["n"] == int(levels["n"].sum())
    assert total["n_correct"] == int(levels["n_correct"].sum())
    # the last 10 s of the run are the last stage (it started 10.5 s before the end)
    window = snapshot["windows"]["10s"]
    assert window["t_end"] == t_end
    last = live.stage_summary(2)
    assert 0.9 * last["n"] < window["n"] <= last["n"]
    assert window["accuracy"] == pytest.approx(last["accuracy"], abs=0.03)
    assert set(snapshot["windows"]) == {f"{w}s" for w in ROLLING_WINDOWS_S}
    assert snapshot["windows"]["30s"]["n"] == total["n"]


def labelled(n: int = 10) -> tuple[list[str], list[int]]:
    return [f"s{i}" for i in range(n)], [i % 3 for i in range(n)]


def test_rolling_windows_cover_the_last_seconds_of_send_time() -> None:
    ids, labels = labelled()
    live = LiveQuality(ids, labels, t_start=T0)
    live.start_level(T0, users=1)
    # 40 s: one request a second, right for the first 20 s, wrong afterwards
    rows = [
        row(i, f"s{i % 10}", T0 + i + 0.5, prediction=str(labels[i % 10] if i < 20 else labels[i % 10] + 1))
        for i in range(40)
    ]
    live.add(rows, [(1, "", "", "")] * len(rows))
    now = T0 + 40.0
    ten, thirty = live.window_summary(10, now=now), live.window_summary(30, now=now)
    assert (ten["n"], ten["accuracy"]) == (10, 0.0)
    assert thirty["n"] == 30
    assert thirty["accuracy"] == pytest.approx(10 / 30)
    assert ten["throughput_rps"] == pytest.approx(1.0)
    # the time series: accuracy over the 10 s up to each second falls from 1 to 0 between 20 s and 30 s
    series = live.series(now=now)
    assert series[0]["t"] == pytest.approx(1.0)
    assert [p["accuracy"] for p in series if p["t"] in (20.0, 25.0, 30.0)] == [1.0, 0.5, 0.0]


def test_without_stages_levels_follow_the_user_count() -> None:
    ids, labels = labelled()
    live = LiveQuality(ids, labels, t_start=T0)
    live.start_level(T0, users=2)
    live.start_level(T0 + 10, users=5)
    rows = [row(i, "s1", T0 + t, prediction="1") for i, t in enumerate([1.0, 9.9, 10.1, 12.0, 15.0])]
    live.add(rows, [(2, "", "", "")] * len(rows))
    first, second = live.levels(now=T0 + 20)
    assert (first["users"], first["n"], first["done"]) == (2, 2, True)
    assert (second["users"], second["n"], second["done"]) == (5, 3, False)
    assert second["duration_s"] == pytest.approx(10.0)


def test_a_prediction_the_analysis_cannot_compare_counts_as_wrong_and_is_reported() -> None:
    ids, labels = labelled()
    live = LiveQuality(ids, labels, t_start=T0)
    rows = [
        row(1, "s1", T0, prediction='{"class": 1}'),
        row(2, "s1", T0, prediction="1"),
        row(3, "s1", T0, prediction="null"),  # no answer: wrong, but nothing to report
    ]
    live.add(rows, [(1, "", "", "")] * len(rows))
    summary = live.stage_summary(0, now=T0 + 1)
    assert (summary["n_scored"], summary["n_correct"], summary["n_no_answer"]) == (3, 1, 1)
    assert len(live.problems) == 1
    assert "cannot be compared as a class label" in live.problems[0]


def test_regression_has_no_accuracy_but_goodput_counts_answers_within_the_slo() -> None:
    live = LiveQuality(["a", "b"], [0.37, 12.5], slo_latency_ms=50, t_start=T0)
    assert live.task == "classification"  # two distinct floats look like classes; the scenario can say otherwise
    live = LiveQuality(["a", "b"], [0.37, 12.5], task="regression", slo_latency_ms=50, t_start=T0)
    rows = [
        row(1, "a", T0, prediction="0.4", latency_ms=10),
        row(2, "b", T0, prediction="12", latency_ms=80),  # answered, too late
        row(3, "b", T0, prediction="null", latency_ms=10),  # in time, but no answer
    ]
    live.add(rows, [(1, "", "", "")] * len(rows))
    summary = live.stage_summary(0, now=T0 + 1)
    assert summary["accuracy"] is None
    assert summary["effective_accuracy"] is None
    assert summary["goodput_rps"] == pytest.approx(1.0)
    assert (summary["n_no_answer"], summary["no_answer_rate"]) == (1, pytest.approx(1 / 3))
    json.dumps(live.snapshot(now=T0 + 1), allow_nan=False)


def test_text_answers_must_match_exactly() -> None:
    live = LiveQuality(["a", "b"], ["the cat sat", "a dog ran"], t_start=T0)
    assert live.task == "text"
    rows = [row(1, "a", T0, prediction='"the cat sat"'), row(2, "b", T0, prediction='"A dog ran."')]
    live.add(rows, [(1, "", "", "")] * 2)
    assert live.stage_summary(0, now=T0 + 1)["accuracy"] == 0.5


def test_cost_per_row_does_not_grow_with_the_run() -> None:
    ids = [str(i) for i in range(2000)]
    labels = [i % 10 for i in range(2000)]
    live = LiveQuality(ids, labels, slo_latency_ms=100, t_start=T0)
    rng = random.Random(0)
    batches = []
    for b in range(60):  # 60 batches of 2000 rows over 60 s
        batch = [
            row(b * 2000 + i, ids[rng.randrange(2000)], T0 + b + i / 2000, prediction=str(rng.randrange(10)))
            for i in range(2000)
        ]
        batches.append((batch, [(8, 0, 8, "")] * len(batch)))
    live.start_level(T0, users=8, index=0)
    timings = []
    for batch, stamps in batches:
        started = time.perf_counter()
        live.add(batch, stamps)
        timings.append(time.perf_counter() - started)
    early, late = sorted(timings[:20])[10], sorted(timings[-20:])[10]
    assert late < 3 * early + 0.002, (early, late)
    # a few microseconds a row: far below what one Locust master receives per second
    assert sum(timings) / 120_000 < 50e-6
    assert live.rows == 120_000
    assert not math.isnan(live.stage_summary(0, now=T0 + 60)["p95_ms"])


class FakeWebUI:
    """What :func:`loadgrade.webui.install` uses of Locust's WebUI: a Flask app, template args and the login guard."""

    def __init__(self, *, login_required: bool) -> None:
        from flask import Blueprint, Flask, jsonify

        self.app = Flask("fake")
        self.template_args: dict[str, Any] = {"extended_tabs": [{"title": "Other", "key": "other"}]}
        self.login_required = login_required
        self.swarms: list[dict[str, str]] = []
        locust = Blueprint("locust", __name__)  # Locust's own routes: its endpoints are "locust.<view>"

        @self.app.route("/stats/requests")
        def stats() -> Any:
            return jsonify({"state": "running", "extended_stats": [{"key": "other", "data": []}]})

        @locust.route("/")
        def index() -> Any:
            return '<!doctype html><html><body><div id="root"></div></body></html>'

        @locust.route("/swarm", methods=["POST"])
        def swarm() -> Any:
            from flask import request

            self.swarms.append(dict(request.form))
            return jsonify({"success": True, "message": "Swarming started", "host": ""})

        self.app.register_blueprint(locust)

    def auth_required_if_enabled(self, view: Any) -> Any:
        from functools import wraps

        from flask import Response

        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return Response("login first", status=401) if self.login_required else view(*args, **kwargs)

        return guarded


QUALITY_ROUTES = ["/quality", "/quality/panel", "/quality/data.json", "/quality/stages.csv", "/quality/records.csv"]


@pytest.mark.parametrize("login_required", [False, True])
def test_web_ui_routes_sit_behind_the_login(tmp_path: Path, login_required: bool) -> None:
    from loadgrade.webui import install

    ids, labels = labelled()
    live = LiveQuality(ids, labels, slo_latency_ms=100, t_start=T0)
    live.start_level(T0, users=3)
    rows = [row(i, f"s{i}", T0 + i / 10, prediction=str(labels[i])) for i in range(10)]
    live.add(rows, [(3, "", "", "")] * len(rows))
    records = tmp_path / "records.csv"
    records.write_text("header\nrow\n")
    web_ui = FakeWebUI(login_required=login_required)
    install(web_ui, live=lambda: live, records=lambda: records)
    client = web_ui.app.test_client()
    statuses = {route: client.get(route).status_code for route in QUALITY_ROUTES}
    assert statuses == dict.fromkeys(QUALITY_ROUTES, 401 if login_required else 200)
    # the other tabs' entries are kept, ours are added
    assert [tab["key"] for tab in web_ui.template_args["extended_tabs"]] == ["other", "quality"]
    extended = client.get("/stats/requests").get_json()["extended_stats"]
    assert [entry["key"] for entry in extended] == ["other", "quality"]
    if not login_required:
        assert extended[1]["data"][0]["n"] == 10
        assert client.get("/quality/records.csv").data == b"header\nrow\n"
        levels = list(csv.DictReader(io.StringIO(client.get("/quality/stages.csv").get_data(as_text=True))))
        assert (levels[0]["n"], levels[0]["accuracy"]) == ("10", "1.0")
        page = client.get("/quality").get_data(as_text=True)
        assert page.count("<svg") == 2
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from the internet
        json.loads(client.get("/quality/data.json").data)


def test_web_ui_before_the_first_test() -> None:
    from loadgrade.webui import install

    web_ui = FakeWebUI(login_required=False)
    install(web_ui, live=lambda: None, records=lambda: None)
    client = web_ui.app.test_client()
    assert "No test has started yet" in client.get("/quality").get_data(as_text=True)
    assert client.get("/quality/records.csv").status_code == 404
    assert [e["key"] for e in client.get("/stats/requests").get_json()["extended_stats"]] == ["other"]


def test_live_intervals_take_the_sample_as_the_unit_when_samples_repeat() -> None:
    """40 samples sent 10 times each with fixed answers: 400 requests, but only 40 independent answers."""
    from loadgrade.analysis.stats import wilson_interval

    ids = [f"s{i}" for i in range(40)]
    live = LiveQuality(ids, [1] * 40, t_start=T0)
    live.start_level(T0, users=1, index=0)
    rows, sequence = [], 0
    for repeat in range(10):
        for i, sample_id in enumerate(ids):
            sequence += 1
            answer = "1" if i < 30 else "2"  # 30 of the 40 samples are always right
            rows.append(row(sequence, sample_id, T0 + repeat + i / 100, prediction=answer))
    live.add(rows, [(1, 0, 1, "")] * len(rows))
    level = live.stage_summary(0, now=T0 + 11)
    assert level["n"] == 400
    assert level["accuracy"] == 0.75
    low, high = wilson_interval(30, 40)
    assert level["accuracy_low"] == pytest.approx(float(low))
    assert level["accuracy_high"] == pytest.approx(float(high))
    assert level["effective_accuracy_low"] == pytest.approx(float(low))


@pytest.mark.parametrize("login_required", [False, True])
def test_the_start_form_is_checked_after_the_login_and_refused_with_the_message(login_required: bool) -> None:
    from loadgrade.webui import install

    checked: list[str] = []

    def check_start(form: Any) -> str | None:
        checked.append(form["scenario"])
        return None if form["scenario"] == "good.yaml" else f"invalid scenario: {form['scenario']}: not found"

    web_ui = FakeWebUI(login_required=login_required)
    install(web_ui, live=lambda: None, records=lambda: None, check_start=check_start)
    client = web_ui.app.test_client()
    form = {"user_count": "2", "spawn_rate": "2", "host": "http://model", "scenario": "missing.yaml"}
    refused = client.post("/swarm", data=form)
    if login_required:  # nobody may read the file system (or send a pre-flight) through the form without a login
        assert (refused.status_code, checked, web_ui.swarms) == (401, [], [])
        return
    assert refused.get_json() == {
        "success": False,
        "message": "invalid scenario: missing.yaml: not found",
        "host": "http://model",
    }
    assert web_ui.swarms == []  # Locust never saw it
    started = client.post("/swarm", data={**form, "scenario": "good.yaml"}).get_json()
    assert started["success"]
    assert [f["scenario"] for f in web_ui.swarms] == ["good.yaml"]
    assert checked == ["missing.yaml", "good.yaml"]


def test_locusts_page_gets_the_tabs_marks_legend_and_link_to_the_charts() -> None:
    from loadgrade.webui import install

    web_ui = FakeWebUI(login_required=False)
    install(web_ui, live=lambda: None, records=lambda: None)
    page = web_ui.app.test_client().get("/").get_data(as_text=True)
    assert page.index("<script>") > page.index('<div id="root">')
    script = page[page.index("<script>") : page.index("</script>")]
    assert "</" not in script[len("<script>") :]  # nothing inside ends the script early
    assert 'href=\\"./quality\\"' in script  # the link to the charts, inside the script's JSON string
    assert "significantly worse than the baseline" in script
    assert 'tr[data-loadgrade="degraded"]' in page
