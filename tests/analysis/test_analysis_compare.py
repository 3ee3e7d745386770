from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis import AnalysisInputError, analyse_run, compare_conclusion, compare_runs
from loadgrade.analysis.cli import main
from loadgrade.analysis.compare import comparison_warnings, format_comparison
from loadgrade.analysis.stats import holm_adjust, paired_difference

PNG = b"\x89PNG\r\n\x1a\n"
GOOD = (Level(2, 400, 0.95), Level(8, 400, 0.95), Level(12, 400, 0.95), Level(16, 400, 0.95))
# Same model at low load, clearly worse from 8 users on.
WORSE = (Level(2, 400, 0.95), Level(8, 400, 0.8), Level(12, 400, 0.75), Level(16, 400, 0.7))
UNFINISHED = "run B: the run did not finish: run.json has ended_at null"


@pytest.fixture
def run_pair(make_run):
    def build(levels_a=GOOD, levels_b=WORSE, *, seed_b: int = 1):
        return analyse_run(make_run(levels_a, name="a", seed=0)), analyse_run(make_run(levels_b, name="b", seed=seed_b))

    return build


def _per_sample(run, level: int, metric: str) -> pd.Series:
    """Each sample's accuracy at one level, counted independently of compare_runs with a pandas groupby."""
    rows = run.joined[(run.joined["level"] == level) & run.joined["has_truth"].astype(bool)]
    if metric == "accuracy":
        rows = rows[rows["ok"].astype(bool)]
    right = rows["correct"].fillna(False).astype(bool) & rows["ok"].astype(bool)
    return right.groupby(rows["sample_id"]).mean()


def _set_ended_at(run_dir: Path, value: str | None) -> None:
    path = run_dir / "run.json"
    info = json.loads(path.read_text())
    info["ended_at"] = value
    path.write_text(json.dumps(info))


def test_b_worse_at_high_load_is_flagged(run_pair):
    a, b = run_pair()
    table = compare_runs(a, b)
    assert table["metric"].iloc[0] == "effective_accuracy"
    assert table["users"].tolist() == [2.0, 8.0, 12.0, 16.0]
    assert table["verdict"].tolist() == ["no significant difference", "B worse", "B worse", "B worse"]
    # 400 requests over 200 samples: every sample answered twice, and the two answers may disagree
    assert (table["test"] == "paired-t/sign-flip").all()
    assert table["n_pairs"].tolist() == [200, 200, 200, 200]
    assert (table["diff_high"].iloc[1:] < 0).all()
    assert comparison_warnings(table) == []
    assert compare_conclusion(table) == "B is significantly worse than A at 8, 12, 16 users"


@pytest.mark.parametrize("metric", ["effective_accuracy", "accuracy"])
def test_numbers_match_a_per_sample_count_and_the_stats_functions(make_run, metric):
    levels_b = (Level(2, 400, 0.95), Level(8, 400, 0.85, error_rate=0.2), Level(12, 400, 0.8, error_rate=0.3))
    a = analyse_run(make_run(GOOD[:3], name="a", seed=0))
    b = analyse_run(make_run(levels_b, name="b", seed=1))
    table = compare_runs(a, b, metric=metric)
    total = "n_scored" if metric == "accuracy" else "n_truth"
    for side, run in (("a", a), ("b", b)):
        levels = run.levels.sort_values("users")
        assert table[f"{metric}_{side}"].to_numpy() == pytest.approx(levels[metric].to_numpy(), abs=1e-12)
        assert table[f"n_{side}"].astype(int).tolist() == levels[total].tolist()
        assert table[f"p95_ms_{side}"].to_numpy() == pytest.approx(levels["p95_ms"].to_numpy(), abs=1e-12)
        assert table[f"throughput_rps_{side}"].to_numpy() == pytest.approx(levels["throughput_rps"].to_numpy())
    for row in table.to_dict("records"):
        per_a = _per_sample(a, int(row["level_a"]), metric)
        per_b = _per_sample(b, int(row["level_b"]), metric)
        shared = per_a.index.intersection(per_b.index)
        expected = paired_difference(per_a[shared].to_numpy(), per_b[shared].to_numpy())
        assert row["n_pairs"] == len(shared) == expected.n_pairs
        assert (row["diff"], row["diff_low"], row["diff_high"]) == pytest.approx(
            (expected.diff, expected.low, expected.high), abs=1e-12
        )
        assert row["p_value"] == pytest.approx(expected.p_value, rel=1e-12)
        assert (row["test"], row["b_worse_pairs"], row["b_better_pairs"]) == (
            expected.test,
            expected.worse,
            expected.better,
        )
        assert row["marginal_diff"] == pytest.approx(row[f"{metric}_b"] - row[f"{metric}_a"], abs=1e-12)
    assert table["p_holm"].to_numpy() == pytest.approx(holm_adjust(table["p_value"].to_numpy()), rel=1e-12)


def test_identical_runs_show_no_difference(run_pair):
    a, _ = run_pair()
    table = compare_runs(a, a)
    assert (table["verdict"] == "no significant difference").all()
    assert (table["diff"] == 0).all()
    assert (table["marginal_diff"] == 0).all()
    assert (table["p_value"] == 1).all()
    assert (table["consistency"] == 1).all()
    assert compare_conclusion(table) == "no significant difference between A and B at any common load level"


def test_same_model_different_seed_is_not_flagged(run_pair):
    a, b = run_pair(GOOD, GOOD, seed_b=7)
    assert (compare_runs(a, b)["verdict"] == "no significant difference").all()


def _deterministic(records: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The same model in both runs, and one that never changes an answer: right on a sample iff its index is
    not 3 mod 4 or it lies in the second half of the dataset."""
    index = records["sample_id"].str[1:].astype(int).to_numpy()
    labels = truth.set_index("id")["label"].reindex(records["sample_id"]).to_numpy()
    right = (index % 4 != 3) | (index >= 100)
    out = records.copy()
    out["ok"] = True
    out["error_kind"] = ""
    out["error"] = ""
    out["status_code"] = 200
    out["prediction"] = np.where(right, labels, (labels + 1) % 3).astype(str)
    return out


def test_runs_covering_different_samples_are_compared_on_the_shared_ones(tmp_path):
    # A replays the whole dataset once per level; B replays only the first half, three times each. Marginally B
    # is 12.5 points worse (its half holds every hard sample); per sample nothing changed at all.
    records, truth, stages = synth_run((Level(2, 200), Level(8, 200)), seed=0)
    a = analyse_run(write_run(tmp_path / "a", _deterministic(records, truth), truth, stages=stages))
    records, _, stages = synth_run((Level(2, 600), Level(8, 600)), seed=0)
    records = records[records["sample_id"].str[1:].astype(int) < 100]
    b = analyse_run(write_run(tmp_path / "b", _deterministic(records, truth), truth, stages=stages))
    table = compare_runs(a, b)
    assert table["n_b"].tolist() == [300, 300]
    assert table["n_pairs"].tolist() == [100, 100]
    assert table["diff"].tolist() == [0.0, 0.0]
    assert table["marginal_diff"].to_numpy() == pytest.approx([-0.125, -0.125])
    assert table["p_value"].tolist() == [1.0, 1.0]
    assert table["test"].tolist() == ["mcnemar-exact", "mcnemar-exact"]
    assert (table["verdict"] == "no significant difference").all()


def test_runs_without_shared_samples_are_not_compared(make_run, tmp_path):
    a = analyse_run(make_run(GOOD, name="a"))
    records, truth, stages = synth_run(WORSE, seed=3)
    records["sample_id"] = "other-" + records["sample_id"]
    truth["id"] = "other-" + truth["id"]
    b = analyse_run(write_run(tmp_path / "b", records, truth, stages=stages))
    table = compare_runs(a, b)
    assert (table["test"] == "none").all()
    assert (table["n_pairs"] == 0).all()
    assert (table["verdict"] == "no shared samples").all()
    assert table["diff"].isna().all()
    assert table["marginal_diff"].iloc[-1] < -0.2  # the marginal figures are still there, as context
    assert comparison_warnings(table) == [
        "no sample was answered in both runs at 2, 8, 12, 16 users: those levels are not compared "
        "(different datasets, or nothing was answered)"
    ]
    assert compare_conclusion(table) == (
        "no sample was answered in both runs at a common load level: nothing to compare (with 1 warning: see above)"
    )


def test_levels_only_in_one_run(run_pair):
    a, b = run_pair(GOOD[:3], (*WORSE[:2], Level(24, 400, 0.95)))
    table = compare_runs(a, b)
    assert table["users"].tolist() == [2.0, 8.0, 12.0, 24.0]
    assert table["verdict"].tolist()[2:] == ["only in A", "only in B"]
    assert table["test"].tolist()[2:] == ["none", "none"]
    assert np.isnan(table["p_holm"].iloc[2])
    assert comparison_warnings(table) == []


def test_repeated_user_counts_are_matched_in_visit_order(run_pair):
    ramp = (Level(2, 300), Level(8, 300), Level(2, 300))
    a, b = run_pair(ramp, ramp)
    table = compare_runs(a, b)
    assert table[["users", "visit", "level_a", "level_b"]].astype(float).values.tolist() == [
        [2, 0, 0, 0],
        [2, 1, 2, 2],
        [8, 0, 1, 1],
    ]


def test_lost_answers_count_by_default_and_bad_options(run_pair):
    a, b = run_pair(GOOD, (Level(2, 400, 0.95), Level(8, 400, 0.95, error_rate=0.3)))
    table = compare_runs(a, b)
    assert "effective_accuracy_a" in table.columns
    assert table["verdict"].tolist()[:2] == ["no significant difference", "B worse"]
    # among the answers B did give, it is as good as A
    answered = compare_runs(a, b, metric="accuracy")
    assert "accuracy_a" in answered.columns
    assert answered["verdict"].iloc[1] == "no significant difference"
    with pytest.raises(AnalysisInputError, match="metric must be one of accuracy, effective_accuracy"):
        compare_runs(a, b, metric="f1")
    with pytest.raises(AnalysisInputError, match="alpha must be between 0 and 1"):
        compare_runs(a, b, alpha=2)


def test_an_unfinished_run_is_compared_but_never_silently(make_run, capsys):
    run_a = make_run(GOOD, name="v1")
    run_b = make_run(WORSE, name="v2", seed=1)
    _set_ended_at(run_a, "2026-11-23T15:00:40.000000Z")
    _set_ended_at(run_b, None)
    table = compare_runs(analyse_run(run_a), analyse_run(run_b))
    warnings = comparison_warnings(table)
    assert len(warnings) == 1
    assert warnings[0].startswith(UNFINISHED)
    printed = format_comparison(table)
    assert printed.startswith(f"WARNING: {UNFINISHED}")
    assert printed.index("WARNING") < printed.index("B-A [95% CI]")
    assert compare_conclusion(table) == (
        "B is significantly worse than A at 8, 12, 16 users (with 1 warning: see above)"
    )

    out = run_b / "analysis" / "cmp"
    assert main(["compare", str(run_a), str(run_b), "--out", str(out), "--no-charts"]) == 0
    text = capsys.readouterr().out
    assert text.index(f"WARNING: {UNFINISHED}") < text.index("B-A [95% CI]") < text.index("(with 1 warning")
    document = json.loads((out / "compare.json").read_text())
    assert len(document["warnings"]) == 1
    assert document["warnings"][0].startswith(UNFINISHED)
    assert document["conclusion"].endswith("(with 1 warning: see above)")


def test_compare_cli_writes_files_and_concludes(make_run, tmp_path, capsys):
    run_a = make_run(GOOD, name="v1")
    run_b = make_run(WORSE, name="v2", seed=1)
    out = tmp_path / "cmp"
    assert main(["compare", str(run_a), str(run_b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "WARNING" not in printed
    assert "B is significantly worse than A at 8, 12, 16 users" in printed
    assert "B-A [95% CI]" in printed
    assert (out / "compare.png").read_bytes()[:8] == PNG
    table = pd.read_csv(out / "compare.csv")
    assert table["verdict"].tolist()[0] == "no significant difference"
    assert {"marginal_diff", "n_pairs", "consistency"} <= set(table.columns)
    document = json.loads((out / "compare.json").read_text())
    assert document["conclusion"] == "B is significantly worse than A at 8, 12, 16 users"
    assert document["warnings"] == []
    assert document["levels"][0]["p_value"] is not None
    assert main(["compare", str(run_a), str(run_b), "--no-charts"]) == 0
    default_out = run_b / "analysis" / "compare-vs-v1"
    assert sorted(p.name for p in default_out.iterdir()) == ["compare.csv", "compare.json"]


def test_compare_cli_missing_run_is_exit_2(make_run, tmp_path, capsys):
    run_a = make_run(GOOD[:2], name="v1")
    assert main(["compare", str(run_a), str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: run directory")


def test_compare_help_names_outputs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "RUN_A RUN_B" in text
    for name in ("compare.csv", "compare.json", "compare.png", "paired per sample", "Holm"):
        assert name in text
