from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import Level

from analysis import AnalysisInputError, check_rules, parse_rule
from analysis.cli import main
from analysis.rules import Rule

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
            "accuracy_drop<=0.03@users<=50",
            "effective_accuracy>=0.9@users>=50",
            "effective_accuracy>=0.9@users<=50",
            "p95_ms<=200",
            "goodput>=100",
            "error_rate<=0.01@users<100",
            "throughput>150",
        ],
    ).set_index("rule")
    assert results.loc["accuracy_drop<=0.01", "measured"] == pytest.approx(0.25)
    assert results.loc["accuracy_drop<=0.01", "at_users"] == 100.0
    assert results["passed"].tolist() == [False, True, False, True, False, True, True, False]
    assert results.loc["goodput>=100", "measured"] == 120.0
    assert results.loc["effective_accuracy>=0.9@users>=50", "measured"] == 0.55
    assert results.loc["effective_accuracy>=0.9@users>=50", "levels"] == 2


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
