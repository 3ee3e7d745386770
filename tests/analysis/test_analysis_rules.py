from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import Level

from loadgrade.analysis import AnalysisInputError, check_rules, parse_rule
from loadgrade.analysis.cli import main
from loadgrade.analysis.rules import Rule

LEVELS = pd.DataFrame(
    {
        "level": [0, 1, 2, 3],
        "users": [2.0, 16.0, 50.0, 100.0],
        "accuracy": [0.95, 0.95, 0.93, 0.70],
        "effective_accuracy": [0.95, 0.94, 0.91, 0.55],
        "p95_ms": [40.0, 60.0, 150.0, 800.0],
        "error_rate": [0.0, 0.0, 0.005, 0.2],
        "goodput_rps": [10.0, 70.0, 120.0, 40.0],
        "throughput_rps": [10.0, 75.0, 130.0, 140.0],
    }
)
RAMP = (Level(2, 400, 0.95), Level(8, 400, 0.95), Level(32, 800, 0.7, 0.2, 250))


def test_parse_rule_forms():
    assert parse_rule(" p95_ms <= 200 ") == Rule("p95_ms <= 200", "p95_ms", "<=", 200.0)
    assert parse_rule("accuracy>=95%").threshold == pytest.approx(0.95)
    rule = parse_rule("effective_accuracy>=0.9@users>=50")
    assert (rule.where_field, rule.where_op, rule.where_value) == ("users", ">=", 50.0)
    assert parse_rule("error_rate<1e-2@level>0").threshold == 0.01


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95<=200", r"rule 'p95<=200' names unknown metric 'p95'; known: accuracy_drop"),
        ("p95_ms=<200", r"rule 'p95_ms=<200' is not of the form METRIC OP VALUE"),
        ("p95_ms<=fast", r"is not of the form METRIC OP VALUE"),
        ("accuracy>=0.9@gpu>=2", r"condition on 'gpu'; a condition can use: users, level"),
        ("", r"rule '' is not of the form"),
    ],
)
def test_parse_rule_errors(text, message):
    with pytest.raises(AnalysisInputError, match=message):
        parse_rule(text)


def test_check_rules_worst_level_semantics():
    results = check_rules(
        LEVELS,
        [
            "accuracy_drop<=0.01",
            "accuracy_drop<=0.05@users<=50",
            "effective_accuracy>=0.9@users>=50",
            "effective_accuracy>=0.9@users<=50",
            "p95_ms<=200",
            "goodput>=100",
            "error_rate<=0.01@users<100",
            "throughput>150",
            "answered_accuracy_drop<=0.01",
            "answered_accuracy_drop<=0.03@users<=50",
        ],
    ).set_index("rule")
    # a hand-built table has no paired drops: the marginal drop of accuracy over every request stands in,
    # and the 20 % of failed requests at 100 users count as lost answers (0.95 - 0.55, not 0.95 - 0.70)
    assert results.loc["accuracy_drop<=0.01", "measured"] == pytest.approx(0.40)
    assert results.loc["accuracy_drop<=0.01", "at_users"] == 100.0
    assert results.loc["answered_accuracy_drop<=0.01", "measured"] == pytest.approx(0.25)
    assert results["passed"].tolist() == [False, True, False, True, False, True, True, False, False, True]
    assert results.loc["goodput>=100", "measured"] == 120.0
    assert results.loc["effective_accuracy>=0.9@users>=50", "measured"] == 0.55
    assert results.loc["effective_accuracy>=0.9@users>=50", "levels"] == 2


def test_accuracy_counts_every_request_and_answered_accuracy_the_answered_ones():
    results = check_rules(LEVELS, ["accuracy>=0.6", "answered_accuracy>=0.6", "effective_accuracy>=0.6"])
    assert results["measured"].tolist() == [0.55, 0.70, 0.55]
    assert results["verdict"].tolist() == ["fail", "pass", "fail"]


def test_paired_drop_columns_are_read_and_a_missing_pair_falls_back_to_the_marginal_drop():
    levels = LEVELS.assign(accuracy_drop=[0.0, 0.002, np.nan, 0.30], answered_accuracy_drop=[0.0, 0.001, 0.01, 0.20])
    results = check_rules(
        levels, ["accuracy_drop<=0.035", "accuracy_drop<=0.035@users<100", "answered_accuracy_drop<0.2"]
    )
    # level 3's paired drop (0.30) decides, not its marginal drop (0.40); level 2 shares no sample with the
    # baseline: its marginal drop 0.95 - 0.91 = 0.04 is judged
    assert results["measured"].tolist() == pytest.approx([0.30, 0.04, 0.20])
    assert results["at_users"].tolist() == [100.0, 50.0, 100.0]
    assert results["passed"].tolist() == [False, False, False]


def test_loss_rate_metrics_read_their_columns():
    levels = LEVELS.assign(
        error_rate_shed=[0.0, 0.0, 0.0, 0.15],
        error_rate_client=[0.0, 0.01, 0.0, 0.0],
        error_rate_server=[0.0, 0.0, 0.005, 0.05],
        lost_rate=[0.05, 0.06, 0.09, 0.45],
        wrong_rate=[0.05, 0.05, 0.085, 0.25],
        coverage=[1.0, 1.0, 0.5, 1.0],
    )
    rules = [
        "shed_rate<=1%",
        "client_error_rate==0",
        "server_error_rate<=0.05",
        "failed_rate<=0.2",
        "lost_rate<=0.1@users<=50",
        "wrong_rate<=0.1",
        "coverage>=1",
    ]
    results = check_rules(levels, rules)
    assert results["measured"].tolist() == pytest.approx([0.15, 0.01, 0.05, 0.2, 0.09, 0.25, 0.5])
    assert results["verdict"].tolist() == ["fail", "fail", "pass", "pass", "pass", "fail", "fail"]


def test_rule_without_matching_level_fails_closed():
    results = check_rules(LEVELS, ["accuracy>=0.5@users>1000", "mae<=1"])
    assert results["verdict"].tolist() == ["fail: no data", "fail: no data"]
    assert np.isnan(results["measured"]).all()


def test_check_cli_pass_fail_and_scenario_rules(make_run, capsys):
    run_dir = make_run(RAMP, slo={"latency_ms": 200.0, "tolerance": 0.01, "rules": ["accuracy_drop<=0.01"]})
    assert main(["check", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "accuracy_drop<=0.01" in out
    assert "FAIL" in out
    assert "0 of 1 rules pass; 1 fail" in out
    assert main(["check", str(run_dir), "--rule", "accuracy_drop<=0.5", "--rule", "p95_ms<=100000"]) == 0
    assert "2 of 2 rules pass" in capsys.readouterr().out


def test_check_cli_unusable_inputs(make_run, capsys):
    run_dir = make_run(RAMP)
    assert main(["check", str(run_dir)]) == 2
    assert "no rules to check" in capsys.readouterr().err
    assert main(["check", str(run_dir), "--rule", "latency<=3"]) == 2
    assert "unknown metric 'latency'" in capsys.readouterr().err
    info = json.loads((run_dir / "run.json").read_text())
    info["scenario"]["slo"] = {"rules": ["p95_ms<<3"]}
    (run_dir / "run.json").write_text(json.dumps(info))
    assert main(["check", str(run_dir)]) == 2
    assert "rule 'p95_ms<<3' is not of the form" in capsys.readouterr().err
