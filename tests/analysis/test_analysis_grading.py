"""LLM grading (exact, aliases, numeric, choice, regex), its vectorised path, the join under a grading section, and
the per-sample answer drift against the baseline level."""

from __future__ import annotations

import dataclasses
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import Level, synth_run, write_run

from loadgrade.analysis import NO_ANSWER, AnalysisInputError, analyse_run, join_truth
from loadgrade.analysis.degradation import answer_drift
from loadgrade.analysis.grading import (
    DEFAULT_NORMALIZE,
    MODE_OPTIONS,
    MODES,
    GradingSpec,
    answer_key,
    answer_text,
    extract_choice,
    extract_number,
    grade,
    grade_codes,
    grade_many,
    graded_task,
    grading_spec,
    normalise,
    parse_label,
)
from loadgrade.live import LiveQuality

EXACT = GradingSpec()
ALIASES = GradingSpec(mode="aliases")
NUMERIC = GradingSpec(mode="numeric")
CHOICE = GradingSpec(mode="choice")
REGEX = GradingSpec(mode="regex")

# ------------------------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("steps", "text", "expected"),
    [
        (["strip"], "  Paris \n", "Paris"),
        (["lower"], "PARIS", "paris"),
        (["casefold"], "Straße", "strasse"),
        (["punctuation"], "U.S.A.!", "U S A  "),
        (["whitespace"], "  a \t b\n c ", "a b c"),
        (["articles"], "The cat ate an apple", "cat ate apple"),
        (["nfkc"], "ＰＡＲＩＳ ①", "PARIS 1"),
        ([], "  As Is. ", "  As Is. "),
        (["punctuation", "whitespace", "casefold"], " Eiffel-Tower! ", "eiffel tower"),
    ],
)
def test_each_normalisation_step(steps: list[str], text: str, expected: str) -> None:
    assert normalise(text, steps) == expected


def test_the_default_exact_normalisation_is_the_text_tasks_lenient_match() -> None:
    from loadgrade.analysis.join import normalise_text

    for text in ["  The  Cat, sat! ", "ＡＢＣ", "Straße.", "l'été"]:
        assert normalise(text, DEFAULT_NORMALIZE["exact"]) == normalise_text(text)


def test_an_unknown_step_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(AnalysisInputError, match=r"grading.normalize has unknown step 'upper'; steps are: nfkc, strip"):
        GradingSpec(normalize=("upper",))


# ------------------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        ('"Paris"', "Paris"),
        ("42", "42"),
        ("3.5", "3.5"),
        ('["B"]', "B"),
        ("null", None),
        ("[null]", None),
        ("", None),
        (None, None),
        (float("nan"), None),
        ("The answer: B", "The answer: B"),  # not JSON: the raw text
        ('{"a": 1}', '{"a": 1}'),
    ],
)
def test_answer_text_reads_a_recorded_prediction(recorded: Any, expected: str | None) -> None:
    assert answer_text(recorded) == expected


# ------------------------------------------------------------------------------------------------ exact


@pytest.mark.parametrize(
    ("answer", "label", "expected"),
    [
        ("Paris", "Paris", True),
        ("  paris. ", "Paris", True),
        ("PARIS!", "paris", True),
        ("Paris, France", "Paris", False),
        ("3", 3.0, True),  # a CSV column with gaps reads 3 as 3.0
        ("3.5", 3.5, True),
        ("...", "Paris", None),  # nothing left after normalisation: no answer
        ("", "Paris", None),
        (None, "Paris", None),
    ],
)
def test_exact(answer: str | None, label: Any, expected: bool | None) -> None:
    assert grade(answer, label, EXACT) is expected


def test_exact_without_normalisation_is_strict() -> None:
    strict = GradingSpec(normalize=())
    assert grade("Paris", "Paris", strict) is True
    assert grade("paris", "Paris", strict) is False
    assert grade(" Paris", "Paris", strict) is False
    assert grade("   ", "Paris", strict) is None


def test_exact_with_articles() -> None:
    spec = GradingSpec(normalize=("casefold", "articles", "whitespace"))
    assert grade("The Eiffel Tower", "eiffel tower", spec) is True


# ------------------------------------------------------------------------------------------------ aliases


@pytest.mark.parametrize(
    ("answer", "label", "expected"),
    [
        ("Paris", "Paris|City of Light", True),
        ("city of light!", "Paris | City of Light", True),
        ("Lyon", "Paris|City of Light", False),
        ("Paris", "Paris", True),  # one alias is exact matching
        ("Paris", "|Paris||", True),  # empty aliases are ignored
    ],
)
def test_aliases(answer: str, label: str, expected: bool) -> None:
    assert grade(answer, label, ALIASES) is expected


def test_aliases_with_another_separator() -> None:
    spec = GradingSpec(mode="aliases", separator=";")
    assert grade("a|b", "a|b;c", spec) is True
    assert grade("c", "a|b;c", spec) is True
    assert grade("a", "a|b;c", spec) is False


def test_a_label_without_any_alias_is_refused() -> None:
    with pytest.raises(AnalysisInputError, match=r"label ' \| ' holds no accepted answer \(grading mode 'aliases'\)"):
        parse_label(" | ", ALIASES)


# ------------------------------------------------------------------------------------------------ numeric


@pytest.mark.parametrize(
    ("text", "last", "first"),
    [
        ("42", "42", "42"),
        ("The answer is 42.", "42", "42"),
        ("$1,234.50 in all", "1234.50", "1234.50"),
        ("from 3 to -7", "-7", "3"),
        ("5-2=3", "3", "5"),  # a minus glued to a number before it is not a sign
        ("x = −5", "-5", "-5"),  # Unicode minus
        ("about .5 or 0.75", "0.75", "0.5"),
        ("50% of 1,2", "2", "50"),  # "1,2" is not a thousands group
        ("1,234, then 8", "8", "1234"),
        ("ＡＢ ４２", "42", "42"),  # full-width digits
        ("12,345,678", "12345678", "12345678"),
    ],
)
def test_numbers_are_read_as_written(text: str, last: str, first: str) -> None:
    assert extract_number(text) == Decimal(last)
    assert extract_number(text, which="first") == Decimal(first)


def test_no_number_is_no_answer() -> None:
    assert extract_number("forty-two") is None
    assert grade("forty-two", 42, NUMERIC) is None
    assert answer_key("no digits", NUMERIC) is None


@pytest.mark.parametrize(
    ("answer", "label", "spec", "expected"),
    [
        ("42", 42, NUMERIC, True),
        ("42.0", "42", NUMERIC, True),
        ("042", 42.0, NUMERIC, True),
        ("41", 42, NUMERIC, False),
        ("The total is $1,234.", "1234", NUMERIC, True),
        ("1.01", 1, GradingSpec(mode="numeric", tolerance=0.01), True),  # exact decimals: 1.01 - 1 is 0.01
        ("1.02", 1, GradingSpec(mode="numeric", tolerance=0.01), False),
        ("0.99", "1", GradingSpec(mode="numeric", tolerance=0.01), True),
        ("105", 100, GradingSpec(mode="numeric", relative_tolerance=0.05), True),
        ("106", 100, GradingSpec(mode="numeric", relative_tolerance=0.05), False),
        ("-105", -100, GradingSpec(mode="numeric", relative_tolerance=0.05), True),
        ("0.1", 0, GradingSpec(mode="numeric", relative_tolerance=0.5), False),  # relative to 0 is 0
        ("0.1", 0, GradingSpec(mode="numeric", tolerance=0.1, relative_tolerance=0.5), True),  # either limit
        ("7 then 42", 7, NUMERIC, False),
        ("7 then 42", 7, GradingSpec(mode="numeric", which="first"), True),
        ("0.30", 0.3, NUMERIC, True),
    ],
)
def test_numeric(answer: str, label: Any, spec: GradingSpec, expected: bool) -> None:
    assert grade(answer, label, spec) is expected


def test_the_numeric_key_is_canonical() -> None:
    assert [answer_key(t, NUMERIC) for t in ["42.0", "042", "$1,000", "-0", ".50", "1e5"]] == [
        "42",
        "42",
        "1000",
        "0",
        "0.5",
        "5",  # no exponents: "1e5" holds 1 and 5
    ]


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("forty", r"label 'forty' holds no number \(grading mode 'numeric'\)"),
        ("3/4", r"label '3/4' holds 2 numbers \(3, 4\)"),
        (True, r"label True is not a number"),
        (float("inf"), r"label inf is not a finite number"),
    ],
)
def test_a_label_that_is_not_one_number_is_refused(label: Any, message: str) -> None:
    with pytest.raises(AnalysisInputError, match=message):
        parse_label(label, NUMERIC)


def test_a_numeric_label_may_be_written_as_text() -> None:
    assert parse_label("$1,234.", NUMERIC) == Decimal("1234")
    assert parse_label(" -3 ", NUMERIC) == Decimal("-3")


# ------------------------------------------------------------------------------------------------ choice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("[c]", "C"),
        ("**D**", "D"),
        ("B.", "B"),
        ("  A\n", "A"),
        ("Answer: B", "B"),
        ("answer: (c)", "C"),
        ("The answer is B.", "B"),
        ("The correct option is **D**", "D"),
        ("Choice C", "C"),
        ("A is tempting, but the answer is C", "C"),  # the stated letter wins
        ("The answer is A. No wait, the answer is D", "D"),  # the last statement
        ("I'd say (C).", "C"),
        ("(d) none of these", "D"),
        ("B. Paris", "B"),
        ("C) 12", "C"),
        ("The answer is a cat", None),  # a lower-case letter in a sentence is a word
        ("I think B", None),  # a bare letter inside a sentence is not guessed at
        ("(A) Paris or (B) Rome", None),  # the options repeated: unclear
        ("A) Paris B) Rome", None),
        ("E", None),  # not among the choices
        ("The answer is E", None),
        ("", None),
        ("Paris", None),
    ],
)
def test_the_chosen_letter(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_more_choices() -> None:
    spec = GradingSpec(mode="choice", choices="ABCDE")
    assert grade("The answer is E.", "e", spec) is True
    assert grade("The answer is E.", "E", CHOICE) is None  # E is no choice of ABCD


def test_choice_grades_case_insensitively() -> None:
    assert grade("answer: b", "B", CHOICE) is None  # "b" unbracketed after "answer:" is not a letter pick...
    assert grade("b", "B", CHOICE) is True  # ... but a bare b is
    assert grade("(B)", "b", CHOICE) is True
    assert grade("C", "B", CHOICE) is False


@pytest.mark.parametrize("label", ["E", "Paris", "AB", ""])
def test_a_label_that_is_not_a_choice_is_refused(label: str) -> None:
    with pytest.raises(AnalysisInputError, match=r"is not one of the choices A, B, C, D \(grading mode 'choice'\)"):
        parse_label(label, CHOICE)


# ------------------------------------------------------------------------------------------------ regex


@pytest.mark.parametrize(
    ("answer", "label", "expected"),
    [
        ("Paris, France", r"\bParis\b", True),
        ("Parisian", r"\bParis\b", False),
        ("paris", r"Paris", False),  # the default keeps case: write (?i) to ignore it
        ("paris", r"(?i)paris", True),
        ("It is   42  !", r"is 42 !", True),  # spaces are collapsed
        ("4 2", r"^\d+$", False),
        ("42", 42.0, True),  # a number label is its text
    ],
)
def test_regex(answer: str, label: Any, expected: bool) -> None:
    assert grade(answer, label, REGEX) is expected


def test_regex_applies_to_the_normalised_answer() -> None:
    spec = GradingSpec(mode="regex", normalize=("casefold", "punctuation", "whitespace"))
    assert grade("PARIS!!!", r"^paris$", spec) is True


def test_a_label_that_does_not_compile_is_refused() -> None:
    with pytest.raises(AnalysisInputError, match=r"label '\(unclosed' is not a valid regular expression: "):
        parse_label("(unclosed", REGEX)


# ------------------------------------------------------------------------------------------------ the spec


def test_every_mode_has_its_options_and_defaults() -> None:
    assert set(MODES) == set(MODE_OPTIONS) == set(DEFAULT_NORMALIZE)


def test_the_scenario_model_and_the_spec_have_the_same_keys_and_defaults() -> None:
    """run.json holds the scenario's section with every key: the analysis must read each as the scenario meant."""
    from loadgrade.scenario import Grading

    dumped = Grading().model_dump()
    assert grading_spec(dumped) == GradingSpec()
    assert set(dumped) == {"mode", *set().union(*MODE_OPTIONS.values())}
    for mode in MODES:
        assert grading_spec(Grading(mode=mode).model_dump()) == GradingSpec(mode=mode)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"mode": "fuzzy"}, r"grading.mode must be one of exact, aliases, numeric, choice, regex, got 'fuzzy'"),
        ({"tolerence": 1}, r"grading has unknown key 'tolerence'; keys are: mode, normalize"),
        ({"tolerance": -1}, r"grading.tolerance must be a number >= 0, got -1"),
        ({"tolerance": True}, r"grading.tolerance must be a number >= 0, got True"),
        ({"relative_tolerance": float("nan")}, r"grading.relative_tolerance must be a number >= 0"),
        ({"which": "middle"}, r"grading.which must be 'first' or 'last', got 'middle'"),
        ({"separator": ""}, r"grading.separator must be non-empty text"),
        ({"choices": "A"}, r"grading.choices: expected two or more letters such as 'ABCD', got 'A'"),
        ({"choices": "ABA"}, r"grading.choices: expected distinct letters .* \(A is given twice\)"),
        ({"normalize": "strip"}, r"grading.normalize must be a list of steps, got 'strip'"),
    ],
)
def test_a_bad_spec_names_the_key(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(AnalysisInputError, match=message):
        grading_spec(mapping)


def test_graded_task() -> None:
    assert graded_task(CHOICE) == "classification"
    assert graded_task(NUMERIC, labels=pd.Series(["1", "2"])) == "text"
    assert graded_task(EXACT, labels=pd.Series(["cat", "dog"])) == "classification"
    assert graded_task(EXACT, labels=pd.Series(["the cat sat", "a dog"])) == "text"
    assert graded_task(EXACT, labels=pd.Series([i * 0.37 for i in range(100)])) == "text"  # never regression
    assert graded_task(NUMERIC, task="classification") == "classification"
    with pytest.raises(AnalysisInputError, match=r"grading mode 'numeric' decides right and wrong, but task "):
        graded_task(NUMERIC, task="regression")


# ------------------------------------------------------------------------------------------------ vectorised

ANSWERS = [
    "42",
    "The answer is 42.",
    "41",
    "$1,234",
    "B",
    "(c)",
    "Answer: D",
    "Paris",
    " paris! ",
    "City of Light",
    "no idea",
    "",
    None,
    "1.5",
    "E",
    "I'd say (A).",
]
LABELS: dict[str, list[Any]] = {
    "exact": ["Paris", "42", "B", 42.0, "no idea"],
    "aliases": ["Paris|City of Light", "42|forty-two", "b|c"],
    "numeric": [42, "1234", 1.5, "41", 0],
    "choice": ["A", "b", "(C)", "D"],
    "regex": [r"\bParis\b", r"^\d+$", r"(?i)light", r"4[12]"],
}
SPECS = [
    EXACT,
    GradingSpec(normalize=()),
    ALIASES,
    NUMERIC,
    GradingSpec(mode="numeric", tolerance=1, which="first"),
    GradingSpec(mode="numeric", relative_tolerance=0.5),
    CHOICE,
    GradingSpec(mode="choice", choices="ABCDE"),
    REGEX,
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.mode}-{s.normalize}-{s.tolerance}-{s.choices}")
def test_the_vectorised_path_equals_grading_one_at_a_time(spec: GradingSpec) -> None:
    rng = random.Random(13)
    labels = LABELS[spec.mode]
    pairs = [(rng.choice(ANSWERS), rng.choice(labels)) for _ in range(2000)]
    answers = [a for a, _ in pairs]
    truths = [label for _, label in pairs]
    many = grade_many(answers, truths, spec)
    one_by_one = [grade(a, label, spec) for a, label in pairs]
    assert [None if v is pd.NA else bool(v) for v in many] == one_by_one
    assert any(v is True for v in one_by_one)
    assert any(v is False for v in one_by_one)


def test_true_and_one_are_different_labels() -> None:
    """They hash alike: grading each distinct label once must not mistake one for the other."""
    assert grade_many(["True", "1"], [True, 1], EXACT).tolist() == [True, True]
    assert grade_many(["1", "1"], [True, 1], EXACT).tolist() == [False, True]


def test_grade_codes_names_the_sample_of_a_bad_label() -> None:
    with pytest.raises(AnalysisInputError, match=r"label of sample 'q2': label 'x' holds no number"):
        grade_codes(["1"], [1, "x"], np.array([0, 0]), np.array([0, 1]), NUMERIC, label_names=["q1", "q2"])


def test_grade_many_needs_pairs() -> None:
    with pytest.raises(AnalysisInputError, match=r"predictions and labels must pair up, got 2 predictions and 1"):
        grade_many(["a", "b"], ["a"], EXACT)


def test_each_distinct_pair_is_judged_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from loadgrade.analysis import grading

    calls: list[tuple[str, Any]] = []
    real = grading.judge

    def counting(key: str, parsed: Any, spec: GradingSpec) -> bool:
        calls.append((key, parsed))
        return real(key, parsed, spec)

    monkeypatch.setattr(grading, "judge", counting)
    grade_many(["42", "41", "42", "no"] * 10_000, [42, 42, 41, 42] * 10_000, NUMERIC)
    assert len(calls) == 3  # (42, 42), (41, 42), (42, 41); "no" has no answer and is never judged


# ------------------------------------------------------------------------------------------------ join_truth


def _records(predictions: list[str], ids: list[str], ok: list[bool] | None = None) -> pd.DataFrame:
    ok = ok if ok is not None else [True] * len(ids)
    return pd.DataFrame(
        {
            "sample_id": ids,
            "ok": ok,
            "prediction": [json.dumps(p) if good else "" for p, good in zip(predictions, ok, strict=True)],
        }
    )


def test_join_truth_with_grading_decides_correct() -> None:
    records = _records(
        ["It is 42.", "about 7", "no idea", "8", "x", "42"],
        ["a", "b", "c", "b", "a", "z"],
        ok=[True, True, True, True, False, True],
    )
    truth = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": ["42", 8.0, "1"]})
    joined, summary = join_truth(records, truth, grading={"mode": "numeric"})
    assert joined["correct"].tolist() == [True, False, False, True, False, pd.NA]
    assert joined["y_pred"].fillna("-").tolist() == ["42", "7", NO_ANSWER, "8", "-", "-"]
    assert joined["y_true"].fillna("-").tolist() == ["42", "8", "1", "8", "42", "-"]
    assert joined["no_answer"].tolist() == [False, False, True, False, False, False]
    assert summary.grading == "numeric"
    assert summary.task == "text"
    assert not summary.task_inferred
    assert summary.n_no_answer == 1
    assert "answers graded numeric: the last number in the answer, right within 0 of the label" in summary.assumptions
    assert "correct_normalised" not in joined.columns


def test_join_truth_grades_as_grade_does_row_by_row() -> None:
    rng = random.Random(7)
    for spec in SPECS:
        labels = LABELS[spec.mode]
        truth = pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(labels))], "label": labels})
        ids = [rng.randrange(len(labels)) for _ in range(500)]
        answers = [rng.choice([a for a in ANSWERS if a is not None]) for _ in ids]
        joined, _ = join_truth(_records(answers, [f"s{i}" for i in ids]), truth, grading=spec)
        expected = [grade(a, labels[i], spec) is True for a, i in zip(answers, ids, strict=True)]
        assert joined["correct"].tolist() == expected, spec
        no_answer = [grade(a, labels[i], spec) is None for a, i in zip(answers, ids, strict=True)]
        assert joined["no_answer"].tolist() == no_answer, spec


def test_join_truth_with_choice_grading_is_a_classification_over_letters() -> None:
    truth = pd.DataFrame({"sample_id": ["a", "b"], "label": ["(a)", "B"]})
    joined, summary = join_truth(_records(["The answer is A.", "C"], ["a", "b"]), truth, grading={"mode": "choice"})
    assert summary.task == "classification"
    assert joined["y_true"].tolist() == ["A", "B"]
    assert joined["y_pred"].tolist() == ["A", "C"]
    assert joined["correct"].tolist() == [True, False]


def test_join_truth_with_exact_grading_keeps_the_inferred_task() -> None:
    truth = pd.DataFrame({"sample_id": ["a", "b"], "label": ["positive", "negative"]})
    joined, summary = join_truth(_records(["Positive.", "negative"], ["a", "b"]), truth, grading=GradingSpec())
    assert (summary.task, summary.task_inferred) == ("classification", True)
    assert joined["correct"].tolist() == [True, True]
    assert joined["y_pred"].tolist() == ["positive", "negative"]


def test_join_truth_without_grading_is_unchanged() -> None:
    truth = pd.DataFrame({"sample_id": ["a"], "label": ["Paris"]})
    joined, summary = join_truth(_records(["paris"], ["a"]), truth, task="text")
    assert joined["correct"].tolist() == [False]
    assert joined["correct_normalised"].tolist() == [True]
    assert summary.grading is None


def test_join_truth_refuses_grading_a_regression() -> None:
    truth = pd.DataFrame({"sample_id": ["a"], "label": [1.5]})
    with pytest.raises(AnalysisInputError, match=r"task 'regression' has neither"):
        join_truth(_records(["1.5"], ["a"]), truth, task="regression", grading={"mode": "numeric"})


def test_a_bad_label_names_its_sample_at_analysis() -> None:
    truth = pd.DataFrame({"sample_id": ["a", "q7"], "label": [r"ok", r"(unclosed"]})
    with pytest.raises(AnalysisInputError, match=r"label of sample 'q7': label '\(unclosed' is not a valid regular"):
        join_truth(_records(["ok", "ok"], ["a", "q7"]), truth, grading={"mode": "regex"})


def test_a_bad_label_never_sent_does_not_stop_the_analysis() -> None:
    truth = pd.DataFrame({"sample_id": ["a", "q7"], "label": ["1", "forty"]})
    joined, _ = join_truth(_records(["1"], ["a"]), truth, grading={"mode": "numeric"})
    assert joined["correct"].tolist() == [True]


# ------------------------------------------------------------------------------------------------ answer drift


def _drift_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        # level 1 is the baseline (the lowest load), though listed second
        (1, "a", "paris", True),
        (1, "b", "4", True),
        (1, "b", "4", True),
        (1, "c", NO_ANSWER, True),
        (1, "d", "x", True),
        (1, "e", "", False),  # a failed request answers nothing
        (0, "a", "paris", True),
        (0, "a", "lyon", True),
        (0, "a", "lyon", True),  # most frequent: lyon
        (0, "b", "5", True),
        (0, "b", "4", True),  # a tie: the first given (5) stands
        (0, "c", "7", True),  # from no answer to an answer: drifted
        (0, "d", "", False),  # failed only: not compared
        (0, "e", "y", True),  # not answered at the baseline: not compared
        (2, "a", "paris", True),
        (2, "b", "4", True),
    ]
    joined = pd.DataFrame(rows, columns=["level", "sample_id", "y_pred", "ok"])
    joined["t_sent"] = np.arange(len(joined), dtype=float)
    joined["has_truth"] = True
    joined.loc[~joined["ok"], "y_pred"] = None
    levels = pd.DataFrame({"level": [0, 1, 2], "users": [8.0, 2.0, 16.0]})
    return joined, levels


def test_answer_drift_per_level_against_the_baseline() -> None:
    joined, levels = _drift_frame()
    drift = answer_drift(joined, levels)
    assert drift["level"].tolist() == [1, 0, 2]  # load order
    assert drift["n_drift_samples"].tolist() == [4, 3, 2]
    assert drift["answer_drift"].tolist() == [0.0, 1.0, 0.0]


def test_answer_drift_ignores_records_without_a_label_and_orders_by_send_time() -> None:
    joined, levels = _drift_frame()
    shuffled = joined.sample(frac=1.0, random_state=3)
    assert answer_drift(shuffled, levels).equals(answer_drift(joined, levels))
    joined.loc[joined["sample_id"] == "c", "has_truth"] = False
    assert answer_drift(joined, levels)["n_drift_samples"].tolist() == [3, 2, 2]


def test_answer_drift_normalised_for_ungraded_text() -> None:
    joined = pd.DataFrame(
        {
            "level": [0, 1],
            "sample_id": ["a", "a"],
            "y_pred": ["The Cat.", "the cat"],
            "ok": True,
            "has_truth": True,
            "t_sent": [0.0, 1.0],
        }
    )
    levels = pd.DataFrame({"level": [0, 1], "users": [1.0, 4.0]})
    assert answer_drift(joined, levels)["answer_drift"].tolist() == [0.0, 1.0]
    assert answer_drift(joined, levels, normalise=True)["answer_drift"].tolist() == [0.0, 0.0]


def test_answer_drift_without_shared_samples_is_nan() -> None:
    joined = pd.DataFrame(
        {
            "level": [0, 1],
            "sample_id": ["a", "b"],
            "y_pred": ["x", "y"],
            "ok": True,
            "has_truth": True,
            "t_sent": [0, 1],
        }
    )
    drift = answer_drift(joined, pd.DataFrame({"level": [0, 1], "users": [1.0, 2.0]}))
    assert drift["n_drift_samples"].tolist() == [1, 0]
    assert np.isnan(drift["answer_drift"].iloc[1])


def test_answer_drift_names_missing_columns() -> None:
    with pytest.raises(AnalysisInputError, match=r"joined records have no column 'y_pred'"):
        answer_drift(
            pd.DataFrame({"level": [0]}).assign(sample_id="a", t_sent=0.0, ok=True, has_truth=True),
            pd.DataFrame({"level": [0], "users": [1.0]}),
        )


# ------------------------------------------------------------------------------------------------ a whole run


def _graded_run(tmp_path: Path, grading: dict[str, Any] | None) -> Path:
    """Three levels of numeric answers: the third answers half its samples with another number."""
    records, truth, stages = synth_run([Level(2, 100, 1.0), Level(8, 100, 1.0), Level(32, 100, 1.0)], n_samples=50)
    truth["label"] = [f"{10 * i}" for i in range(len(truth))]
    label_of = dict(zip(truth["id"], truth["label"], strict=True))
    sample_index = records["sample_id"].map({s: i for i, s in enumerate(truth["id"])})
    changed = (records["stage"] == 2) & (sample_index % 2 == 0)
    answers = [
        json.dumps(f"The answer is {int(label_of[s]) + 1}." if bad else f"The answer is {label_of[s]}.")
        for s, bad in zip(records["sample_id"], changed, strict=True)
    ]
    records["prediction"] = np.where(records["ok"], answers, "")
    run_dir = write_run(tmp_path / "run", records, truth, stages=stages)
    info = json.loads((run_dir / "run.json").read_text())
    info["scenario"]["grading"] = grading
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def test_a_graded_run_reports_accuracy_and_answer_drift(tmp_path: Path) -> None:
    from loadgrade.scenario import Grading

    run_dir = _graded_run(tmp_path, Grading(mode="numeric").model_dump(mode="json"))
    analysis = analyse_run(run_dir, progress=False)
    levels = analysis.levels.sort_values("level")
    assert levels["accuracy"].tolist() == [1.0, 1.0, 0.5]
    assert levels["answer_drift"].tolist() == [0.0, 0.0, 0.5]
    assert levels["n_drift_samples"].tolist() == [50, 50, 50]
    assert analysis.run.grading == GradingSpec(mode="numeric")
    assert any(a.startswith("answers graded numeric") for a in analysis.summary.assumptions)
    assert bool(levels["degraded"].iloc[2])
    # the raw label against the answer key would be a second, false accuracy (0 here: "10" is not "The answer...")
    assert not {"exact_match", "normalised_match"} & set(levels.columns)


def test_an_ungraded_text_run_keeps_exact_and_normalised_match(tmp_path: Path) -> None:
    run_dir = _graded_run(tmp_path, None)
    levels = analyse_run(run_dir, task="text", progress=False).levels.sort_values("level")
    assert levels["exact_match"].tolist() == [0.0, 0.0, 0.0]  # the reply's words are not the bare number


def test_an_ungraded_classification_run_has_no_drift_column(tmp_path: Path) -> None:
    records, truth, stages = synth_run([Level(2, 60), Level(8, 60)], n_samples=30)
    analysis = analyse_run(write_run(tmp_path / "run", records, truth, stages=stages), progress=False)
    assert "answer_drift" not in analysis.levels.columns


def test_a_bad_grading_section_in_run_json_names_the_file(tmp_path: Path) -> None:
    run_dir = _graded_run(tmp_path, {"mode": "numeric", "tolerance": -1})
    with pytest.raises(AnalysisInputError, match=r"grading.tolerance must be a number >= 0"):
        analyse_run(run_dir, progress=False)
    run_dir = _graded_run(tmp_path / "other", {"mode": "numeric", "fuzz": 1})
    with pytest.raises(AnalysisInputError, match=r"run.json': scenario.grading has unknown key 'fuzz'"):
        analyse_run(run_dir, progress=False)


# ------------------------------------------------------------------------------------------------ live figures


def test_live_figures_grade_as_the_report_does() -> None:
    ids, labels = ["a", "b", "c"], ["42", "1", "7"]
    spec = GradingSpec(mode="numeric", tolerance=0.5)
    live = LiveQuality(ids, labels, grading=dataclasses.asdict(spec), t_start=0.0)
    live.start_level(0.0, users=1, index=0)

    def row(i: int, sample: str, prediction: str) -> list[Any]:
        return [f"0-{i}", sample, 0, 1, float(i), 5.0, 200, True, "", "", prediction, 1, 1, ""]

    predictions = ['"It is 42.4"', '"two"', '"7."', '"41"']
    samples = ["a", "b", "c", "a"]
    live.add([row(i, s, p) for i, (s, p) in enumerate(zip(samples, predictions, strict=True))], [(1, 0, 1, "")] * 4)
    level = live.stage_summary(0, now=10.0)
    assert (level["n_correct"], level["n_no_answer"], level["n_scored"]) == (2, 1, 4)
    records = _records([json.loads(p) for p in predictions], samples)
    joined, _ = join_truth(records, pd.DataFrame({"sample_id": ids, "label": labels}), grading=spec)
    assert int(joined["correct"].sum()) == level["n_correct"]
    assert int(joined["no_answer"].sum()) == level["n_no_answer"]
    assert live.task == "text"
