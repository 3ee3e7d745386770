"""The presets inside scenario files: request paths, and each bad option reported as file, line, key and reason."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgrade.errors import ScenarioError
from loadgrade.scenario import load_scenario

TEMPLATE = """\
name: t
endpoint:
  base_url: http://127.0.0.1:8000
protocol:
{protocol}
dataset:
  path: data.csv
  input_columns: ["x*"]
load:
  users: 1
"""

DATA = "id,label,x1,x2,text\na,0,1.0,2.0,hello\nb,1,3.0,4.0,world\n"


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "data.csv").write_text(DATA)
    (tmp_path / "lg_scenario_hooks.py").write_text(
        "def build(sample):\n    return sample.fields['nope']\n\n"
        "def build_ok(sample):\n    return sample.input\n\n"
        "def extract(payload):\n    return payload\n"
    )
    yield tmp_path
    sys.modules.pop("lg_scenario_hooks", None)


def scenario_file(folder: Path, protocol: str, *, path: str | None = None, input_field: str | None = None) -> Path:
    text = TEMPLATE.format(protocol=textwrap.indent(textwrap.dedent(protocol).strip(), "  "))
    if path is not None:
        text = text.replace("  base_url: http://127.0.0.1:8000", f"  base_url: http://127.0.0.1:8000\n  path: {path}")
    if input_field is not None:
        text = text.replace('  input_columns: ["x*"]', f"  input_field: {input_field}")
    target = folder / "s.yaml"
    target.write_text(text)
    return target


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("kind: open-inference-v2\nmodel_name: digits", "/v2/models/digits/infer"),
        ("kind: open-inference-v2\nmodel_name: digits\nversion: '2'", "/v2/models/digits/versions/2/infer"),
        ("kind: tf-serving\nmodel_name: digits", "/v1/models/digits:predict"),
        ("kind: torchserve\nmodel_name: digits\nversion: '1.0'", "/predictions/digits/1.0"),
        ("kind: openai-chat\nmodel: m\nprompt: '{{input}}'", "/v1/chat/completions"),
        ("kind: openai-completions\nmodel: m\nprompt: '{{input}}'", "/v1/completions"),
        ("kind: python\nbuild: lg_scenario_hooks:build_ok\nextract: json:loads", "/"),
        ("kind: flask-predict", "/predict"),
    ],
)
def test_request_path_comes_from_the_preset(folder: Path, protocol: str, expected: str) -> None:
    assert load_scenario(scenario_file(folder, protocol)).request_path == expected


def test_endpoint_path_wins_over_the_preset(folder: Path) -> None:
    scenario = load_scenario(scenario_file(folder, "kind: tf-serving\nmodel_name: digits", path="/custom:predict"))
    assert scenario.request_path == "/custom:predict"


BAD = {
    "typo with suggestion": (
        "kind: open-inference-v2\nmodle_name: digits",
        "protocol.modle_name",
        r"unknown key 'modle_name' \(did you mean 'model_name'\?\); expected one of: batch_size, datatype, input_name, "
        "kind, model_name, output_name, shape, version",
    ),
    "missing model name": ("kind: tf-serving", "protocol.model_name", "missing required key"),
    "model name with a slash": (
        "kind: torchserve\nmodel_name: a/b",
        "protocol.model_name",
        "expected a model name without '/'",
    ),
    "unknown datatype": (
        "kind: open-inference-v2\nmodel_name: m\ndatatype: FP16",
        "protocol.datatype",
        "Input should be 'FP32', 'FP64', 'INT64' or 'BYTES'",
    ),
    "text into a numeric tensor": (
        "kind: open-inference-v2\nmodel_name: m",
        "protocol",
        "cannot build the request for sample 'a': datatype FP64 needs finite numbers, got \"hello\"; "
        "use datatype BYTES for text",
    ),
    "prompt placeholder": (
        "kind: openai-chat\nmodel: m\nprompt: 'Say {{colour}}'",
        "protocol",
        r"placeholder \{\{colour\}\} names no dataset column",
    ),
    "bad regex": (
        "kind: openai-completions\nmodel: m\nprompt: p\nanswer_regex: '(x'",
        "protocol.answer_regex",
        r"invalid regular expression '\(x'",
    ),
    "python: module missing": (
        "kind: python\nbuild: no_such_module_xyz:f\nextract: json:loads",
        "protocol.build",
        r"cannot import module 'no_such_module_xyz': No module named 'no_such_module_xyz' \(looked on the Python "
        "path and in ",
    ),
    "python: typo lists the file's keys": (
        "kind: python\nbuild: lg_scenario_hooks:build_ok\nextrakt: json:loads",
        "protocol.extrakt",
        r"unknown key 'extrakt' \(did you mean 'extract'\?\); expected one of: build, extract, kind",
    ),
    "python: build function fails on the first sample": (
        "kind: python\nbuild: lg_scenario_hooks:build\nextract: lg_scenario_hooks:extract",
        "protocol",
        "cannot build the request for sample 'a': KeyError: 'nope'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_preset_options_name_the_key(folder: Path, case: str) -> None:
    protocol, key, message = BAD[case]
    input_field = "text" if case == "text into a numeric tensor" else None
    path = scenario_file(folder, protocol, input_field=input_field)
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario(path)
    assert key in {p.key for p in caught.value.problems}
    assert all(p.line is not None for p in caught.value.problems)


def test_python_preset_imports_from_the_scenario_folder(folder: Path) -> None:
    scenario = load_scenario(
        scenario_file(folder, "kind: python\nbuild: lg_scenario_hooks:build_ok\nextract: lg_scenario_hooks:extract")
    )
    assert scenario.protocol.extract({"a": 1}) == {"a": 1}
    assert scenario.redacted()["protocol"] == {
        "kind": "python",
        "build": "lg_scenario_hooks:build_ok",
        "extract": "lg_scenario_hooks:extract",
    }
