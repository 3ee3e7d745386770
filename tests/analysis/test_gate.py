"""loadgrade.gate on synthetic run directories: the verdict, where each rule broke, and the exit status."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis.cli import main as analysis_main
from loadgrade.gate import GateResult, format_gate, gate

# quality holds up to 8 users, drops ~10 points at 16 and ~40 at 32, where latency and errors climb too
RAMP = (
    Level(2, 400, 0.95),
    Level(8, 400, 0.95),
    Level(16, 400, 0.85),
    Level(32, 400, 0.6, error_rate=0.1, latency_ms=250),
)


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records, truth, stages = synth_run(RAMP, seed=0)
    return write_run(tmp_path_factory.mktemp("gate") / "run", records, truth, stages=stages)


def assert_framed(result: GateResult, run_dir: Path, headline: str, code: int) -> None:
    assert result.lines[0] == f"loadgrade: SLO verdict for {run_dir}: {headline}"
    assert result.exit_code == code
    assert result.passed == (code == 0)
    assert re.fullmatch(rf"loadgrade: exit status {code} \(.*\)", result.lines[-1])
    assert format_gate(result) == "\n".join(result.lines)


def test_all_rules_pass(ramp: Path) -> None:
    result = gate(ramp, ["accuracy_drop<=0.5", "p95_ms<=5000"])
    assert_framed(result, ramp, "all 2 rules passed", 0)
    assert result.lines[-1] == "loadgrade: exit status 0 (every rule passed)"
    assert re.fullmatch(r"  ✓ accuracy_drop<=0\.5  worst \d+\.\d points at 32 users \(level 3\)", result.lines[1])
    assert re.fullmatch(r"  ✓ p95_ms<=5000        worst \d{3}\.\d ms at 32 users \(level 3\)", result.lines[2])
    assert [v.breaks_at_level for v in result.verdicts] == [None, None]


def test_a_failing_rule_names_the_first_level_that_breaks_it(ramp: Path) -> None:
    rules = ["accuracy_drop<=0.05", "p95_ms<=5000"]
    result = gate(ramp, rules)
    assert_framed(result, ramp, "1 of 2 rules failed", 1)
    assert re.fullmatch(
        r"  ✗ accuracy_drop<=0\.05  worst \d+\.\d points at 32 users \(level 3\); breaks from 16 users \(level 2\)",
        result.lines[1],
    )
    assert result.lines[2].startswith("  ✓ p95_ms<=5000 ")
    assert result.lines[-1] == "loadgrade: exit status 1 (a rule failed; --no-gate to exit 0)"
    failing = result.verdicts[0]
    assert (failing.passed, failing.at_level, failing.breaks_at_level, failing.breaks_at_load) == (False, 3, 2, 16.0)
    # the same verdict as `python -m analysis check`
    assert analysis_main(["check", str(ramp), *(f"--rule={r}" for r in rules)]) == result.exit_code


def test_each_rule_in_its_own_unit(ramp: Path) -> None:
    result = gate(
        ramp,
        ["effective_accuracy>=90%", "error_rate<=1%", "p95_ms<=500", "goodput>=1000", "accuracy>=0.5@users>100"],
    )
    assert_framed(result, ramp, "5 of 5 rules failed", 1)
    lines = [" ".join(line.split()) for line in result.lines[1:-1]]
    assert re.fullmatch(
        r"✗ effective_accuracy>=90% worst 5\d\.\d % at 32 users \(level 3\); breaks from 16 .*", lines[0]
    )
    assert re.fullmatch(r"✗ error_rate<=1% worst \d+\.\d % at 32 users \(level 3\); breaks from 32 users .*", lines[1])
    assert re.fullmatch(r"✗ p95_ms<=500 worst \d{3}\.\d ms at 32 users \(level 3\); breaks from 32 users .*", lines[2])
    assert re.fullmatch(r"✗ goodput>=1000 best \d+\.\d req/s at \d+ users \(level \d\); no level reaches it", lines[3])
    assert lines[4] == "✗ accuracy>=0.5@users>100 no data: no level has users>100"


def test_a_drop_with_a_condition_is_still_measured_against_the_baseline(ramp: Path) -> None:
    result = gate(ramp, ["accuracy_drop<=0.05@users>=16", "accuracy_drop<=0.05@users<=8"])
    assert [v.passed for v in result.verdicts] == [False, True]
    assert result.verdicts[0].breaks_at_level == 2
    assert result.lines[0].endswith(": 1 of 2 rules failed")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", r"run directory '.*' does not exist"),
        ("garbage", r"run metadata '.*run\.json' is not valid JSON"),
        ("incomplete", r"run '.*' is incomplete: run\.json has ended_at null"),
        ("bad-rule", r"rule 'p95<=200' names unknown metric 'p95'"),
    ],
)
def test_a_run_that_cannot_be_judged_exits_2_without_raising(
    tmp_path: Path, ramp: Path, damage: str, message: str
) -> None:
    run_dir, rules = tmp_path / "run", ["p95_ms<=200"]
    if damage == "garbage":
        run_dir.mkdir()
        (run_dir / "records.csv").write_bytes(b"\x00\xff not a csv \x00")
        (run_dir / "run.json").write_text("{ not json")
    elif damage == "incomplete":
        run_dir.mkdir()
        (run_dir / "records.csv").write_bytes((ramp / "records.csv").read_bytes())
        info = json.loads((ramp / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**info, "ended_at": None}))
    elif damage == "bad-rule":
        run_dir, rules = ramp, ["p95<=200"]
    result = gate(run_dir, rules)
    assert (result.exit_code, result.passed, result.verdicts) == (2, False, [])
    assert len(result.lines) == 2
    assert re.fullmatch(
        rf"loadgrade: SLO verdict for {re.escape(str(run_dir))}: cannot judge the run: {message}.*", result.lines[0]
    )
    assert result.lines[1] == "loadgrade: exit status 2 (the run could not be judged; --no-gate to exit 0)"


def test_no_rules_is_nothing_to_gate(ramp: Path) -> None:
    result = gate(ramp, [])
    assert (result.exit_code, result.passed) == (0, True)
    assert result.lines[0].endswith(": no slo.rules to check")
