from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from analysis import AnalysisInputError, analyse_run, compare_conclusion, compare_runs
from analysis.cli import main
from analysis.stats import holm_adjust, mcnemar_test, newcombe_interval

PNG = b"\x89PNG\r\n\x1a\n"
GOOD = (Level(2, 400, 0.95), Level(8, 400, 0.95), Level(12, 400, 0.95), Level(16, 400, 0.95))
# Same model at low load, clearly worse from 8 users on.
WORSE = (Level(2, 400, 0.95), Level(8, 400, 0.8), Level(12, 400, 0.75), Level(16, 400, 0.7))


@pytest.fixture
def run_pair(make_run):
    def build(levels_a=GOOD, levels_b=WORSE, *, seed_b: int = 1):
        return analyse_run(make_run(levels_a, name="a", seed=0)), analyse_run(make_run(levels_b, name="b", seed=seed_b))

    return build


def test_b_worse_at_high_load_is_flagged(run_pair):
    a, b = run_pair()
    table = compare_runs(a, b)
    assert table["users"].tolist() == [2.0, 8.0, 12.0, 16.0]
    assert table["verdict"].tolist() == ["no significant difference", "B worse", "B worse", "B worse"]
    assert (table["test"] == "mcnemar-chi2").iloc[1:].all()
    assert table["n_pairs"].tolist() == [200, 200, 200, 200]
    assert (table["diff_high"].iloc[1:] < 0).all()
    assert compare_conclusion(table) == "B is significantly worse than A at 8, 12, 16 users"


def test_numbers_match_the_stats_functions(run_pair):
    a, b = run_pair()
    table = compare_runs(a, b)
    for side, run in (("a", a), ("b", b)):
        levels = run.levels.sort_values("users")
        assert table[f"accuracy_{side}"].to_numpy() == pytest.approx(levels["accuracy"].to_numpy(), abs=1e-12)
        assert table[f"n_{side}"].astype(int).tolist() == levels["n_scored"].tolist()
        assert table[f"p95_ms_{side}"].to_numpy() == pytest.approx(levels["p95_ms"].to_numpy(), abs=1e-12)
        assert table[f"throughput_rps_{side}"].to_numpy() == pytest.approx(levels["throughput_rps"].to_numpy())
    row = table.iloc[2]
    diff, low, high = newcombe_interval(row["n_correct_a"], row["n_a"], row["n_correct_b"], row["n_b"])
    assert (row["diff"], row["diff_low"], row["diff_high"]) == pytest.approx((diff, low, high), abs=1e-12)

    # McNemar from the first answers, counted independently of compare_runs.
    def first(run, level):
        rows = run.joined[(run.joined["level"] == level) & run.joined["ok"]].sort_values("t_sent")
        return rows.drop_duplicates("sample_id").set_index("sample_id")["correct"].astype(bool)

    first_a, first_b = first(a, int(row["level_a"])), first(b, int(row["level_b"]))
    shared = first_a.index.intersection(first_b.index)
    worse = int((first_a[shared] & ~first_b[shared]).sum())
    better = int((~first_a[shared] & first_b[shared]).sum())
    assert (row["b_worse_pairs"], row["b_better_pairs"]) == (worse, better)
    assert row["p_value"] == pytest.approx(mcnemar_test(worse, better)[0], rel=1e-12)
    assert table["p_holm"].to_numpy() == pytest.approx(holm_adjust(table["p_value"].to_numpy()), rel=1e-12)


def test_identical_runs_show_no_difference(run_pair):
    a, _ = run_pair()
    table = compare_runs(a, a)
    assert (table["verdict"] == "no significant difference").all()
    assert (table["diff"] == 0).all()
    assert (table["p_value"] == 1).all()
    assert compare_conclusion(table) == "no significant difference between A and B at any common load level"


def test_same_model_different_seed_is_not_flagged(run_pair):
    a, b = run_pair(GOOD, GOOD, seed_b=7)
    assert (compare_runs(a, b)["verdict"] == "no significant difference").all()


def test_unpaired_samples_use_the_two_proportion_test(make_run, tmp_path):
    a = analyse_run(make_run(GOOD, name="a"))
    records, truth, stages = synth_run(WORSE, seed=3)
    records["sample_id"] = "other-" + records["sample_id"]
    truth["id"] = "other-" + truth["id"]
    b = analyse_run(write_run(tmp_path / "b", records, truth, stages=stages))
    table = compare_runs(a, b)
    assert (table["test"] == "two-proportion-z").all()
    assert (table["n_pairs"] == 0).all()
    assert table["verdict"].iloc[-1] == "B worse"


def test_levels_only_in_one_run(run_pair):
    a, b = run_pair(GOOD[:3], (*WORSE[:2], Level(24, 400, 0.95)))
    table = compare_runs(a, b)
    assert table["users"].tolist() == [2.0, 8.0, 12.0, 24.0]
    assert table["verdict"].tolist()[2:] == ["only in A", "only in B"]
    assert table["test"].tolist()[2:] == ["none", "none"]
    assert np.isnan(table["p_holm"].iloc[2])


def test_repeated_user_counts_are_matched_in_visit_order(run_pair):
    ramp = (Level(2, 300), Level(8, 300), Level(2, 300))
    a, b = run_pair(ramp, ramp)
    table = compare_runs(a, b)
    assert table[["users", "visit", "level_a", "level_b"]].astype(float).values.tolist() == [
        [2, 0, 0, 0],
        [2, 1, 2, 2],
        [8, 0, 1, 1],
    ]


def test_effective_accuracy_and_bad_options(run_pair):
    a, b = run_pair(GOOD, (Level(2, 400, 0.95), Level(8, 400, 0.95, error_rate=0.3)))
    table = compare_runs(a, b, metric="effective_accuracy")
    assert "effective_accuracy_a" in table.columns
    assert table["verdict"].tolist()[:2] == ["no significant difference", "B worse"]
    assert compare_runs(a, b)["verdict"].iloc[1] == "no significant difference"
    with pytest.raises(AnalysisInputError, match="metric must be one of accuracy, effective_accuracy"):
        compare_runs(a, b, metric="f1")
    with pytest.raises(AnalysisInputError, match="alpha must be between 0 and 1"):
        compare_runs(a, b, alpha=2)


def test_compare_cli_writes_files_and_concludes(make_run, tmp_path, capsys):
    run_a = make_run(GOOD, name="v1")
    run_b = make_run(WORSE, name="v2", seed=1)
    out = tmp_path / "cmp"
    assert main(["compare", str(run_a), str(run_b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "B is significantly worse than A at 8, 12, 16 users" in printed
    assert "B-A [95% CI]" in printed
    assert (out / "compare.png").read_bytes()[:8] == PNG
    table = pd.read_csv(out / "compare.csv")
    assert table["verdict"].tolist()[0] == "no significant difference"
    document = json.loads((out / "compare.json").read_text())
    assert document["conclusion"] == "B is significantly worse than A at 8, 12, 16 users"
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
    text = capsys.readouterr().out
    assert "RUN_A RUN_B" in text
    for name in ("compare.csv", "compare.json", "compare.png", "McNemar", "Holm"):
        assert name in text
