"""The scenario's ``grading:`` section: good sections load, and every mistake names the file, the line and the key
before any load starts (a bad label too, naming its sample)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loadgrade.errors import ScenarioError
from loadgrade.scenario import Grading, load_scenario

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """\
name: graded
endpoint:
  base_url: http://127.0.0.1:8000
protocol:
  kind: openai-chat
  model: m
  prompt: "{{question}}"
dataset:
  path: data.csv
  input_field: question
load:
  users: 2
  run_time_s: 5
"""
GRADING_LINE = SCENARIO.count("\n") + 1  # the line of "grading:" when a section is appended

DATA = {
    "exact": "id,label,question\na,Paris,Capital of France?\nb,4,2+2?\n",
    "aliases": "id,label,question\na,Paris|City of Light,Capital?\nb,four|4,2+2?\n",
    "numeric": 'id,label,question\na,42,x?\nb,"1,234.5",y?\nc,-3,z?\n',
    "choice": "id,label,question\na,B,x?\nb,(c),y?\nc,d,z?\n",
    "regex": "id,label,question\na,\\bParis\\b,x?\nb,^(4|four)$,y?\n",
}


def write(folder: Path, grading: str, *, data: str = DATA["exact"], scenario: str = SCENARIO) -> Path:
    (folder / "data.csv").write_text(data)
    path = folder / "scenario.yaml"
    path.write_text(scenario + textwrap.dedent(grading), encoding="utf-8")
    return path


def problem(path: Path, *, match: str) -> ScenarioError:
    with pytest.raises(ScenarioError, match=match) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(str(path))
    return caught.value


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgrade", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=dict(os.environ),
    )


# ------------------------------------------------------------------------------------------------ good sections


def test_no_section_is_no_grading(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, "")).grading is None


def test_the_defaults(tmp_path: Path) -> None:
    grading = load_scenario(write(tmp_path, "grading: {}\n")).grading
    assert grading == Grading()
    assert (grading.mode, grading.normalize, grading.separator, grading.which) == ("exact", None, "|", "last")
    assert (grading.tolerance, grading.relative_tolerance, grading.choices) == (0.0, None, "ABCD")


@pytest.mark.parametrize(
    ("mode", "grading"),
    [
        ("exact", "grading:\n  mode: exact\n  normalize: [nfkc, casefold, articles, punctuation, whitespace]\n"),
        ("aliases", "grading:\n  mode: aliases\n  separator: '|'\n"),
        ("numeric", "grading:\n  mode: numeric\n  which: first\n  tolerance: 0.5\n  relative_tolerance: 0.01\n"),
        ("choice", "grading:\n  mode: choice\n  choices: ABCDE\n"),
        ("regex", "grading:\n  mode: regex\n  normalize: []\n"),
    ],
)
def test_each_mode_with_its_options(tmp_path: Path, mode: str, grading: str) -> None:
    scenario = load_scenario(write(tmp_path, grading, data=DATA[mode]))
    assert scenario.grading is not None
    assert scenario.grading.mode == mode
    # run.json holds it, and the analysis reads it back as the same spec
    from loadgrade.analysis.grading import grading_spec

    written = scenario.redacted()["grading"]
    assert written["mode"] == mode
    assert grading_spec(written).mode == mode


def test_an_integer_tolerance_is_a_number(tmp_path: Path) -> None:
    grading = load_scenario(write(tmp_path, "grading: {mode: numeric, tolerance: 1}\n", data=DATA["numeric"])).grading
    assert grading is not None
    assert grading.tolerance == 1.0


def test_validate_accepts_a_graded_scenario(tmp_path: Path) -> None:
    path = write(tmp_path, "grading:\n  mode: numeric\n  tolerance: 0.5\n", data=DATA["numeric"])
    result = validate(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(", graded numeric")
    assert result.stderr == ""


# ------------------------------------------------------------------------------------------------ bad keys


@pytest.mark.parametrize(
    ("grading", "key", "line", "expected"),
    [
        (
            "grading:\n  mode: fuzzy\n",
            "grading.mode",
            1,
            "Input should be 'exact', 'aliases', 'numeric', 'choice' or 'regex' (got 'fuzzy')",
        ),
        (
            "grading:\n  mode: numeric\n  tolerence: 0.5\n",
            "grading.tolerence",
            2,
            "unknown key 'tolerence' (did you mean 'tolerance'?); expected one of: choices, mode, normalize, "
            "relative_tolerance, separator, tolerance, which",
        ),
        ("grading:\n  mode: numeric\n  tolerance: -1\n", "grading.tolerance", 2, "greater than or equal to 0"),
        (
            "grading:\n  mode: numeric\n  tolerance: yes\n",
            "grading.tolerance",
            2,
            "expected a number, got yes (YAML reads it as a boolean)",
        ),
        ("grading:\n  mode: numeric\n  which: middle\n", "grading.which", 2, "Input should be 'first' or 'last'"),
        ("grading:\n  normalize: [strip, upper]\n", "grading.normalize[1]", 1, "Input should be 'nfkc', 'strip'"),
        (
            "grading:\n  normalize: [strip, lower, strip]\n",
            "grading.normalize",
            1,
            "step 'strip' is given twice; each step is applied once, in the order given",
        ),
        ("grading:\n  normalize: strip\n", "grading.normalize", 1, "Input should be a valid list"),
        ("grading:\n  mode: aliases\n  separator: ''\n", "grading.separator", 2, "at least 1 character"),
        (
            "grading:\n  mode: choice\n  choices: AAB\n",
            "grading.choices",
            2,
            "expected distinct letters such as 'ABCD', got 'AAB' (A is given twice)",
        ),
        (
            "grading:\n  mode: choice\n  choices: A1\n",
            "grading.choices",
            2,
            "expected two or more letters such as 'ABCD', got 'A1'",
        ),
        (
            "grading:\n  mode: exact\n  tolerance: 0.5\n",
            "grading.tolerance",
            2,
            "'tolerance' applies to mode 'numeric' only, and this section's mode is 'exact': remove it or change "
            "the mode",
        ),
        (
            "grading:\n  separator: ';'\n",
            "grading.separator",
            1,
            "'separator' applies to mode 'aliases' only, and this section's mode is 'exact'",
        ),
        (
            "grading:\n  mode: numeric\n  normalize: [strip]\n",
            "grading.normalize",
            2,
            "'normalize' applies to mode 'exact' or 'aliases' or 'regex' only, and this section's mode is 'numeric'",
        ),
        ("grading: numeric\n", "grading", 0, "Input should be a valid dictionary or instance of Grading"),
    ],
)
def test_a_bad_key_names_the_file_line_and_key(
    tmp_path: Path, grading: str, key: str, line: int, expected: str
) -> None:
    path = write(tmp_path, grading, data=DATA["numeric"] if "numeric" in grading else DATA["choice"])
    error = problem(path, match=re.escape(expected))
    assert error.key == key
    assert str(error).startswith(f"{path}:{GRADING_LINE + line}: {key}: ")


def test_grading_a_regression_is_refused(tmp_path: Path) -> None:
    scenario = SCENARIO.replace("  input_field: question\n", "  input_field: question\n  task: regression\n")
    path = write(tmp_path, "grading: {mode: numeric}\n", data=DATA["numeric"], scenario=scenario)
    error = problem(path, match=r"task 'regression' has no right or wrong answer, but the 'grading' section")
    assert error.key == "dataset.task"


# ------------------------------------------------------------------------------------------------ bad labels


@pytest.mark.parametrize(
    ("mode", "data", "expected"),
    [
        (
            "numeric",
            "id,label,question\na,42,x?\nq2,forty,y?\nq3,seven,z?\n",
            "label of sample 'q2': label 'forty' holds no number (grading mode 'numeric') (and 1 more label)",
        ),
        (
            "choice",
            "id,label,question\na,B,x?\nq2,Paris,y?\n",
            "label of sample 'q2': label 'Paris' is not one of the choices A, B, C, D (grading mode 'choice')",
        ),
        (
            "regex",
            "id,label,question\na,ok,x?\nq2,(unclosed,y?\n",
            "label of sample 'q2': label '(unclosed' is not a valid regular expression: missing ), unterminated",
        ),
        (
            "aliases",
            "id,label,question\na,ok,x?\nq2,|,y?\n",
            "label of sample 'q2': label '|' holds no accepted answer (grading mode 'aliases')",
        ),
    ],
)
def test_a_label_the_grading_cannot_use_names_its_sample(tmp_path: Path, mode: str, data: str, expected: str) -> None:
    path = write(tmp_path, f"grading:\n  mode: {mode}\n", data=data)
    error = problem(path, match=re.escape(expected))
    assert error.key == "grading"
    assert str(error).startswith(f"{path}:{GRADING_LINE}: grading: ")


def test_labels_are_not_read_without_the_dataset_check(tmp_path: Path) -> None:
    path = write(tmp_path, "grading:\n  mode: numeric\n", data="id,label,question\na,forty,x?\n")
    assert load_scenario(path, check_dataset=False).grading is not None


def test_validate_reports_a_bad_label_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "grading:\n  mode: numeric\n", data="id,label,question\nq1,forty,x?\n")
    result = validate(path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"{path}:{GRADING_LINE}: grading: label of sample 'q1': label 'forty' holds no number (grading mode 'numeric')"
    )
