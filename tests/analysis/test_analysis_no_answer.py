"""A successful response whose prediction is JSON ``null`` (no answer) is a wrong answer, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    root_mean_squared_error,
)

from loadgrade.analysis import NO_ANSWER, assign_levels, join_truth, level_table, prediction_key
from loadgrade.analysis.cli import main


def _with_nulls(records: pd.DataFrame, *, every: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    records = records.copy()
    null = records["ok"].to_numpy(dtype=bool) & (np.arange(len(records)) % every == 0)
    records.loc[null, "prediction"] = "null"
    return records, null


def _levels(records: pd.DataFrame, truth: pd.DataFrame, stages, task=None):
    joined, counts = join_truth(records, truth.rename(columns={"id": "sample_id"}), task=task)
    joined["level"], bounds = assign_levels(joined, stages=stages)
    return joined, counts, level_table(joined, bounds, task=counts.task)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_null_prediction_is_a_wrong_class_not_a_class_of_its_own():
    records, truth, stages = synth_run([Level(2, 300, 0.95), Level(8, 300, 0.8, error_rate=0.1)], seed=3)
    records, null = _with_nulls(records)
    joined, counts, table = _levels(records, truth, stages)
    assert counts.n_no_answer == int(null.sum()) > 0
    assert not joined.loc[null, "correct"].any()
    assert (joined.loc[null, "y_pred"] == NO_ANSWER).all()
    assert joined["no_answer"].to_numpy(dtype=bool).tolist() == null.tolist()
    for row in table.to_dict("records"):
        scored = joined[(joined["level"] == row["level"]) & joined["ok"]]
        y_true = scored["y_true"].to_numpy(dtype=object)
        y_pred = scored["y_pred"].to_numpy(dtype=object)
        assert row["n_no_answer"] == int((y_pred == NO_ANSWER).sum())
        assert row["no_answer_rate"] == pytest.approx(row["n_no_answer"] / len(scored), abs=1e-12)
        assert row["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
        classes = sorted(set(y_true) | set(y_pred) - {NO_ANSWER})
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0.0)
        assert (row["precision_macro"], row["recall_macro"], row["f1_macro"]) == pytest.approx((p, r, f), abs=1e-12)
        # effective accuracy counts errors and no-answers alike as wrong
        assert row["effective_accuracy"] == pytest.approx(row["n_correct"] / row["n_truth"], abs=1e-12)


def test_all_null_predictions_are_zero_accuracy_not_a_type_mismatch():
    records, truth, stages = synth_run([Level(2, 50)])
    records.loc[records["ok"], "prediction"] = "null"
    _, counts, table = _levels(records, truth, stages)
    assert counts.n_no_answer == 50
    assert table["accuracy"].tolist() == [0.0]
    assert table["no_answer_rate"].tolist() == [1.0]


def test_null_regression_prediction_is_left_out_of_the_errors_and_counted():
    rng = np.random.default_rng(5)
    n = 240
    y = rng.normal(100, 20, size=60)
    records = pd.DataFrame(
        {
            "sample_id": [f"s{i % 60}" for i in range(n)],
            "ok": True,
            "prediction": [json.dumps(float(y[i % 60] + rng.normal(0, 3))) for i in range(n)],
            "error_kind": "",
            "t_sent": np.arange(n) * 0.1,
            "latency_ms": 20.0,
            "users_active": 1,
        }
    )
    null = np.arange(n) % 9 == 0
    records.loc[null, "prediction"] = np.where(np.arange(null.sum()) % 2, "null", "[null]")
    truth = pd.DataFrame({"id": [f"s{i}" for i in range(60)], "label": y})
    joined, counts, table = _levels(records, truth, None, task="regression")
    assert counts.n_no_answer == int(null.sum())
    assert any("left out of MAE" in a for a in counts.assumptions)
    answered = ~null
    t = joined["level"].to_numpy()
    for row in table.to_dict("records"):
        rows = answered & (t == row["level"])
        y_true, y_pred = joined["y_true"].to_numpy()[rows], joined["y_pred"].to_numpy()[rows]
        assert row["mae"] == pytest.approx(mean_absolute_error(y_true, y_pred), abs=1e-12)
        assert row["rmse"] == pytest.approx(root_mean_squared_error(y_true, y_pred), abs=1e-12)
        assert row["n_no_answer"] == int((null & (t == row["level"])).sum())
        # a null answer is not a good answer
        assert row["goodput_rps"] == pytest.approx(rows.sum() / row["duration_s"], abs=1e-9)


def test_null_text_answer_matches_nothing():
    records = pd.DataFrame({"sample_id": ["a", "b", "c"], "ok": True, "prediction": ['"yes"', "null", '"no answer"']})
    truth = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": ["yes", "No answer", "no answer"]})
    joined, counts = join_truth(records, truth, task="text")
    assert joined["correct"].tolist() == [True, False, True]
    assert joined["correct_normalised"].tolist() == [True, False, True]
    assert counts.n_no_answer == 1


def test_prediction_key_agrees_with_the_join():
    assert prediction_key("null", task="classification") == NO_ANSWER
    assert prediction_key("[null]", task="text") == NO_ANSWER
    assert np.isnan(prediction_key("null", task="regression"))


def test_report_on_a_run_with_null_answers(make_run, capsys):
    run_dir = make_run((Level(2, 200, 0.95), Level(8, 200, 0.9)))
    records = pd.read_csv(run_dir / "records.csv", dtype=str, keep_default_na=False)
    records.loc[records.index % 5 == 0, "prediction"] = "null"
    records.to_csv(run_dir / "records.csv", index=False)
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "80 successful responses held no answer (null); counted as wrong" in out
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["counts"]["n_no_answer"] == 80
    assert "no answer" in (run_dir / "analysis" / "report.html").read_text()
