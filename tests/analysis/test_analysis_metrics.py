from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run
from scipy import stats as sps
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    recall_score,
    root_mean_squared_error,
)

from loadgrade.analysis import (
    AnalysisInputError,
    assign_levels,
    holm_adjust,
    inflight_concurrency,
    join_truth,
    level_table,
    mcnemar_test,
    newcombe_interval,
    per_class_recall,
    regression_metrics,
    wilson_interval,
)
from loadgrade.analysis.stats import sample_wilson_interval

LEVELS = (Level(2, 400, 0.95, latency_ms=20), Level(8, 400, 0.9, 0.05, 60), Level(32, 600, 0.7, 0.2, 150))


def prepared(levels=LEVELS, *, seed=0, drop_stage=False, **kwargs):
    records, truth, stages = synth_run(levels, seed=seed, **kwargs)
    if drop_stage:
        records = records.drop(columns=["stage", "target_users"])
    joined, summary = join_truth(records, truth.rename(columns={"id": "sample_id"}))
    joined["level"], bounds = assign_levels(joined, stages=None if drop_stage else stages)
    return joined, bounds, summary


# --- stats ---------------------------------------------------------------------------------------


def test_wilson_matches_scipy():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 5000, size=200)
    k = rng.binomial(n, rng.random(200))
    k[:3] = [0, n[1], 1]
    for confidence in (0.9, 0.95, 0.99):
        low, high = wilson_interval(k, n, confidence=confidence)
        for i in range(len(n)):
            ci = sps.binomtest(int(k[i]), int(n[i])).proportion_ci(confidence_level=confidence, method="wilson")
            assert low[i] == pytest.approx(ci.low, abs=1e-12)
            assert high[i] == pytest.approx(ci.high, abs=1e-12)


def test_wilson_known_value_and_bad_input():
    # Hand-checked: 81/263 -> 0.2553 .. 0.3662 (Newcombe 1998, table I)
    low, high = wilson_interval(81, 263)
    assert (round(float(low), 4), round(float(high), 4)) == (0.2553, 0.3662)
    with pytest.raises(AnalysisInputError, match="successes cannot exceed"):
        wilson_interval(5, 4)
    with pytest.raises(AnalysisInputError, match="confidence must be between 0 and 1"):
        wilson_interval(1, 4, confidence=95)


def test_wilson_coverage_over_1000_simulated_levels():
    rng = np.random.default_rng(7)
    for p, n in ((0.95, 300), (0.7, 80), (0.99, 1000)):
        k = rng.binomial(n, p, size=1000)
        low, high = wilson_interval(k, n)
        assert np.mean((low <= p) & (p <= high)) >= 0.94


def test_newcombe_published_example():
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80 -> 0.0524 .. 0.3339 for p1 - p2
    diff, low, high = newcombe_interval(56, 70, 48, 80)
    assert (round(-float(high), 4), round(-float(low), 4)) == (0.0524, 0.3339)
    assert float(diff) == pytest.approx(-0.2)


def test_mcnemar_exact_and_chi2():
    p, method = mcnemar_test(3, 9)
    assert method == "exact"
    assert p == pytest.approx(sps.binomtest(3, 12, 0.5).pvalue, abs=1e-12)
    p, method = mcnemar_test(40, 20)
    assert method == "chi2"
    assert p == pytest.approx(sps.chi2.sf(19**2 / 60, 1), abs=1e-12)
    assert mcnemar_test(0, 0) == (1.0, "exact")


def test_holm_by_hand():
    adjusted = holm_adjust([0.01, 0.02, 0.04, 0.5])
    np.testing.assert_allclose(adjusted, [0.04, 0.06, 0.08, 0.5])


# --- levels --------------------------------------------------------------------------------------


def test_stage_levels_and_offered_users():
    joined, bounds, _ = prepared()
    table = level_table(joined, bounds, task="classification")
    assert table["level"].tolist() == [0, 1, 2]
    assert table["users"].tolist() == [2.0, 8.0, 32.0]
    assert table["duration_s"].tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert table["n"].tolist() == [400, 400, 600]
    assert table["throughput_rps"].tolist() == pytest.approx([40.0, 40.0, 60.0])


def test_time_windows_without_stages():
    joined, bounds, _ = prepared(drop_stage=True)
    assert bounds["kind"].unique().tolist() == ["window"]
    table = level_table(joined, bounds, task="classification")
    assert len(table) == 3
    assert table["users"].tolist() == [2.0, 8.0, 32.0]
    joined["level"], bounds = assign_levels(joined, window_s=2.5)
    assert len(bounds) == 12
    with pytest.raises(AnalysisInputError, match="window_s must be a positive number of seconds, got 0"):
        assign_levels(joined, window_s=0)


def test_inflight_concurrency_is_exact():
    rng = np.random.default_rng(3)
    records = pd.DataFrame({"t_sent": 1795000000 + rng.random(300) * 10, "latency_ms": rng.exponential(400, 300)})
    lo = 1795000000 + np.array([0.0, 2.5, 5.0, 9.9])
    hi = lo + np.array([2.5, 2.5, 5.0, 3.0])
    mean, top = inflight_concurrency(records, lo, hi)
    # Brute force on times relative to the first send: epoch floats only resolve ~0.2 µs.
    origin = records["t_sent"].min()
    start = records["t_sent"].to_numpy() - origin
    end = start + records["latency_ms"].to_numpy() / 1000
    lo, hi = lo - origin, hi - origin
    for i in range(len(lo)):
        overlap = np.clip(np.minimum(end, hi[i]) - np.maximum(start, lo[i]), 0, None).sum()
        assert mean[i] == pytest.approx(overlap / (hi[i] - lo[i]), rel=1e-9)
        probes = np.concatenate([[lo[i]], start[(start >= lo[i]) & (start < hi[i])]])
        brute = max(int(((start <= t) & (end > t)).sum()) for t in probes)
        assert top[i] == brute


# --- metrics agree with scikit-learn and numpy ----------------------------------------------------


def test_level_metrics_agree_with_sklearn_and_numpy():
    joined, bounds, _ = prepared()
    table = level_table(joined, bounds, task="classification", slo_latency_ms=100.0).set_index("level")
    recall_table = per_class_recall(joined)
    for level, group in joined.groupby("level"):
        row = table.loc[level]
        scored = group[group["ok"] & group["has_truth"]]
        yt, yp = scored["y_true"].to_numpy(), scored["y_pred"].to_numpy()
        assert row["accuracy"] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, yp), abs=1e-12)
        for average in ("macro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(yt, yp, average=average, zero_division=0.0)
            assert row[f"precision_{average}"] == pytest.approx(p, abs=1e-12)
            assert row[f"recall_{average}"] == pytest.approx(r, abs=1e-12)
            assert row[f"f1_{average}"] == pytest.approx(f, abs=1e-12)
        recalls = recall_score(yt, yp, labels=["0", "1", "2"], average=None)
        np.testing.assert_allclose(row[["recall[0]", "recall[1]", "recall[2]"]].to_numpy(float), recalls, atol=1e-12)
        np.testing.assert_allclose(recall_table.loc[level].to_numpy(float), recalls, atol=1e-12)
        correct = (group["ok"] & (group["y_pred"] == group["y_true"])).to_numpy(bool)
        assert row["effective_accuracy"] == pytest.approx(correct.mean(), abs=1e-12)
        # the intervals take the sample as the unit: per-sample counts of correct answers and requests
        per_sample = group.assign(hit=correct).groupby("sample_id")["hit"].agg(["sum", "size"])
        low, high, n_eff = sample_wilson_interval(per_sample["sum"], per_sample["size"])
        assert (row["effective_accuracy_low"], row["effective_accuracy_high"]) == (low, high)
        assert row["effective_accuracy_n_eff"] == n_eff <= len(group)
        answered = scored.assign(hit=scored["y_pred"] == scored["y_true"]).groupby("sample_id")["hit"]
        low, high, _ = sample_wilson_interval(answered.sum(), answered.size())
        assert (row["accuracy_low"], row["accuracy_high"]) == (low, high)
        latency = scored["latency_ms"].to_numpy()
        for q in (50, 90, 95, 99):
            assert row[f"p{q}_ms"] == pytest.approx(np.percentile(latency, q), abs=1e-12)
        assert row["max_ms"] == latency.max()
        assert row["error_rate"] == pytest.approx((~group["ok"]).mean(), abs=1e-12)
        timeouts = (group["error_kind"] == "timeout").mean()
        assert row["error_rate_timeout"] == pytest.approx(timeouts, abs=1e-12)
        good = correct & (group["latency_ms"].to_numpy() <= 100.0)
        assert row["goodput_rps"] == pytest.approx(good.sum() / 10.0, abs=1e-9)


def test_error_rates_by_kind_add_up():
    joined, bounds, _ = prepared()
    table = level_table(joined, bounds, task="classification")
    kinds = [f"error_rate_{k}" for k in ("http", "timeout", "connection", "decode", "extract")]
    np.testing.assert_allclose(table[kinds].sum(axis=1), table["error_rate"], atol=1e-12)
    assert table.loc[0, "error_rate"] == 0.0


def test_goodput_without_slo_counts_correct_answers():
    joined, bounds, _ = prepared()
    table = level_table(joined, bounds, task="classification")
    np.testing.assert_allclose(table["goodput_rps"], table["n_correct"] / table["duration_s"])


def test_regression_level_metrics_agree_with_sklearn():
    rng = np.random.default_rng(5)
    n = 300
    truth = pd.DataFrame({"sample_id": [str(i) for i in range(n)], "label": rng.normal(100, 20, n)})
    noise = np.where(np.arange(n) < 150, 1.0, 8.0)
    records = pd.DataFrame(
        {
            "sample_id": truth["sample_id"],
            "ok": True,
            "prediction": [f"{v:.6f}" for v in truth["label"] + rng.normal(0, noise)],
            "error_kind": "",
            "t_sent": np.arange(n) / 10.0,
            "latency_ms": 10.0,
            "users_active": np.where(np.arange(n) < 150, 1, 4),
        }
    )
    joined, summary = join_truth(records, truth)
    assert summary.task == "regression"
    joined["level"], bounds = assign_levels(joined, window_s=15)
    table = level_table(joined, bounds, task="regression")
    for level, group in joined.groupby("level"):
        yt, yp = group["y_true"].to_numpy(), group["y_pred"].to_numpy()
        row = table.set_index("level").loc[level]
        assert row["mae"] == pytest.approx(mean_absolute_error(yt, yp), abs=1e-12)
        assert row["rmse"] == pytest.approx(root_mean_squared_error(yt, yp), abs=1e-12)
        assert row["r2"] == pytest.approx(r2_score(yt, yp), abs=1e-12)
    assert table["mae"].iloc[1] > table["mae"].iloc[0]
    assert np.isnan(table["accuracy"]).all()
    assert regression_metrics([], [])["mae"] != regression_metrics([], [])["mae"]


def test_level_table_names_missing_columns():
    joined, bounds, _ = prepared()
    with pytest.raises(AnalysisInputError, match=r"no column 'level' \(use join_truth and assign_levels first\)"):
        level_table(joined.drop(columns=["level"]), bounds, task="classification")


@pytest.mark.parametrize("dense", [True, False])
def test_label_pair_counts_give_the_same_metrics_as_the_rows(monkeypatch, dense):
    """The per-level speed-up: distinct (true, predicted) pairs weighted by count are the rows, to the last bit."""
    from loadgrade.analysis.metrics import LabelPairs, classification_metrics

    if not dense:
        monkeypatch.setattr(LabelPairs, "_DENSE_MAX", 0)
    rng = np.random.default_rng(7)
    classes = np.array(["0", "1", "2", "3", "10", "cat"], dtype=object)
    y_true = classes[rng.integers(0, len(classes), 5000)]
    y_pred = np.where(rng.random(5000) < 0.8, y_true, classes[rng.integers(0, len(classes), 5000)])
    rows = rng.random(5000) < 0.6
    pairs = LabelPairs(y_true, y_pred)
    true_keys, pred_keys, weight = pairs.counts(rows)
    assert weight.sum() == rows.sum()
    assert len(weight) <= len(classes) ** 2
    assert classification_metrics(true_keys, pred_keys, sample_weight=weight) == classification_metrics(
        y_true[rows], y_pred[rows]
    )
    labels = sorted(set(classes))
    expected = recall_score(y_true[rows], y_pred[rows], labels=labels, average=None, zero_division=np.nan)
    got = recall_score(true_keys, pred_keys, labels=labels, average=None, zero_division=np.nan, sample_weight=weight)
    np.testing.assert_array_equal(got, expected)
