"""Open model (load kind rate): latency from the scheduled time, schedule lag, late arrivals, the rate as the load.

The synthetic run replays an arrival schedule through a cap of two users against a server that answers in 10 ms,
except that it stalls for one second in the middle of the 100 req/s stage: the two requests in flight then take a
second, and the arrivals due meanwhile wait for a free user. Measured from the send, those waiting requests look
fast (coordinated omission); measured from when they were due, the stall shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import T0, write_run

from loadgrade.analysis import analyse_run, check_rules, plot_latency, plot_over_time
from loadgrade.analysis.cli import main

SERVICE_S = 0.010
STALL = (T0 + 5.0, T0 + 6.0)  # in the first stage: requests sent in it complete when it ends
STAGES = ((100.0, 10.0), (50.0, 10.0))  # (rate, duration): the higher rate first, so load order is not time order
USERS = 2


def _simulate(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, float]]]:
    rng = np.random.default_rng(seed)
    n_samples = 100
    labels = rng.integers(0, 3, size=n_samples)
    truth = pd.DataFrame({"id": [f"s{i:03d}" for i in range(n_samples)], "label": labels})
    free = [T0] * USERS  # when each user is free again
    rows = []
    stages = []
    start = T0
    for index, (rate, duration) in enumerate(STAGES):
        stages.append({"index": index, "users": USERS, "spawn_rate": 2.0, "t_start": start, "t_end": start + duration})
        due = start + np.arange(int(rate * duration)) / rate
        for t_scheduled in due:
            user = int(np.argmin(free))
            t_sent = max(t_scheduled, free[user])
            done = STALL[1] + SERVICE_S if STALL[0] <= t_sent < STALL[1] else t_sent + SERVICE_S
            free[user] = done
            k = len(rows)
            rows.append(
                {
                    "request_id": f"0-{k}",
                    "sample_id": truth["id"].iloc[k % n_samples],
                    "worker_index": 0,
                    "user_id": user,
                    "t_sent": t_sent,
                    "latency_ms": (done - t_sent) * 1000.0,
                    "status_code": 200,
                    "ok": True,
                    "error_kind": "",
                    "error": "",
                    "prediction": str(int(labels[k % n_samples])),
                    "response_bytes": 10,
                    "users_active": USERS,
                    "pass": 1 + k // n_samples,
                    "t_scheduled": t_scheduled,
                    "stage": index,
                    "target_users": USERS,
                    "target_rps": rate,
                }
            )
        start += duration
    return pd.DataFrame(rows), truth, stages


@pytest.fixture(scope="module")
def open_run(tmp_path_factory) -> Path:
    records, truth, stages = _simulate()
    return write_run(tmp_path_factory.mktemp("open") / "run", records, truth, stages=stages, slo={"latency_ms": 200})


def test_corrected_percentiles_show_the_stall_the_send_latency_hides(open_run):
    analysis = analyse_run(open_run, progress=False)
    levels = analysis.levels.set_index("level")
    stalled, calm = levels.loc[0], levels.loc[1]
    # from the send, the stall is two requests in 1000: invisible at p99
    assert stalled["p99_ms"] < 20
    # from the schedule, every arrival due during the stall waited for a free user
    assert stalled["p95_sched_ms"] > 500
    assert stalled["p99_sched_ms"] > 900
    assert stalled["max_sched_ms"] == pytest.approx(1010, abs=1)
    assert stalled["lag_max_ms"] == pytest.approx(990, abs=1)  # due at 5.02 s, sent at 6.01 s
    assert stalled["late_share"] > 0.09
    # the calm stage is on time
    assert calm["p99_sched_ms"] == pytest.approx(calm["p99_ms"], abs=1e-6)
    assert calm["n_late"] == 0
    assert calm["lag_max_ms"] == pytest.approx(0, abs=1e-3)


def test_open_model_figures_agree_with_numpy(open_run):
    analysis = analyse_run(open_run, progress=False)
    joined = analysis.joined
    for row in analysis.levels.to_dict("records"):
        rows = joined[joined["level"] == row["level"]]
        lag = (rows["t_sent"] - rows["t_scheduled"]).to_numpy() * 1000
        corrected = lag + rows["latency_ms"].to_numpy()
        for q in (50, 90, 95, 99):
            assert row[f"p{q}_sched_ms"] == pytest.approx(np.percentile(corrected, q), abs=1e-9)
        assert row["lag_p50_ms"] == pytest.approx(np.percentile(lag, 50), abs=1e-9)
        assert row["lag_p99_ms"] == pytest.approx(np.percentile(lag, 99), abs=1e-9)
        assert row["n_late"] == int((lag > 10).sum())
        assert row["late_share"] == pytest.approx((lag > 10).mean(), abs=1e-12)


def test_the_rate_is_the_offered_load(open_run):
    analysis = analyse_run(open_run, progress=False)
    levels = analysis.levels
    assert levels["target_rps"].tolist() == [100.0, 50.0]
    assert levels["load"].tolist() == [100.0, 50.0]
    assert set(levels["load_unit"]) == {"req/s"}
    assert levels["users"].tolist() == [2.0, 2.0]  # the cap, the same at both rates
    summary = analysis.summary
    assert summary.load_unit == "req/s"
    assert (summary.baseline.level, summary.baseline.load) == (1, 50.0)
    assert (summary.highest_load.load, summary.highest_load.target_rps) == (100.0, 100.0)
    assert summary.highest_load.p99_sched_ms is not None
    assert summary.highest_load.p99_sched_ms > 900


def test_check_rules_on_corrected_latency(open_run, capsys):
    levels = analyse_run(open_run, progress=False).levels
    results = check_rules(levels, ["p99_ms<=200", "p99_sched_ms<=200", "p95_sched_ms<=200@rate<=50"])
    assert results["passed"].tolist() == [True, False, True]
    assert results["at_load"].tolist()[1] == 100.0
    assert main(["check", str(open_run), "--rule", "p99_ms<=200", "--rule", "p99_sched_ms<=200"]) == 1
    out = capsys.readouterr().out
    assert "at req/s" in out
    assert "p99_sched_ms<=200" in out
    assert "FAIL" in out


def test_check_help_names_the_corrected_latency_rules(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "p95_sched_ms" in out
    assert "p99_sched_ms" in out
    assert "coordinated omission" in out


def test_report_shows_rate_corrected_latency_and_late_arrivals(open_run, capsys):
    out_dir = open_run.parent / "report"
    assert main(["report", str(open_run), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "level rate/s      n    req/s" in out
    assert "p95 sch  p99 sch  lag p99  late%" in out
    assert "tested: rate 100 → 50 req/s, 10 s each" in out
    assert "warning: at 100 req/s offered, " in out
    assert "latency knee: 50 req/s; fails from 100 req/s: p95_sched_ms above the 200 ms SLO" in out
    csv = pd.read_csv(out_dir / "levels.csv")
    assert {"target_rps", "load", "load_unit", "p99_sched_ms", "lag_p99_ms", "late_share"} <= set(csv.columns)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["load_unit"] == "req/s"
    assert summary["highest_load"]["p99_sched_ms"] > 900
    assert summary["latency_knee"]["first_bad_load"] == 100.0
    assert summary["latency_knee"]["unit"] == "req/s"
    html = (out_dir / "report.html").read_text()
    assert "offered req/s" in html
    assert "p99 ms from schedule" in html
    assert "50 to 100 req/s offered" in html


def test_latency_chart_draws_both_curves(open_run):
    levels = analyse_run(open_run, progress=False).levels
    ax = plot_latency(levels).axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "p99" in labels
    assert "p99 from schedule" in labels
    assert ax.get_xlabel() == "offered load (req/s)"


def test_closed_model_run_has_no_open_model_columns(make_run):
    levels = analyse_run(make_run(), progress=False).levels
    assert "p99_sched_ms" not in levels.columns
    assert set(levels["load_unit"]) == {"users"}
    assert levels["load"].tolist() == levels["users"].tolist()


def test_over_time_chart_shows_the_target_rate_per_stage(open_run):
    joined = analyse_run(open_run, progress=False).joined
    fig = plot_over_time(joined, bin_s=5.0)
    rate_ax = fig.axes[1]
    target = rate_ax.get_lines()[0].get_ydata()
    assert list(target) == [100.0, 100.0, 50.0, 50.0]
    assert rate_ax.get_ylabel().startswith("rate (req/s)")
    assert fig.axes[0].get_title() == "Accuracy, failures, latency and target rate over time (5 s bins)"
