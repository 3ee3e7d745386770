"""Levels are compared per sample, on the samples both answered, and lost answers count as wrong.

The model here never changes an answer: sample i is answered right unless i is 1 mod 4. Every even sample is
therefore right, the dataset as a whole 75 % right, and a baseline that replays only the even samples looks
25 points better than a level that replays them all, although nothing changed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis import AnalysisInputError, analyse_run, degradation_table

N_SAMPLES = 200
USERS = {0: 1.0, 1: 8.0, 2: 32.0, 3: 64.0}


def _right(sample: np.ndarray) -> np.ndarray:
    return sample % 4 != 1


def _records(level: int, sample: np.ndarray, *, failed_share: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Scored records of one level: the deterministic model, a share of the requests failed (no answer)."""
    ok = np.random.default_rng(seed).random(len(sample)) >= failed_share
    right = _right(sample) & ok
    return pd.DataFrame(
        {
            "level": level,
            "sample_id": [f"s{i:04d}" for i in sample],
            "ok": ok,
            "has_truth": True,
            "correct": pd.array(right, dtype="boolean"),  # as join_truth scores it: a failed request is not right
            "y_pred": np.where(ok, np.where(right, "yes", "no"), None),
        }
    )


def _joined(*frames: pd.DataFrame) -> pd.DataFrame:
    joined = pd.concat(frames, ignore_index=True)
    joined["t_sent"] = np.arange(len(joined), dtype=float)
    return joined


def _levels(joined: pd.DataFrame) -> pd.DataFrame:
    """The counts level_table reports, computed here with a plain groupby."""
    grouped = joined.assign(scored=joined["ok"] & joined["has_truth"], hit=joined["correct"].fillna(False)).groupby(
        "level"
    )
    table = grouped.agg(n_correct=("hit", "sum"), n_scored=("scored", "sum"), n_truth=("has_truth", "sum"))
    table = table.reset_index()
    table["users"] = table["level"].map(USERS)
    return table


EVEN_THRICE = np.tile(np.arange(0, N_SAMPLES, 2), 3)
ALL_ONCE = np.arange(N_SAMPLES)


@pytest.mark.parametrize("metric", ["effective_accuracy", "accuracy"])
def test_a_model_that_never_changes_an_answer_has_a_drop_of_exactly_zero(metric):
    joined = _joined(_records(0, EVEN_THRICE), _records(1, ALL_ONCE))
    levels = _levels(joined)
    table = degradation_table(joined, levels, metric=metric)
    top = table.iloc[1]
    assert top["diff"] == 0.0
    assert top["p_value"] == 1.0
    assert not top["degraded"]
    assert not top["significantly_worse"]
    assert top["n_pairs"] == N_SAMPLES // 2
    assert (top["worse_pairs"], top["better_pairs"]) == (0, 0)
    assert top["test"] == "mcnemar-exact"
    assert top["consistency"] == 1.0
    # the marginal figures differ by 25 points: they compare two different sets of samples
    assert top["marginal_diff"] == pytest.approx(-0.25)


def test_the_default_metric_counts_lost_answers():
    joined = _joined(_records(0, ALL_ONCE), _records(1, ALL_ONCE, failed_share=0.9, seed=1))
    levels = _levels(joined)
    effective = degradation_table(joined, levels).iloc[1]  # effective_accuracy is the default
    assert effective["degraded"]
    assert effective["diff"] < -0.5
    assert effective["n_pairs"] == N_SAMPLES
    assert effective["diff_high"] < 0
    assert effective["diff"] == pytest.approx(effective["marginal_diff"])  # same samples, so paired = marginal
    # the few answers that did arrive were as right as ever
    answered = degradation_table(joined, levels, metric="accuracy").iloc[1]
    assert not answered["degraded"]
    assert answered["diff"] == 0.0
    assert 0 < answered["n_pairs"] < 0.2 * N_SAMPLES


def test_a_level_without_any_answer():
    joined = _joined(_records(0, ALL_ONCE), _records(1, ALL_ONCE, failed_share=1.0))
    levels = _levels(joined)
    # every request lost: the client got nothing right, and that is a degradation
    effective = degradation_table(joined, levels, metric="effective_accuracy").iloc[1]
    assert effective["test"] == "mcnemar-chi2"
    assert effective["diff"] == pytest.approx(-0.75)
    assert effective["degraded"]
    assert effective["n_consistency"] == 0
    assert np.isnan(effective["consistency"])
    # among answered requests there is nothing to compare: no verdict either way
    answered = degradation_table(joined, levels, metric="accuracy").iloc[1]
    assert answered["test"] == "none"
    assert answered["n_pairs"] == 0
    assert np.isnan(answered["diff"])
    assert np.isnan(answered["p_holm"])
    assert not answered["degraded"]
    assert not answered["significantly_worse"]
    assert np.isnan(answered["marginal_diff"])


def test_a_level_sharing_no_sample_with_the_baseline_is_not_compared():
    odd = np.arange(1, N_SAMPLES, 2)
    joined = _joined(_records(0, EVEN_THRICE), _records(1, ALL_ONCE), _records(2, odd))
    table = degradation_table(joined, _levels(joined))
    assert table["test"].tolist() == ["baseline", "mcnemar-exact", "none"]
    assert table["n_pairs"].tolist() == [N_SAMPLES // 2, N_SAMPLES // 2, 0]
    assert not table["degraded"].any()
    # the odd samples are half wrong: marginally a 50-point drop, which no pair confirms or refutes
    assert table["marginal_diff"].iloc[2] == pytest.approx(-0.5)


def test_repeats_that_disagree_are_compared_on_per_sample_means():
    rng = np.random.default_rng(5)
    base = _records(0, np.tile(ALL_ONCE, 4))
    level = _records(1, np.tile(ALL_ONCE, 4))
    # at the level, one answer in four of a right sample comes back wrong
    flipped = level["correct"].fillna(False).to_numpy() & (rng.random(len(level)) < 0.25)
    level.loc[flipped, "correct"] = False
    level.loc[flipped, "y_pred"] = "no"
    joined = _joined(base, level)
    row = degradation_table(joined, _levels(joined)).iloc[1]
    assert row["test"] == "paired-t/sign-flip"
    assert row["diff"] == pytest.approx(-flipped.sum() / 4 / N_SAMPLES)
    assert row["diff_low"] < row["diff"] < row["diff_high"] < 0
    assert row["degraded"]


def test_bad_input_is_named():
    joined = _joined(_records(0, ALL_ONCE))
    with pytest.raises(AnalysisInputError, match="metric must be one of accuracy, effective_accuracy"):
        degradation_table(joined, _levels(joined), metric="f1")
    with pytest.raises(AnalysisInputError, match="joined records have no column 'y_pred'"):
        degradation_table(joined.drop(columns="y_pred"), _levels(joined))
    with pytest.raises(AnalysisInputError, match="level table has no column 'n_truth'"):
        degradation_table(joined, _levels(joined).drop(columns="n_truth"))


def _deterministic_run(records: pd.DataFrame, truth: pd.DataFrame, *, failed_level: int | None) -> pd.DataFrame:
    """synth_run's records answered by the model of this module; every request of `failed_level` shed (503)."""
    index = records["sample_id"].str[1:].astype(int).to_numpy()
    labels = truth.set_index("id")["label"].reindex(records["sample_id"]).to_numpy()
    out = records.copy()
    failed = (out["stage"] == failed_level).to_numpy()
    out["ok"] = ~failed
    out["status_code"] = np.where(failed, 503, 200)
    out["error_kind"] = np.where(failed, "http", "")
    out["error"] = np.where(failed, "HTTP 503", "")
    prediction = np.where(_right(index), labels, (labels + 1) % 3).astype(str)
    out["prediction"] = np.where(failed, "", prediction)
    return out


def test_a_run_directory_end_to_end(tmp_path):
    # stage 0 replays the even samples three times, stage 1 every sample once, stage 2 sheds every request
    records, truth, stages = synth_run((Level(2, 3 * N_SAMPLES), Level(8, N_SAMPLES), Level(16, N_SAMPLES)))
    even = records["sample_id"].str[1:].astype(int) % 2 == 0
    records = records[(records["stage"] != 0) | even]
    run = write_run(tmp_path / "run", _deterministic_run(records, truth, failed_level=2), truth, stages=stages)
    for metric in ("effective_accuracy", "accuracy"):
        table = analyse_run(run, metric=metric).degradation
        assert table["diff"].iloc[1] == 0.0
        assert table["p_value"].iloc[1] == 1.0
        assert table["marginal_diff"].iloc[1] == pytest.approx(-0.25)
        assert table["degraded"].tolist()[:2] == [False, False]
    assert analyse_run(run, metric="effective_accuracy").degradation["degraded"].iloc[2]
    shed = analyse_run(run, metric="accuracy").degradation.iloc[2]
    assert shed["test"] == "none"
    assert not shed["degraded"]
