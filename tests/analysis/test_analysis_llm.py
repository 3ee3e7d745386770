"""LLM figures per level: token latencies, output tokens, goodput under TTFT/TPOT limits, cut-short replies.

Records are built by hand with the LLM columns the recorder writes, and every figure is checked against numpy
(``np.percentile``, the method of the latency columns) or a count by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis import analyse_run, assign_levels, check_rules, join_truth, level_table, parse_rule
from loadgrade.analysis.cli import main
from loadgrade.analysis.io import read_records
from loadgrade.analysis.metrics import CUT_SHORT_REASONS, ERROR_KINDS, FAILURE_CLASSES, LLM_COLUMNS
from loadgrade.analysis.report import describe_quality, format_levels, format_limit, format_measure
from loadgrade.analysis.rules import CAPACITY_METRICS

LLM_LEVEL_COLUMNS = [
    *(f"p{q}_{figure}_ms" for figure in ("ttft", "tpot") for q in (50, 90, 95, 99)),
    "max_ttft_ms",
    "max_tpot_ms",
    *(f"p{q}_itl_ms" for q in (50, 90, 95, 99)),
    "p99_itl_max_ms",
    "max_itl_ms",
    "n_output_tokens",
    "output_tokens_per_s",
    "mean_output_tokens",
    "p50_output_tokens",
    "token_goodput_tps",
    "n_finish_stop",
    "n_finish_length",
    "n_finish_other",
    "n_finish_none",
    "n_cut_short_empty",
    "n_cut_short_length",
    "n_cut_short_no_end",
]
RAMP = (Level(2, 400, 0.95, latency_ms=40), Level(8, 400, 0.95, 0.0, 80), Level(32, 400, 0.95, 0.02, 200))


def llm_run(
    levels: tuple[Level, ...] = RAMP, *, cut_short: tuple[float, ...] = (0.0, 0.0, 0.4), seed: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Synthetic records with streamed-reply figures; a share of each level's answered replies cut short."""
    records, truth, stages = synth_run(levels, seed=seed)
    rng = np.random.default_rng(seed + 1)
    n = len(records)
    ok = records["ok"].to_numpy(dtype=bool)
    tokens = rng.integers(1, 60, size=n)
    ttft = rng.gamma(2.0, 30.0, size=n) * (1 + records["stage"].to_numpy())
    records["ttft_ms"] = np.where(ok, ttft, np.nan)
    records["itl_mean_ms"] = np.where(ok & (tokens > 1), rng.gamma(2.0, 5.0, size=n), np.nan)
    records["itl_max_ms"] = records["itl_mean_ms"] * rng.uniform(1.0, 4.0, size=n)
    records["tpot_ms"] = np.where(ok & (tokens > 1), rng.gamma(2.0, 6.0, size=n), np.nan)
    records["output_tokens"] = pd.array(np.where(ok, tokens, -1), dtype="Int64")
    records.loc[~ok, "output_tokens"] = pd.NA
    records["finish_reason"] = np.where(ok, rng.choice(["stop", "stop", "stop", "length", "tool_calls"], size=n), "")
    records["reply"] = np.where(ok, "The digit is 7", "")
    for stage, share in enumerate(cut_short):
        rows = np.flatnonzero(ok & (records["stage"].to_numpy() == stage))
        cut = rows[rng.random(len(rows)) < share]
        reasons = rng.choice(CUT_SHORT_REASONS, size=len(cut))
        records.loc[cut, "ok"] = False
        records.loc[cut, "error_kind"] = "cut_short"
        records.loc[cut, "error"] = [f"cut short ({r}): the reply was cut" for r in reasons]
        records.loc[cut, "prediction"] = ""
        records.loc[cut, "finish_reason"] = np.where(reasons == "length", "length", "")
        records.loc[cut[reasons == "empty"], "ttft_ms"] = np.nan
    return records, truth, stages


def leveled(records: pd.DataFrame, truth: pd.DataFrame, stages: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    joined, _ = join_truth(records, truth.rename(columns={"id": "sample_id"}))
    joined["level"], bounds = assign_levels(joined, stages=stages)
    return joined, bounds


def test_llm_figures_agree_with_numpy_and_counts() -> None:
    records, truth, stages = llm_run()
    joined, bounds = leveled(records, truth, stages)
    table = level_table(joined, bounds, task="classification")
    assert all(c in table.columns for c in LLM_LEVEL_COLUMNS)
    for row in table.to_dict("records"):
        rows = joined[joined["level"] == row["level"]]
        ok = rows[rows["ok"]]
        for figure in ("ttft", "tpot", "itl_mean"):
            values = ok[f"{figure}_ms"].dropna().to_numpy(dtype=float)
            name = "itl" if figure == "itl_mean" else figure
            for q in (50, 90, 95, 99):
                assert row[f"p{q}_{name}_ms"] == pytest.approx(np.percentile(values, q))
        assert row["max_ttft_ms"] == pytest.approx(ok["ttft_ms"].max())
        assert row["max_tpot_ms"] == pytest.approx(ok["tpot_ms"].max())
        gaps = ok["itl_max_ms"].dropna().to_numpy(dtype=float)
        assert row["p99_itl_max_ms"] == pytest.approx(np.percentile(gaps, 99))
        assert row["max_itl_ms"] == pytest.approx(gaps.max())  # the longest gap, not the largest mean
        tokens = ok["output_tokens"].dropna().to_numpy(dtype=float)
        assert row["n_output_tokens"] == tokens.sum()
        assert row["output_tokens_per_s"] == pytest.approx(tokens.sum() / row["duration_s"])
        assert row["mean_output_tokens"] == pytest.approx(tokens.mean())
        assert row["p50_output_tokens"] == pytest.approx(np.percentile(tokens, 50))
        reasons = rows["finish_reason"]
        assert row["n_finish_stop"] == (reasons == "stop").sum()
        assert row["n_finish_length"] == (reasons == "length").sum()
        assert row["n_finish_other"] == (reasons == "tool_calls").sum()
        assert row["n_finish_none"] == (reasons == "").sum()
        assert sum(row[f"n_finish_{r}"] for r in ("stop", "length", "other", "none")) == row["n"]
        cut = rows[rows["error_kind"] == "cut_short"]
        assert row["n_cut_short"] == len(cut)
        assert row["error_rate_cut_short"] == pytest.approx(len(cut) / row["n"])
        for reason in CUT_SHORT_REASONS:
            expected = cut["error"].str.startswith(f"cut short ({reason})").sum()
            assert row[f"n_cut_short_{reason}"] == expected
    assert table["n_cut_short"].iloc[0] == 0
    assert table["n_cut_short"].iloc[-1] > 100


def test_cut_short_replies_are_lost_answers_not_answered_ones() -> None:
    records = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "ok": [True, True, False, False],
            "prediction": ["1", "9", "", ""],
            "error_kind": ["", "", "cut_short", "timeout"],
            "error": ["", "", "cut short (length): stopped at max_tokens", "timed out"],
            "t_sent": [0.0, 1.0, 2.0, 3.0],
            "latency_ms": [50.0, 60.0, 70.0, 5000.0],
            "users_active": [1, 1, 1, 1],
            "output_tokens": pd.array([3, 4, 16, pd.NA], dtype="Int64"),
            "finish_reason": ["stop", "stop", "length", ""],
        }
    )
    truth = pd.DataFrame({"sample_id": list("abcd"), "label": [1, 2, 3, 4]})
    joined, _ = join_truth(records, truth)
    joined["level"], bounds = assign_levels(joined, window_s=10)
    row = level_table(joined, bounds, task="classification").iloc[0]
    # among answered: a and b (one right); over every request: one right of four
    assert (row["accuracy"], row["effective_accuracy"]) == (0.5, 0.25)
    assert (row["n_wrong"], row["n_failed"], row["n_cut_short"], row["n_timeout"]) == (1, 2, 1, 1)
    assert (row["n_cut_short_length"], row["n_cut_short_empty"], row["n_cut_short_no_end"]) == (1, 0, 0)
    assert row["lost_rate"] == 0.75
    assert row["n_output_tokens"] == 7  # the cut-short reply's 16 tokens are not output of an answer


def test_goodput_requires_every_slo_limit_given() -> None:
    # rows: correct streamed fast, correct streamed slow TTFT, correct slow TPOT, correct not streamed (no TTFT),
    # wrong and fast, correct single token (no TPOT)
    records = pd.DataFrame(
        {
            "sample_id": list("abcdef"),
            "ok": [True] * 6,
            "prediction": ["1", "2", "3", "4", "0", "6"],
            "error_kind": [""] * 6,
            "t_sent": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "latency_ms": [300.0, 900.0, 800.0, 400.0, 100.0, 150.0],
            "users_active": [1] * 6,
            "ttft_ms": [100.0, 600.0, 100.0, np.nan, 50.0, 140.0],
            "tpot_ms": [20.0, 20.0, 70.0, np.nan, 10.0, np.nan],
            "output_tokens": pd.array([11, 16, 11, 9, 5, 1], dtype="Int64"),
        }
    )
    truth = pd.DataFrame({"sample_id": list("abcdef"), "label": [1, 2, 3, 4, 5, 6]})
    joined, _ = join_truth(records, truth)
    joined["level"], bounds = assign_levels(joined, window_s=10)
    duration = float(bounds["duration_s"].iloc[0])

    def goodput(**slo: float) -> tuple[float, float]:
        row = level_table(joined, bounds, task="classification", **slo).iloc[0]
        return row["goodput_rps"] * duration, row["token_goodput_tps"] * duration

    assert goodput() == pytest.approx((5, 11 + 16 + 11 + 9 + 1))  # every correct answer
    assert goodput(slo_ttft_ms=500) == pytest.approx((4, 11 + 11 + 9 + 1))  # b misses; d: its E2E 400 ms stands in
    assert goodput(slo_ttft_ms=300) == pytest.approx((3, 11 + 11 + 1))  # d: E2E 400 > 300
    assert goodput(slo_tpot_ms=50) == pytest.approx((4, 11 + 16 + 9 + 1))  # c misses its pace; f has none to miss
    assert goodput(slo_latency_ms=500, slo_ttft_ms=500, slo_tpot_ms=50) == pytest.approx((3, 11 + 9 + 1))


def test_non_llm_run_keeps_its_columns(tmp_path: Path) -> None:
    records, truth, stages = synth_run(RAMP, seed=1)
    joined, bounds = leveled(records, truth, stages)
    plain = level_table(joined, bounds, task="classification", slo_latency_ms=100, slo_ttft_ms=10)
    # as the recorder writes a non-LLM run: every LLM column there, and empty
    blank = records.assign(**{c: "" for c in LLM_COLUMNS})
    write_run(tmp_path / "run", blank, truth, stages=stages)
    read = read_records(tmp_path / "run" / "records.csv")
    assert all(c in read.columns for c in LLM_COLUMNS)
    joined_blank, bounds_blank = leveled(read, truth, stages)
    table = level_table(joined_blank, bounds_blank, task="classification", slo_latency_ms=100, slo_ttft_ms=10)
    assert list(table.columns) == list(plain.columns)
    assert not set(LLM_LEVEL_COLUMNS) & set(table.columns)
    assert {"n_cut_short", "error_rate_cut_short"} <= set(table.columns)
    # the TTFT limit means nothing without LLM replies: goodput is the E2E one alone
    e2e_only = level_table(joined, bounds, task="classification", slo_latency_ms=100)
    np.testing.assert_allclose(table["goodput_rps"], e2e_only["goodput_rps"])
    assert "TTFT" not in format_levels(table)


def test_cut_short_kinds_and_reasons_match_the_client() -> None:
    from loadgrade import gate, responses

    assert set(responses.ERROR_KINDS) == set(ERROR_KINDS)
    assert CUT_SHORT_REASONS == responses.CUT_SHORT_REASONS
    assert "cut_short" in FAILURE_CLASSES
    assert set(CAPACITY_METRICS) == gate._CAPACITY


def test_headline_attributes_cut_short_replies() -> None:
    levels = pd.DataFrame(
        {
            "level": [0, 1],
            "users": [2.0, 16.0],
            "n": [540, 900],
            "n_ok": [540, 578],
            "n_failed": [0, 322],
            "n_cut_short": [0, 312],
            "n_cut_short_empty": [0, 100],
            "n_cut_short_length": [0, 120],
            "n_cut_short_no_end": [0, 92],
            "n_wrong": [37, 40],
            "wrong_rate": [37 / 540, 40 / 900],
            "error_rate": [0.0, 322 / 900],
            "error_rate_cut_short": [0.0, 312 / 900],
            "failures": ["", "cut_short: 312; timeout: 10"],
            "accuracy": [503 / 540, 538 / 578],
            "effective_accuracy": [503 / 540, 538 / 900],
            "accuracy_drop": [0.0, 0.33],
            "accuracy_drop_low": [0.0, 0.30],
            "accuracy_drop_high": [0.0, 0.36],
            "vs_baseline_n_pairs": [540, 540],
            "degraded": [False, True],
        }
    )
    headline = describe_quality(levels)
    assert "mostly through cut-short replies: 312 of 900 requests cut short (34.7 %: finish_reason length ×120, " in (
        headline
    )
    assert "empty ×100, no end ×92), 10 failed (1.1 %: timeout ×10), 40 answered wrongly (4.4 %" in headline
    assert "cut short ×" not in headline  # not among the failures
    # lost to failures alike: the transport failures lead, the cut-short replies still said apart
    failing = levels.assign(
        n_cut_short=[0, 12],
        n_cut_short_empty=0,
        n_cut_short_length=[0, 12],
        n_cut_short_no_end=0,
        failures=["", "http 503: 310; cut_short: 12"],
        error_rate_cut_short=[0.0, 12 / 900],
    )
    headline = describe_quality(failing)
    assert "mostly through failed requests: 310 of 900 requests failed (34.4 %: HTTP 503 ×310), 12 cut short " in (
        headline
    )
    assert "(1.3 %: finish_reason length ×12)" in headline
    # every answer of the baseline cut short: nothing to judge, and it says why
    lost = levels.assign(
        n_ok=0,
        n_failed=[540, 900],
        n_cut_short=[540, 900],
        n_cut_short_empty=[540, 900],
        n_cut_short_length=0,
        n_cut_short_no_end=0,
        error_rate=1.0,
        failures="cut_short: 1",
    )
    assert describe_quality(lost) == (
        "quality cannot be judged: the baseline, 2 users, answered no request; 100.0 % of requests were cut short "
        "(empty ×540)"
    )


def test_report_of_an_llm_run(tmp_path: Path) -> None:
    records, truth, stages = llm_run()
    slo = {"latency_ms": 2000.0, "ttft_ms": 150.0, "tpot_ms": 30.0, "rules": ["p95_ttft_ms<=500"]}
    run = write_run(tmp_path / "llm", records, truth, stages=stages, slo=slo)
    analysis = analyse_run(run)
    levels, summary = analysis.levels, analysis.summary
    assert all(c in levels.columns for c in LLM_LEVEL_COLUMNS)
    top = levels.iloc[-1]
    assert summary.llm is not None
    assert summary.llm.streamed
    assert summary.llm.slo_ttft_ms == 150.0
    assert summary.llm.p95_ttft_ms_baseline == pytest.approx(levels["p95_ttft_ms"].iloc[0])
    assert summary.llm.p95_ttft_ms_highest_load == pytest.approx(top["p95_ttft_ms"])
    assert summary.llm.n_cut_short == levels["n_cut_short"].sum() == int((records["error_kind"] == "cut_short").sum())
    assert sum(summary.llm.cut_short.values()) == summary.llm.n_cut_short
    assert summary.highest_load.llm is not None
    assert summary.highest_load.llm.n_cut_short == top["n_cut_short"]
    assert summary.quality_breaks_at is not None
    assert summary.llm.p95_ttft_ms_breaks_at is not None
    assert "cut-short replies" in summary.headline
    assert "finish_reason length ×" in summary.headline
    assert any("cut short" in a for a in summary.assumptions)
    assert any("TTFT ≤ 150 ms, TPOT ≤ 30 ms" in a for a in summary.assumptions)
    # goodput under every limit: recount the top level by hand
    rows = analysis.joined[analysis.joined["level"] == top["level"]]
    first = rows["ttft_ms"].fillna(rows["latency_ms"])
    good = (
        rows["correct"].fillna(False).astype(bool)
        & rows["ok"]
        & rows["has_truth"]
        & (rows["latency_ms"] <= 2000)
        & (first <= 150)
        & (rows["tpot_ms"].isna() | (rows["tpot_ms"] <= 30))
    )
    assert top["goodput_rps"] == pytest.approx(good.sum() / top["duration_s"])
    tokens = rows.loc[good, "output_tokens"].astype(float).sum()
    assert top["token_goodput_tps"] == pytest.approx(tokens / top["duration_s"])
    assert 0 < top["token_goodput_tps"] < top["output_tokens_per_s"]
    table = format_levels(levels)
    assert "TTFT p95  TPOT p95      tok/s   cut%" in table.splitlines()[0]
    # the whole report: levels.csv, summary.json, charts and report.html, with the new columns
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["llm"]["n_cut_short"] == summary.llm.n_cut_short
    assert set(written["llm"]["cut_short"]) >= set(CUT_SHORT_REASONS)
    assert written["baseline"]["llm"]["p95_ttft_ms"] == pytest.approx(levels["p95_ttft_ms"].iloc[0])
    assert written["highest_load"]["llm"]["cut_short"]["length"] == top["n_cut_short_length"]
    csv = pd.read_csv(tmp_path / "out" / "levels.csv")
    assert all(c in csv.columns for c in LLM_LEVEL_COLUMNS)
    assert (tmp_path / "out" / "report.html").is_file()
    assert main(["check", str(run)]) == (0 if (levels["p95_ttft_ms"] <= 500).all() else 1)


def test_summary_of_a_non_llm_run_has_no_llm_block(make_run) -> None:
    summary = analyse_run(make_run()).summary
    assert summary.llm is None
    assert summary.baseline.llm is None


@pytest.mark.parametrize(
    ("rule", "column"),
    [
        ("p95_ttft_ms<=500", "p95_ttft_ms"),
        ("p99_tpot_ms<=50", "p99_tpot_ms"),
        ("p95_itl_ms<=40", "p95_itl_ms"),
        ("max_itl_ms<=400", "max_itl_ms"),
        ("cut_short_rate<=1%", "error_rate_cut_short"),
        ("mean_output_tokens>=10", "mean_output_tokens"),
    ],
)
def test_rules_on_llm_figures_take_the_worst_level(rule: str, column: str) -> None:
    levels = pd.DataFrame(
        {
            "level": [0, 1, 2],
            "users": [1.0, 8.0, 32.0],
            column: [10.0, 0.5, 900.0] if not column.startswith("error_rate") else [0.0, 0.005, 0.3],
        }
    )
    result = check_rules(levels, [rule]).iloc[0]
    values = levels[column]
    expected = values.min() if ">" in rule else values.max()
    assert result["measured"] == expected
    assert result["verdict"] == "fail"


def test_token_rates_are_capacities() -> None:
    levels = pd.DataFrame(
        {
            "level": [0, 1, 2],
            "users": [1.0, 8.0, 32.0],
            "output_tokens_per_s": [300.0, 2100.0, 900.0],
            "token_goodput_tps": [280.0, 1500.0, 100.0],
        }
    )
    result = check_rules(levels, ["output_tokens_per_s>=2000", "token_goodput_tps>=1600"])
    assert result[["measured", "at_users", "verdict"]].to_dict("records") == [
        {"measured": 2100.0, "at_users": 8.0, "verdict": "pass"},
        {"measured": 1500.0, "at_users": 8.0, "verdict": "fail"},
    ]
    # a run that did not stream has no TTFT: no data, not a pass
    assert check_rules(levels, ["p95_ttft_ms<=500"])["verdict"].iloc[0] == "fail: no data"


def test_llm_rules_read_in_their_units() -> None:
    assert format_limit(parse_rule("p95_ttft_ms<=500")) == "≤ 500.0 ms"
    assert format_limit(parse_rule("cut_short_rate<=1%")) == "≤ 1.0 %"
    assert format_limit(parse_rule("output_tokens_per_s>=1000")) == "≥ 1000.0 tok/s"
    assert format_measure("token_goodput_tps", 812.25) == "812.2 tok/s"
    assert format_measure("mean_output_tokens", 40.0) == "40.0 tokens"


def test_scenario_slo_accepts_llm_rules_and_limits() -> None:
    from loadgrade.scenario import Slo

    slo = Slo(ttft_ms=500, tpot_ms=50, rules=["p95_ttft_ms<=500", "p95_tpot_ms<=50", "cut_short_rate<=1%"])
    assert (slo.ttft_ms, slo.tpot_ms) == (500, 50)
    with pytest.raises(ValueError, match="unknown metric 'p95_ttft'"):
        Slo(rules=["p95_ttft<=500"])
