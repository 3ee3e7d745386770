"""Scenario validation: every kind of bad input gets one clear error naming file, key and expectation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loadgrade.errors import ScenarioError
from loadgrade.scenario import REDACTED, load_scenario

VALID = """\
name: tiny
endpoint:
  base_url: http://127.0.0.1:8000
  headers:
    Authorization: "Bearer ${LOADGRADE_TEST_TOKEN}"
    X-Api-Key: literal-secret
    X-Trace: visible
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


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOADGRADE_TEST_TOKEN", "s3cr3t-value")
    (tmp_path / "data.csv").write_text(DATA)
    return tmp_path


def write(folder: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def test_valid_scenario_resolves_paths_env_and_defaults(folder: Path) -> None:
    scenario = load_scenario(write(folder, VALID))
    assert scenario.dataset.path == (folder / "data.csv").resolve()
    assert scenario.dataset.format == "csv"
    assert scenario.endpoint.headers["Authorization"] == "Bearer s3cr3t-value"
    assert scenario.request_path == "/"
    assert scenario.load.kind == "users"
    data = scenario.data()
    assert data.ids == ["a", "b"]
    assert data.inputs == [[1.0, 2.0], [3.0, 4.0]]
    assert data.labels == [0, 1]


def test_redacted_scenario_never_contains_secrets(folder: Path) -> None:
    dumped = json.dumps(load_scenario(write(folder, VALID)).redacted())
    assert "s3cr3t-value" not in dumped
    assert "literal-secret" not in dumped
    assert "${LOADGRADE_TEST_TOKEN}" in dumped
    assert REDACTED in dumped
    assert "visible" in dumped


BAD_CASES = {
    "unknown key (typo)": (
        ("  run_time_s: 5", "  run_tme_s: 5"),
        "load.run_tme_s",
        r"unknown key 'run_tme_s' \(did you mean 'run_time_s'\?\); expected one of: kind, ",
    ),
    "missing key": (("  prediction: result.label\n", ""), "protocol.prediction", "missing required key"),
    "wrong type": (("  users: 2", "  users: many"), "load.users", "expected a whole number, got the text 'many'"),
    "missing dataset file": (("path: data.csv", "path: nope.csv"), "dataset.path", "dataset file not found"),
    "no id column": (
        ("  input_columns", "  id_column: key\n  input_columns"),
        "dataset.id_column",
        "named 'key'; columns are: id, label, x1, x2",
    ),
    "no label column": (("  input_columns", "  label_column: y\n  input_columns"), "dataset.label_column", "named 'y'"),
    "no input column": (('["x*"]', '["z*"]'), "dataset.input_columns", "no column of data.csv matches 'z\\*'"),
    "unknown protocol kind": (
        ("kind: generic", "kind: grpc"),
        "protocol.kind",
        "unknown protocol kind 'grpc'; expected one of: 'generic', 'flask-predict'",
    ),
    "invalid JMESPath": (
        ("prediction: result.label", "prediction: 'result.[label'"),
        "protocol.prediction",
        "invalid JMESPath expression",
    ),
    "unknown placeholder": (("{{sample_id}}", "{{colour}}"), "protocol", r"placeholder \{\{colour\}\}"),
    "both inputs": (
        ('  input_columns: ["x*"]', '  input_columns: ["x*"]\n  input_field: x1'),
        "dataset",
        "exactly one of",
    ),
    "bad url": (("http://127.0.0.1:8000", "127.0.0.1:8000"), "endpoint.base_url", "http:// or https://"),
    "zero users": (("  users: 2", "  users: 0"), "load.users", "greater than 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_scenarios_name_file_key_and_expectation(folder: Path, case: str) -> None:
    (old, new), key, expected = BAD_CASES[case]
    path = write(folder, edit(VALID, old, new))
    with pytest.raises(ScenarioError, match=expected) as caught:
        load_scenario(path)
    assert caught.value.key == key
    assert str(caught.value).startswith(str(path))


def test_errors_carry_the_yaml_line(folder: Path) -> None:
    path = write(folder, edit(VALID, "  users: 2", "  users: many"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:16: load.users:")


def test_unset_environment_variable(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOADGRADE_TEST_TOKEN")
    with pytest.raises(ScenarioError, match=r"LOADGRADE_TEST_TOKEN is not set \(referenced as \$\{LOADGRADE_TEST"):
        load_scenario(write(folder, VALID))


def test_duplicate_sample_ids(folder: Path) -> None:
    (folder / "data.csv").write_text(DATA + "a,1,5.0,6.0\n")
    with pytest.raises(ScenarioError, match=r"sample ids must be unique; 1 ids repeat, e\.g\. 'a'") as caught:
        load_scenario(write(folder, VALID))
    assert caught.value.key == "dataset.id_column"


def test_empty_dataset(folder: Path) -> None:
    (folder / "data.csv").write_text("id,label,x1,x2\n")
    with pytest.raises(ScenarioError, match="has no rows"):
        load_scenario(write(folder, VALID))


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    text = edit(edit(VALID, "  users: 2", "  users: many"), "kind: generic", "kind: generic\n  colour: red")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(folder, text))
    assert {p.key for p in caught.value.problems} == {"load.users", "protocol.colour"}


def test_jsonl_and_parquet_datasets_read_like_csv(folder: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(folder / "data.csv", dtype={"id": str})
    frame.to_json(folder / "data.jsonl", orient="records", lines=True)
    frame.to_parquet(folder / "data.parquet")
    loaded = [
        load_scenario(write(folder, edit(VALID, "data.csv", name), f"{name}.yaml")).data()
        for name in ("data.csv", "data.jsonl", "data.parquet")
    ]
    for data in loaded:
        assert (data.ids, data.inputs, data.labels) == (loaded[0].ids, loaded[0].inputs, loaded[0].labels)


def test_validate_cli_exits_2_with_one_clear_line(folder: Path) -> None:
    path = write(folder, edit(VALID, "kind: generic", "kind: grpc"))
    result = subprocess.run(
        [sys.executable, "-m", "loadgrade", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}:9: protocol.kind: unknown protocol kind 'grpc'; expected one of: 'generic', 'flask-predict', "
        "'open-inference-v2', 'tf-serving', 'torchserve', 'openai-chat', 'openai-completions', 'python'"
    ]


def test_shipped_scenarios_are_valid() -> None:
    shipped = sorted(Path(__file__).resolve().parents[2].joinpath("scenarios").glob("*.yaml"))
    assert shipped, "no scenarios shipped"
    for path in shipped:
        load_scenario(path)
