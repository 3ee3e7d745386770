"""Every verdict counts every request: a shed, failed or timed-out request is a lost answer, never "holds".

The runs here are built by hand from a deterministic model (sample i is answered right unless i is 0 mod 20,
so 95 % of the dataset) so that every count below is known exactly: which requests fail, and how, is chosen
request by request with a seeded permutation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import RECORD_COLUMNS, T0, write_run

from loadgrade.analysis import analyse_run, assign_levels, check_rules, join_truth, level_table, wilson_interval
from loadgrade.analysis.cli import main
from loadgrade.analysis.plots import plot_confusion
from loadgrade.analysis.report import confusion_level, describe_knee
from loadgrade.analysis.stats import sample_wilson_interval

N_SAMPLES = 200
N_CLASSES = 4
LABELS = np.arange(N_SAMPLES) % N_CLASSES


def _right(sample: np.ndarray) -> np.ndarray:
    return sample % 20 != 0


@dataclass
class Stage:
    users: int
    n: int
    #: (error_kind, status_code, how many requests) failed this way, chosen at random among the stage's requests
    failures: Sequence[tuple[str, int, int]] = ()
    #: requests answered with a wrong class on top of the model's own mistakes
    extra_wrong: int = 0
    samples: np.ndarray | None = field(default=None)
    duration: float = 10.0


def _records(stages: Sequence[Stage], *, seed: int = 0, labels: np.ndarray = LABELS):
    rng = np.random.default_rng(seed)
    frames, infos = [], []
    start = T0
    for index, stage in enumerate(stages):
        sample = stage.samples if stage.samples is not None else np.arange(stage.n) % len(labels)
        n = len(sample)
        kind = np.full(n, "", dtype=object)
        status = np.full(n, 200)
        order = rng.permutation(n)
        used = 0
        for error_kind, code, count in stage.failures:
            rows = order[used : used + count]
            kind[rows], status[rows] = error_kind, code
            used += count
        ok = kind == ""
        right = _right(sample)
        wrong_rows = order[used : used + stage.extra_wrong]
        right[wrong_rows] = False
        true = labels[sample]
        pred = np.where(right, true, (true + 1) % max(N_CLASSES, 2))
        t_sent = start + np.sort(rng.random(n)) * stage.duration
        frames.append(
            pd.DataFrame(
                {
                    "request_id": [f"r{index}-{i}" for i in range(n)],
                    "sample_id": [f"s{i:05d}" for i in sample],
                    "worker_index": 0,
                    "user_id": rng.integers(0, stage.users, size=n),
                    "t_sent": t_sent,
                    "latency_ms": np.where(ok, 20.0 + 2 * stage.users, 3.0),
                    "status_code": np.where(kind == "http", status, np.where(ok, 200, 0)),
                    "ok": ok,
                    "error_kind": kind,
                    "error": np.where(ok, "", [f"{k} {s}" for k, s in zip(kind, status, strict=True)]),
                    "prediction": np.where(ok, pred.astype(str), ""),
                    "response_bytes": np.where(ok, 20, 0),
                    "users_active": stage.users,
                    "pass": 1,
                    "stage": index,
                    "target_users": stage.users,
                }
            )[RECORD_COLUMNS]
        )
        infos.append(
            {
                "index": index,
                "users": stage.users,
                "spawn_rate": 10.0,
                "t_start": start,
                "t_end": start + stage.duration,
            }
        )
        start += stage.duration
    truth = pd.DataFrame({"id": [f"s{i:05d}" for i in range(len(labels))], "label": labels})
    return pd.concat(frames, ignore_index=True), truth, infos


def _run(tmp_path: Path, stages: Sequence[Stage], *, name: str = "run", seed: int = 0, **info) -> Path:
    records, truth, infos = _records(stages, seed=seed, labels=info.pop("labels", LABELS))
    run_dir = write_run(tmp_path / name, records, truth, stages=infos, slo=info.pop("slo", None))
    if info:
        path = run_dir / "run.json"
        data = json.loads(path.read_text())
        for key, value in info.items():
            if key in ("protocol", "passes"):
                target = data["scenario"] if key == "protocol" else data["scenario"]["dataset"]
                target[key] = value
            else:
                data[key] = value
        path.write_text(json.dumps(data))
    return run_dir


def _levels(run_dir: Path) -> pd.DataFrame:
    return analyse_run(run_dir, progress=False).levels.set_index("level")


RAMP = (Stage(2, 400), Stage(8, 400))


# --- a server that sheds load is worse, never "holds" --------------------------------------------


def test_shedding_98_percent_with_429_is_the_knee_and_fails_the_quality_rule(tmp_path, capsys):
    run_dir = _run(tmp_path, (*RAMP, Stage(32, 1000, failures=[("http", 429, 980)])))
    analysis = analyse_run(run_dir, progress=False)
    summary, levels = analysis.summary, analysis.levels.set_index("level")
    # the 20 answers the server gave are as right as ever: among answered requests nothing changed
    assert levels.loc[2, "answered_accuracy_drop"] == 0.0
    assert levels.loc[2, "accuracy"] == pytest.approx(levels.loc[0, "accuracy"], abs=0.06)
    assert levels.loc[2, "accuracy_drop"] > 0.9
    assert summary.degraded_levels == [2]
    assert summary.quality_knee is not None
    assert (summary.quality_knee.level, summary.quality_knee.first_bad_level) == (1, 2)
    assert "holds" not in describe_knee("quality knee", summary.quality_knee, caveat=summary.quality_caveat)
    assert summary.headline == (
        "quality breaks at 32 users: accuracy over every request 95.0 % → 1.9 % (-93.1 points [95 % CI -96.2, -90.0], "
        "paired on 200 samples), through failed requests: 980 of 1000 requests failed (98.0 %: HTTP 429 ×980), "
        "1 answered wrongly (0.1 %, 5.0 % at baseline); among answered requests 95.0 % → 95.0 %"
    )
    assert summary.quality_breaks_at is not None
    assert summary.quality_breaks_at.error_rate_shed == pytest.approx(0.98)
    assert main(["check", str(run_dir), "--rule", "accuracy_drop<=0.01", "--rule", "p95_ms<=100"]) == 1
    out = capsys.readouterr().out
    assert "accuracy_drop<=0.01" in out
    assert "FAIL" in out
    assert main(["check", str(run_dir), "--rule", "answered_accuracy_drop<=0.01"]) == 0
    assert main(["check", str(run_dir), "--rule", "effective_accuracy_drop<=0.01"]) == 1
    assert main(["check", str(run_dir), "--rule", "shed_rate<=1%"]) == 1
    assert main(["check", str(run_dir), "--rule", "accuracy_drop<=0.01", "--metric", "accuracy"]) == 1


def test_judged_among_answered_requests_shedding_is_still_named(tmp_path):
    run_dir = _run(tmp_path, (*RAMP, Stage(32, 1000, failures=[("http", 429, 980)])))
    summary = analyse_run(run_dir, metric="accuracy", progress=False).summary
    assert summary.degraded_levels == []
    knee = describe_knee("quality knee", summary.quality_knee, caveat=summary.quality_caveat)
    assert knee == (
        "quality knee: none detected up to the highest load tested (32 users), but at 32 users 98.0 % more of the "
        "requests failed than at the baseline (HTTP 429 ×980), which accuracy among answered requests does not count"
    )
    assert "holds" not in summary.headline


def test_last_level_answering_only_503_still_writes_the_report(tmp_path, capsys):
    run_dir = _run(tmp_path, (*RAMP, Stage(16, 400, failures=[("http", 503, 400)])))
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    out_dir = run_dir / "analysis"
    assert {"report.html", "confusion.png", "accuracy.png", "errors.png", "levels.csv"} <= {
        p.name for p in out_dir.iterdir()
    }
    headline = (
        "quality breaks at 16 users: accuracy over every request 95.0 % → 0.0 % (-95.0 points [95 % CI -97.3, -90.6], "
        "paired on 200 samples), through failed requests: all 400 requests failed (100.0 %: HTTP 503 ×400); "
        "no request was answered"
    )
    assert headline in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["headline"] == headline
    assert summary["degraded_levels"] == [2]
    assert summary["quality_breaks_at"]["failures"] == "http 503: 400"
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "<strong>Quality breaks at 16 users</strong>: accuracy over every request 95.0 % → 0.0 %" in page
    assert "all 400 requests failed (100.0 %: HTTP 503 ×400)" in page
    levels = pd.read_csv(out_dir / "levels.csv").set_index("level")
    assert np.isnan(levels.loc[2, "accuracy"])
    assert levels.loc[2, "effective_accuracy"] == 0.0
    assert levels.loc[2, "n_shed"] == 400


def test_the_confusion_matrix_of_a_level_without_answers_says_so():
    records, truth, stages = _records((Stage(2, 200), Stage(8, 200, failures=[("http", 503, 200)])))
    joined, _ = join_truth(records, truth.rename(columns={"id": "sample_id"}))
    joined["level"], _ = assign_levels(joined, stages=stages)
    figure = plot_confusion(joined, levels=[0, 1], titles=["baseline", "first degraded level"])
    assert [t.get_text() for t in figure.axes[1].texts] == [
        "no successful answer at this level (200 requests, 200 failed)"
    ]
    assert figure.axes[1].get_title() == "first degraded level"
    assert len(figure.axes[0].texts) == N_CLASSES**2  # the counts of the baseline's matrix


def test_a_run_without_any_answer_is_reported_and_judged_not_comparable(tmp_path, capsys):
    run_dir = _run(tmp_path, (Stage(2, 200, failures=[("http", 503, 200)]), Stage(8, 200, [("http", 503, 200)])))
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert (
        "WARNING: no request of the run was answered (http 503: 100.0 %): accuracy among answered requests cannot "
        "be measured, and over every request it is 0"
    ) in out
    assert (
        "quality cannot be judged: the baseline, 2 users, answered no request; 100.0 % of requests "
        "failed (HTTP 503 ×200)"
    ) in out
    assert "holds" not in out
    assert (run_dir / "analysis" / "report.html").exists()
    assert main(["check", str(run_dir), "--rule", "accuracy>=0.5"]) == 1
    assert main(["check", str(run_dir), "--rule", "answered_accuracy>=0.5"]) == 1
    assert "FAIL: NO DATA" in capsys.readouterr().out


def test_timing_out_947_per_mille_is_degraded(tmp_path):
    run_dir = _run(tmp_path, (*RAMP, Stage(32, 1000, failures=[("timeout", 0, 947)])))
    summary = analyse_run(run_dir, progress=False).summary
    assert summary.degraded_levels == [2]
    assert summary.quality_breaks_at is not None
    assert summary.quality_breaks_at.effective_accuracy == pytest.approx(0.052)  # 52 of the 53 answers right (seed 0)
    assert "through failed requests: 947 of 1000 requests failed (94.7 %: timeout ×947)" in summary.headline
    # the 53 answers that came were right as often as at the baseline: the loss is the timeouts, not the model
    assert summary.headline.endswith("among answered requests 95.0 % → 98.1 %")


def test_too_few_requests_to_be_significant_is_never_called_holding(tmp_path):
    # the top level sends 5 requests, all shed: a 100 % loss on 5 samples is not significant at alpha 0.05
    run_dir = _run(tmp_path, (*RAMP, Stage(64, 5, failures=[("http", 503, 5)], samples=np.arange(1, 6))))
    summary = analyse_run(run_dir, progress=False).summary
    assert summary.degraded_levels == []
    assert summary.quality_caveat == (
        "at 64 users accuracy over every request fell 100.0 points (5 paired samples: too few to be significant)"
    )
    knee = describe_knee("quality knee", summary.quality_knee, caveat=summary.quality_caveat)
    assert knee == (
        "quality knee: none detected up to the highest load tested (64 users), but at 64 users accuracy over every "
        "request fell 100.0 points (5 paired samples: too few to be significant)"
    )
    assert summary.headline.startswith("no level is significantly worse than baseline, but at 64 users accuracy")
    assert "holds" not in summary.headline


def test_wrong_answers_alone_break_quality_as_wrong_answers(tmp_path):
    run_dir = _run(tmp_path, (*RAMP, Stage(32, 400, extra_wrong=120)))
    summary = analyse_run(run_dir, progress=False).summary
    assert summary.degraded_levels == [2]
    assert summary.headline.startswith("quality breaks at 32 users: accuracy over every request 95.0 % → 66.8 %")
    assert summary.headline.endswith(
        "through wrong answers: 133 of 400 requests answered wrongly (33.2 %, 5.0 % at baseline), none failed"
    )


# --- the loss of a level, split by what it means ---------------------------------------------------

MIXED = [
    ("http", 429, 31),
    ("http", 503, 47),
    ("http", 400, 5),
    ("http", 404, 7),
    ("http", 302, 2),
    ("http", 500, 11),
    ("http", 502, 3),
    ("timeout", 0, 13),
    ("connection", 0, 17),
    ("decode", 0, 19),
    ("extract", 0, 23),
]


def test_the_loss_split_equals_hand_counts(tmp_path):
    run_dir = _run(tmp_path, (Stage(2, 400), Stage(8, 1000, failures=MIXED, extra_wrong=40)))
    levels = _levels(run_dir)
    records = pd.read_csv(run_dir / "records.csv", keep_default_na=False)
    top = records[records["stage"] == 1]
    failed = top[~top["ok"]]
    status = failed["status_code"]
    http = failed["error_kind"] == "http"
    sample = top["sample_id"].str[1:].astype(int).to_numpy()
    answered_wrong = top["ok"].to_numpy() & (top["prediction"].astype(str).to_numpy() != LABELS[sample].astype(str))
    row = levels.loc[1]
    assert row["n"] == 1000
    assert row["n_failed"] == len(failed) == 178
    assert row["n_shed"] == int((http & status.isin([429, 503])).sum()) == 78
    assert row["n_client_error"] == int((http & status.isin([302, 400, 404])).sum()) == 14
    assert row["n_server_error"] == int((http & status.isin([500, 502])).sum()) == 14
    for kind, count in (("timeout", 13), ("connection", 17), ("decode", 19), ("extract", 23)):
        assert row[f"n_{kind}"] == int((failed["error_kind"] == kind).sum()) == count
        assert row[f"error_rate_{kind}"] == pytest.approx(count / 1000)
    assert row["n_wrong"] == int(answered_wrong.sum())
    assert row["n_wrong"] + row["n_correct"] + row["n_failed"] == 1000
    assert row["wrong_rate"] == pytest.approx(row["n_wrong"] / 1000)
    assert row["lost_rate"] == pytest.approx((row["n_wrong"] + 178) / 1000)
    assert row["lost_rate"] == pytest.approx(1 - row["effective_accuracy"])
    assert (row["error_rate_shed"], row["error_rate_client"], row["error_rate_server"]) == pytest.approx(
        (0.078, 0.014, 0.014)
    )
    assert row["error_rate_http"] == pytest.approx(row["error_rate_shed"] + 0.028)
    assert row["failures"] == (
        "http 503: 47; http 429: 31; extract: 23; decode: 19; connection: 17; timeout: 13; http 500: 11; "
        "http 404: 7; http 400: 5; http 502: 3; http 302: 2"
    )
    assert (levels.loc[0, "n_failed"], levels.loc[0, "failures"], levels.loc[0, "lost_rate"]) == (0, "", 0.05)


@pytest.mark.parametrize(
    ("failures", "shed", "client"),
    [([("http", 400, 150), ("http", 404, 50)], 0.0, 0.5), ([("http", 429, 150), ("http", 503, 50)], 0.5, 0.0)],
    ids=["scenario-wrong", "server-sheds"],
)
def test_client_errors_are_told_apart_from_shedding(tmp_path, failures, shed, client):
    run_dir = _run(tmp_path, (Stage(2, 400), Stage(8, 400, failures=failures)))
    levels = analyse_run(run_dir, progress=False).levels
    row = levels.set_index("level").loc[1]
    assert (row["error_rate_shed"], row["error_rate_client"], row["error_rate_server"]) == (shed, client, 0.0)
    results = check_rules(levels, ["shed_rate<=0.01", "client_error_rate==0", "failed_rate<=0.5"])
    assert results["measured"].tolist() == [shed, client, 0.5]
    assert results["passed"].tolist() == [shed == 0, client == 0, True]


# --- coverage, chance level, lost workers ---------------------------------------------------------


def test_coverage_of_each_level_and_the_warning_for_a_level_that_skipped_samples(tmp_path, capsys):
    run_dir = _run(tmp_path, (Stage(2, 100), Stage(8, 400), Stage(16, 150, samples=np.arange(50, 200))))
    analysis = analyse_run(run_dir, progress=False)
    levels = analysis.levels.set_index("level")
    assert levels["n_samples"].tolist() == [100, 200, 150]
    assert levels["coverage"].tolist() == [0.5, 1.0, 0.75]
    assert levels["covered"].tolist() == [False, True, False]
    assert levels["vs_baseline_n_pairs"].tolist() == [100, 100, 50]
    assert analysis.summary.warnings == [
        "the level at 2 users sent 100 of 200 samples (50 %): its comparison uses only the samples both levels sent",
        "the level at 16 users sent 150 of 200 samples (75 %): its comparison uses only the samples both levels sent",
    ]
    assert main(["report", str(run_dir), "--no-charts"]) == 0
    assert "WARNING: the level at 2 users sent 100 of 200 samples (50 %)" in capsys.readouterr().out
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert (summary["baseline"]["n_samples"], summary["baseline"]["coverage"]) == (100, 0.5)


def test_a_covered_run_has_no_coverage_warning(tmp_path):
    levels = _levels(_run(tmp_path, RAMP))
    assert levels["covered"].all()
    assert analyse_run(tmp_path / "run", progress=False).summary.warnings == []


CHANCE_LABELS = np.arange(N_SAMPLES) % 10


@pytest.mark.parametrize(
    ("protocol", "hint"),
    [
        (
            {"kind": "generic", "body": {}, "prediction": "outputs[0].label"},
            "check the protocol's prediction: path ('outputs[0].label') that extracts the answer",
        ),
        (
            {"kind": "openai-chat", "model": "m", "prompt": "{{input}}", "answer_regex": "digit is (\\d)"},
            "check the protocol's answer_regex ('digit is (\\\\d)') that extracts the answer",
        ),
        (
            {"kind": "flask-predict"},
            "check the flask-predict protocol's prediction: path (or answer_regex) that extracts the answer, and "
            "the dataset's label_column",
        ),
    ],
    ids=["prediction", "answer_regex", "preset"],
)
def test_a_baseline_at_chance_level_names_the_key_that_extracts_the_answer(tmp_path, protocol, hint):
    records, truth, stages = _records((Stage(2, 200), Stage(8, 200)), labels=CHANCE_LABELS)
    records.loc[records["ok"], "prediction"] = "0"  # an extraction path that always finds the same class
    run_dir = write_run(tmp_path / "run", records, truth, stages=stages)
    info = json.loads((run_dir / "run.json").read_text())
    info["scenario"]["protocol"] = protocol
    (run_dir / "run.json").write_text(json.dumps(info))
    summary = analyse_run(run_dir, progress=False).summary
    assert summary.baseline.chance_accuracy == 0.1
    assert summary.warnings == [f"baseline accuracy 10.0 % is at chance level (10.0 %) for 10 classes: {hint}"]


def test_a_good_baseline_is_not_at_chance_level(tmp_path):
    levels = _levels(_run(tmp_path, RAMP))
    assert levels["chance_accuracy"].tolist() == [0.25, 0.25]
    assert levels["n_classes"].tolist() == [4, 4]


LOST = {"client_id": "w-1", "worker_index": 1, "how": "lost", "rows_received": 150, "unrecorded_estimate": 10}


def test_passes_after_a_lost_worker_are_not_complete(tmp_path):
    run_dir = _run(tmp_path, (Stage(2, 200), Stage(8, 150)), passes=1, workers_left=[LOST])
    summary = analyse_run(run_dir, progress=False).summary
    assert (
        "the scenario replays the dataset 1 time (dataset.passes: 1), but worker 1 was lost: the samples it held "
        "were not sent, so the passes are not complete (see each level's coverage)"
    ) in summary.warnings
    graceful = _run(tmp_path, RAMP, name="graceful", passes=1, workers_left=[{**LOST, "how": "graceful"}])
    assert not [w for w in analyse_run(graceful, progress=False).summary.warnings if "passes" in w]


# --- intervals take the sample as the unit ---------------------------------------------------------


def test_a_sample_sent_ten_times_is_not_ten_independent_answers(tmp_path):
    run_dir = _run(tmp_path, (Stage(2, 200), Stage(8, 2000)))
    levels = _levels(run_dir)
    once, tenfold = levels.loc[0], levels.loc[1]
    # each sample sent once: the request-level Wilson interval
    low, high = wilson_interval(190, 200)
    assert (once["accuracy_low"], once["accuracy_high"]) == (float(low), float(high))
    assert once["accuracy_n_eff"] == 200
    # the same 200 samples ten times each, the model deterministic: still 200 samples' worth of evidence
    assert tenfold["accuracy"] == once["accuracy"] == 0.95
    assert tenfold["accuracy_n_eff"] == pytest.approx(200)
    assert (tenfold["accuracy_low"], tenfold["accuracy_high"]) == pytest.approx((float(low), float(high)))
    narrow, _ = wilson_interval(1900, 2000)
    assert tenfold["accuracy_low"] < float(narrow) - 0.01
    k = np.where(_right(np.arange(200)), 10, 0)
    assert (tenfold["effective_accuracy_low"], tenfold["effective_accuracy_high"]) == pytest.approx(
        sample_wilson_interval(k, np.full(200, 10))[:2]
    )


# --- the confusion matrix and the wrong answers show where quality breaks -------------------------


def test_confusion_and_wrong_answers_compare_with_the_first_degraded_level(tmp_path):
    run_dir = _run(tmp_path, (*RAMP, Stage(16, 400, extra_wrong=150), Stage(32, 400, extra_wrong=50)))
    assert main(["report", str(run_dir)]) == 0
    analysis = analyse_run(run_dir, progress=False)
    assert analysis.summary.degraded_levels[0] == 2
    level, which = confusion_level(analysis.summary)
    assert (level.level, which) == (2, "first degraded level")
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "The most frequent wrong answers at the first degraded level (16 users" in page
    calm = analyse_run(_run(tmp_path, RAMP, name="calm"), progress=False)
    assert confusion_level(calm.summary)[1] == "highest load"


def test_the_level_table_alone_splits_losses_without_status_codes():
    records, truth, stages = _records((Stage(2, 100, failures=[("http", 503, 10), ("timeout", 0, 5)]),))
    joined, _ = join_truth(records.drop(columns=["status_code"]), truth.rename(columns={"id": "sample_id"}))
    joined["level"], bounds = assign_levels(joined, stages=stages)
    row = level_table(joined, bounds, task="classification").iloc[0]
    # without a status an HTTP error cannot be called shedding: it is the server's
    assert (row["n_shed"], row["n_server_error"], row["n_timeout"]) == (0, 10, 5)
    assert row["failures"] == "http: 10; timeout: 5"
    assert row["coverage"] == 1.0  # of the samples the run sent, when the dataset size is not given
