"""Bad input gets a clear error and loses nothing: rules, encodings, repeated keys, booleans for numbers, the label
sent as an input, and secrets kept out of what ``validate`` prints. Each is found before any load starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loadgrade.errors import ScenarioError
from loadgrade.scenario import REDACTED, load_scenario
from loadgrade.shapes import UsersLoad

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """\
name: tiny
endpoint:
  base_url: http://127.0.0.1:8000
protocol:
  kind: generic
  body: {features: "{{input}}", id: "{{sample_id}}"}
  prediction: result.label
dataset:
  path: data.csv
  input_columns: ["x*"]
load:
  users: 2
  run_time_s: 5
"""

DATA = "id,label,x1,x2\na,0,1.0,2.0\nb,1,3.0,4.0\n"

SEARCH = """\
load:
  kind: search
  start: 2
  step: 2
  max: 20
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text(DATA)
    return tmp_path


def write(folder: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def with_rules(*rules: str, load: str | None = None) -> str:
    text = SCENARIO if load is None else SCENARIO[: SCENARIO.index("load:")] + load
    return text + "slo:\n  rules:\n" + "".join(f"    - {rule!r}\n" for rule in rules)


def validate(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgrade", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def problem(path: Path, *, match: str) -> ScenarioError:
    with pytest.raises(ScenarioError, match=match) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(str(path))
    return caught.value


# ------------------------------------------------------------------------------------------------ slo.rules


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("acuracy>=0.9", r"rule 'acuracy>=0\.9' names unknown metric 'acuracy' \(did you mean 'accuracy'\?\); known: "),
        ("p95<=100", r"rule 'p95<=100' names unknown metric 'p95' \(did you mean 'p95_ms'\?\); known: .*p95_ms"),
        ("p95_ms =< 100", r"rule 'p95_ms =< 100' is not of the form METRIC OP VALUE"),
        ("accuracy>=0.9@user>=5", r"has condition on 'user'; a condition can use: users"),
    ],
)
def test_a_bad_rule_names_its_index_line_and_the_known_metrics(folder: Path, rule: str, expected: str) -> None:
    path = write(folder, with_rules("p95_ms<=200", rule))
    error = problem(path, match=expected)
    assert error.key == "slo.rules[1]"
    assert str(error).startswith(f"{path}:17: slo.rules[1]: ")


def test_the_known_metrics_come_from_the_analysis(folder: Path) -> None:
    from loadgrade.analysis.rules import RULE_METRICS

    error = problem(write(folder, with_rules("acuracy>=0.9")), match="known: ")
    assert str(error).endswith("known: " + ", ".join(RULE_METRICS))


def test_a_rule_written_as_a_mapping_is_explained(folder: Path) -> None:
    path = write(folder, SCENARIO + "slo:\n  rules:\n    - p95_ms: 100\n")
    error = problem(path, match=r"expected text, got \{'p95_ms': 100\}; a rule is one line of text such as 'p95_ms")
    assert error.key == "slo.rules[0]"


def test_validate_rejects_a_bad_rule_with_exit_2_and_no_traceback(folder: Path) -> None:
    path = write(folder, with_rules("acuracy>=0.9"))
    result = validate(path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"{path}:16: slo.rules[0]: rule 'acuracy>=0.9' names unknown metric 'acuracy' (did you mean 'accuracy'?); "
        "known: accuracy_drop, "
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("goodput>=100", r"rule 'goodput>=100' cannot judge a search level: goodput is measured at the best of"),
        ("throughput>=5", r"cannot judge a search level: throughput"),
        (
            "p95_ms<=200@users>=50",
            r"does not apply to the search's first level \(users 2\), so that level would be judged 'fail: no data'",
        ),
        ("accuracy>=0.9@level>=1", r"does not apply to the search's first level \(level 0\)"),
        ("p95_ms<=200@rate<=10", r"selects levels by arrival rate, but a search over users sets no arrival rate"),
    ],
)
def test_a_rule_a_search_cannot_judge_is_refused(folder: Path, rule: str, expected: str) -> None:
    error = problem(write(folder, with_rules("error_rate<=0.01", rule, load=SEARCH)), match=expected)
    assert error.key == "slo.rules[1]"


@pytest.mark.parametrize("rule", ["p95_ms<=200", "accuracy_drop<=0.01@users<=50", "error_rate<=0.01@users>=2"])
def test_rules_a_search_can_judge_are_accepted(folder: Path, rule: str) -> None:
    assert load_scenario(write(folder, with_rules(rule, load=SEARCH))).slo is not None


def test_a_rate_condition_needs_an_open_model_load(folder: Path) -> None:
    closed = write(folder, with_rules("p95_ms<=200@rate>=5"))
    error = problem(closed, match=r"selects levels by arrival rate, but load kind 'users' sets no arrival rate")
    assert error.key == "slo.rules[0]"
    rate = "load:\n  kind: rate\n  rate: 5\n  duration_s: 5\n  max_users: 4\n"
    assert load_scenario(write(folder, with_rules("p95_ms<=200@rate>=5", "goodput>=1", load=rate), "open.yaml"))
    search = "load:\n  kind: search\n  variable: rate\n  max_users: 8\n  start: 2\n  factor: 2\n  max: 20\n"
    assert load_scenario(write(folder, with_rules("p95_ms<=200@rate>=2", load=search), "search.yaml"))
    error = problem(write(folder, with_rules("p95_ms<=200@rate>2", load=search), "s2.yaml"), match=r"\(rate 2\)")


# ------------------------------------------------------------------------------------------------ encoding


def test_a_file_that_is_not_utf8_names_the_line_and_the_byte(folder: Path) -> None:
    path = folder / "latin1.yaml"
    path.write_bytes(edit(SCENARIO, "  base_url", "  # caf\xe9 on the corner\n  base_url").encode("latin-1"))
    error = problem(
        path,
        match=re.escape(
            f"{path}:3: <top level>: not UTF-8 text at line 3, column 8 (byte 0xe9, 'é' in Latin-1/Windows-1252): "
            "save the file as UTF-8"
        ),
    )
    assert error.problems[0].line == 3


def test_a_utf16_file_is_named_as_such(folder: Path) -> None:
    path = folder / "utf16.yaml"
    path.write_bytes(SCENARIO.encode("utf-16"))
    problem(path, match=r"not UTF-8 text: the file is UTF-16 .*save it as UTF-8")


def test_a_utf8_byte_order_mark_is_fine(folder: Path) -> None:
    path = folder / "bom.yaml"
    path.write_bytes(SCENARIO.encode("utf-8-sig"))
    assert load_scenario(path).name == "tiny"


def test_validate_reports_a_bad_encoding_without_a_traceback(folder: Path) -> None:
    path = folder / "latin1.yaml"
    path.write_bytes(edit(SCENARIO, "name: tiny", "name: tiny\ndescription: caf\xe9").encode("latin-1"))
    result = validate(path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}:2: <top level>: not UTF-8 text at line 2" in result.stderr


# ------------------------------------------------------------------------------------------------ repeated keys


def test_a_repeated_key_names_both_lines(folder: Path) -> None:
    path = write(folder, edit(SCENARIO, "  run_time_s: 5", "  run_time_s: 5\n  users: 20"))
    error = problem(
        path,
        match=re.escape(
            f"{path}:14: load.users: key 'users' is given twice, at line 12 and again at line 14; "
            "YAML would silently keep only the last one: remove one of them"
        ),
    )
    assert error.key == "load.users"


def test_every_repeated_key_is_reported_at_once(folder: Path) -> None:
    text = edit(SCENARIO, "  prediction: result.label", "  prediction: result.label\n  kind: generic")
    error = problem(write(folder, text + "name: again\n"), match="given twice")
    assert [(p.key, p.line) for p in error.problems] == [("protocol.kind", 8), ("name", 15)]


def test_a_repeated_key_inside_a_list_item_has_its_index(folder: Path) -> None:
    steps = (
        "load:\n  kind: steps\n  steps:\n    - {users: 2, duration_s: 5}\n    - {users: 3, users: 4, duration_s: 5}\n"
    )
    text = SCENARIO[: SCENARIO.index("load:")] + steps
    assert problem(write(folder, text), match="given twice").key == "load.steps[1].users"


def test_a_merge_key_override_is_not_a_repeat(folder: Path) -> None:
    text = SCENARIO.replace("load:\n  users: 2\n", "load:\n  <<: {users: 2, run_time_s: 9}\n  users: 3\n")
    load = load_scenario(write(folder, text)).load
    assert isinstance(load, UsersLoad)
    assert (load.users, load.run_time_s) == (3, 5.0)


# ------------------------------------------------------------------------------------------------ strict numbers


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("  users: 2", "  users: true", "load.users", "expected a whole number, got true (a boolean)"),
        ("  users: 2", "  users: yes", "load.users", "expected a whole number, got yes (YAML reads it as a boolean)"),
        ("  users: 2", "  users: 2.0", "load.users", "expected a whole number, got 2.0: write 2"),
        ("  users: 2", "  users: 2.5", "load.users", "expected a whole number, got 2.5"),
        ("  users: 2", '  users: "4"', "load.users", "expected a whole number, got the text '4' (a quoted number"),
        ("  run_time_s: 5", "  run_time_s: on", "load.run_time_s", "expected a number, got on (YAML reads it as a"),
        ("  run_time_s: 5", "  run_time_s: .inf", "load.run_time_s", "finite number"),
        ("  path: data.csv", "  path: data.csv\n  seed: true", "dataset.seed", "expected a whole number, got true"),
        ("  path: data.csv", "  path: data.csv\n  passes: 1.0", "dataset.passes", "expected a whole number, got 1.0"),
        ("8000\n", "8000\n  timeout_s: false\n", "endpoint.timeout_s", "expected a number, got false (a boolean)"),
        ("8000\n", "8000\n  verify_tls: 0\n", "endpoint.verify_tls", "expected true or false, got 0"),
        ("8000\n", "8000\n  headers: {X-N: 5}\n", "endpoint.headers.X-N", "expected text, got the number 5"),
    ],
)
def test_a_number_must_be_written_as_one(folder: Path, old: str, new: str, key: str, expected: str) -> None:
    error = problem(write(folder, edit(SCENARIO, old, new)), match=re.escape(expected))
    assert error.key == key


@pytest.mark.parametrize(
    ("load", "key"),
    [
        (
            "kind: steps\n  steps:\n    - {users: 2, duration_s: 5}\n    - {users: true, duration_s: 5}",
            "load.steps[1].users",
        ),
        ("kind: ramp\n  to_users: yes\n  duration_s: 10", "load.to_users"),
        (
            "kind: spike\n  baseline_users: 1\n  spike_users: true\n  before_s: 1\n  spike_s: 1\n  after_s: 1",
            "load.spike_users",
        ),
        ("kind: soak\n  users: 2\n  duration_s: true", "load.duration_s"),
        ("kind: rate\n  rate: 5\n  duration_s: 5\n  max_users: true", "load.max_users"),
        ("kind: search\n  start: 2\n  step: 2\n  max: 20\n  bisect_steps: true", "load.bisect_steps"),
    ],
)
def test_every_load_shape_refuses_a_boolean_count(folder: Path, load: str, key: str) -> None:
    text = SCENARIO[: SCENARIO.index("load:")] + f"load:\n  {load}\nslo:\n  tolerance: 0.01\n"
    error = problem(write(folder, text), match=r"expected a (whole )?number, got (true|yes) \(")
    assert error.key == key


def test_a_boolean_is_refused_in_the_other_sections_too(folder: Path) -> None:
    # resources (and the protocol presets) are typed in their own modules; the same mistake gets the same message
    path = write(folder, SCENARIO + "resources:\n  port: true\n")
    error = problem(path, match=re.escape(f"{path}:15: resources.port: expected a whole number, got true (a boolean)"))
    assert error.key == "resources.port"
    path = write(folder, SCENARIO + "resources:\n  port: 8000\n  interval_s: off\n", "interval.yaml")
    problem(path, match=re.escape("resources.interval_s: expected a number, got off (YAML reads it as a boolean)"))
    batch = edit(
        SCENARIO,
        '  kind: generic\n  body: {features: "{{input}}", id: "{{sample_id}}"}\n  prediction: result.label',
        "  kind: open-inference-v2\n  model_name: digits\n  batch_size: true",
    )
    assert problem(write(folder, batch, "batch.yaml"), match="got true").key == "protocol.batch_size"


def test_whole_numbers_are_still_fine_for_seconds(folder: Path) -> None:
    scenario = load_scenario(write(folder, edit(SCENARIO, "run_time_s: 5", "run_time_s: 5.5")))
    assert scenario.load.kind == "users"


# ------------------------------------------------------------------------------------------------ label leakage


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        (
            '["x*"]',
            '["*"]',
            "dataset.input_columns",
            "the label column 'label' is sent to the model as an input (matched by '*' in input_columns): leave it out",
        ),
        ('["x*"]', '["x1", "label"]', "dataset.input_columns", "(listed in input_columns)"),
        (
            'input_columns: ["x*"]',
            "input_field: label",
            "dataset.input_field",
            "the label column 'label' is sent to the model as its input (input_field is the label column)",
        ),
        (
            'features: "{{input}}"',
            'features: "{{input}}", answer: "{{label}}"',
            "protocol",
            "the request names the label column 'label' (placeholder {{label}}), so the model would be sent the answer",
        ),
    ],
)
def test_the_label_is_never_sent_to_the_model(folder: Path, old: str, new: str, key: str, expected: str) -> None:
    error = problem(write(folder, edit(SCENARIO, old, new)), match=re.escape(expected))
    assert error.key == key
    assert error.problems[0].line is not None


def test_the_id_column_may_be_an_input(folder: Path) -> None:
    assert load_scenario(write(folder, edit(SCENARIO, '["x*"]', '["id", "x*"]'))).data().inputs[0] == ["a", 1.0, 2.0]


# ------------------------------------------------------------------------------------------------ secrets


def test_validate_prints_the_url_as_written_never_the_secret(folder: Path) -> None:
    text = edit(
        SCENARIO,
        "  base_url: http://127.0.0.1:8000",
        '  base_url: "${LOADGRADE_TEST_URL}"\n  headers: {Authorization: "Bearer ${LOADGRADE_TEST_TOKEN}"}',
    )
    path = write(folder, text)
    result = validate(
        path, LOADGRADE_TEST_URL="http://bob:hunter22@127.0.0.1:8000", LOADGRADE_TEST_TOKEN="s3cr3t-value"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: ok: tiny: generic at ${{LOADGRADE_TEST_URL}}/, 2 samples, 1 stage(s), 5 s\n"
    assert "hunter22" not in result.stdout + result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr


def test_a_literal_password_in_the_url_is_redacted_when_printed(folder: Path) -> None:
    path = write(folder, edit(SCENARIO, "http://127.0.0.1", "http://bob:hunter22@127.0.0.1"))
    result = validate(path)
    assert result.returncode == 0, result.stderr
    assert f"at http://bob:{REDACTED}@127.0.0.1:8000/, 2 samples" in result.stdout
    assert "hunter22" not in result.stdout
    assert load_scenario(path).redacted()["endpoint"]["base_url"] == f"http://bob:{REDACTED}@127.0.0.1:8000"


def test_an_error_never_shows_a_value_read_from_the_environment(folder: Path) -> None:
    path = write(folder, edit(SCENARIO, "http://127.0.0.1:8000", '"${LOADGRADE_TEST_URL}"'))
    result = validate(path, LOADGRADE_TEST_URL="hunter22-is-not-a-url")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"{path}:3: endpoint.base_url: expected an http:// or https:// URL with a host, got '${{LOADGRADE_TEST_URL}}'"
    )
