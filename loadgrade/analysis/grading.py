"""Is a model's text answer right? The scenario's ``grading:`` section, as pure functions.

A language model answers in words, so "right" needs a rule, chosen per scenario by ``grading.mode``:

- ``exact`` (the default): the answer equals the label once both are normalised (:func:`normalise`);
- ``aliases``: the label lists several accepted answers separated by ``separator`` (``"|"``); any one will do;
- ``numeric``: the last (or ``which: first``) number in the answer is within ``tolerance`` (absolute) or
  ``relative_tolerance`` (a share of the label) of the label's number (:func:`extract_number`);
- ``choice``: the multiple-choice letter the answer picks (:func:`extract_choice`) is the label's letter;
- ``regex``: the label is a regular expression that is found in (``re.search``) the normalised answer.

Every mode first reduces the answer, on its own, to its *answer key* (:func:`answer_key`): the normalised text, the
number or the letter. That key is what the report shows as ``y_pred`` and what the answer drift compares between
load levels; a key of ``None`` is *no answer* (nothing left after normalisation, no number, no letter), which is
wrong whatever the label says, and is counted apart as ``n_no_answer`` as a ``null`` prediction is. Grading a run
reduces each distinct answer once, parses each distinct label once and judges each distinct (answer, label) pair
once (:func:`grade_codes`): runs have millions of rows but few distinct pairs.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from functools import cached_property
from numbers import Integral, Real
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd

from loadgrade.analysis.errors import AnalysisInputError

__all__ = [
    "DEFAULT_NORMALIZE",
    "MODES",
    "MODE_OPTIONS",
    "NORMALIZE_STEPS",
    "GradedCodes",
    "GradingSpec",
    "answer_key",
    "answer_text",
    "choices_problem",
    "extract_choice",
    "extract_number",
    "grade",
    "grade_codes",
    "grade_many",
    "graded_task",
    "grading_spec",
    "judge",
    "label_text",
    "normalise",
    "parse_label",
]

Mode = Literal["exact", "aliases", "numeric", "choice", "regex"]
Step = Literal["nfkc", "strip", "lower", "casefold", "punctuation", "whitespace", "articles"]

MODES: tuple[str, ...] = get_args(Mode)
NORMALIZE_STEPS: tuple[str, ...] = get_args(Step)
"""Normalisation steps, applied in the order given: ``nfkc`` (Unicode NFKC: full-width letters and digits, ligatures),
``strip`` (spaces at both ends), ``lower``, ``casefold`` (lower case, also for ß and the like), ``punctuation``
(each Unicode punctuation character becomes a space), ``whitespace`` (runs of spaces become one, ends stripped),
``articles`` (the English words a, an, the are dropped)."""

DEFAULT_NORMALIZE: dict[str, tuple[str, ...]] = {
    # the lenient comparison the text task has always reported as correct_normalised (join.normalise_text)
    "exact": ("nfkc", "casefold", "punctuation", "whitespace"),
    "aliases": ("nfkc", "casefold", "punctuation", "whitespace"),
    # a pattern is written against the answer's own case and punctuation: only tidy its spaces
    "regex": ("nfkc", "whitespace"),
    "numeric": (),
    "choice": (),
}
"""The ``normalize`` steps of each mode when the scenario gives none (numeric and choice read the answer as it is)."""

MODE_OPTIONS: dict[str, frozenset[str]] = {
    "exact": frozenset({"normalize"}),
    "aliases": frozenset({"normalize", "separator"}),
    "numeric": frozenset({"which", "tolerance", "relative_tolerance"}),
    "choice": frozenset({"choices"}),
    "regex": frozenset({"normalize"}),
}
"""The keys (besides ``mode``) that mean something in each mode: a scenario giving another mode's key is refused."""


@dataclass(frozen=True)
class GradingSpec:
    """How answers are graded: the scenario's ``grading:`` section (see the module docstring for the modes)."""

    mode: str = "exact"
    """exact, aliases, numeric, choice or regex."""
    normalize: tuple[str, ...] | None = None
    """Steps of :func:`normalise`, in order; None: the mode's :data:`DEFAULT_NORMALIZE`."""
    separator: str = "|"
    """aliases: what separates the accepted answers in a label."""
    which: str = "last"
    """numeric: the ``first`` or the ``last`` number in the answer."""
    tolerance: float = 0.0
    """numeric: largest absolute difference still right."""
    relative_tolerance: float | None = None
    """numeric: largest difference still right, as a share of the label's magnitude (0.01 = 1 %)."""
    choices: str = "ABCD"
    """choice: the letters a question offers."""

    def __post_init__(self) -> None:
        if self.normalize is not None and not isinstance(self.normalize, tuple):
            object.__setattr__(self, "normalize", tuple(self.normalize))
        _check_spec(self)

    @cached_property
    def _limits(self) -> tuple[Decimal, Decimal | None]:
        """The tolerances as exact decimals, so that 1.01 is within 0.01 of 1 (in binary floats it is not)."""
        relative = self.relative_tolerance
        return Decimal(repr(float(self.tolerance))), None if relative is None else Decimal(repr(float(relative)))

    @property
    def steps(self) -> tuple[str, ...]:
        """The normalisation this spec applies (its own, else the mode's default)."""
        return DEFAULT_NORMALIZE[self.mode] if self.normalize is None else self.normalize

    def describe(self) -> str:
        """One line for the report's assumptions.

        >>> GradingSpec(mode="numeric", tolerance=0.5).describe()
        'answers graded numeric: the last number in the answer, right within 0.5 of the label'
        >>> GradingSpec().describe()
        'answers graded exact: equal to the label after nfkc, casefold, punctuation, whitespace'
        """
        steps = ", ".join(self.steps) or "no normalisation"
        if self.mode == "exact":
            how = f"equal to the label after {steps}"
        elif self.mode == "aliases":
            how = f"equal to one of the label's answers separated by {self.separator!r}, after {steps}"
        elif self.mode == "numeric":
            within = [f"{self.tolerance:g}"]
            if self.relative_tolerance is not None:
                within.append(f"{self.relative_tolerance:g} of its magnitude")
            how = f"the {self.which} number in the answer, right within {' or '.join(within)} of the label"
        elif self.mode == "choice":
            how = f"the letter picked among {', '.join(self.choices.upper())}, compared with the label's"
        else:
            how = f"the label, a regular expression, found in the answer after {steps}"
        return f"answers graded {self.mode}: {how}"


def _check_spec(spec: GradingSpec) -> None:
    """Errors name the key as the scenario writes it (``grading.tolerance``) and what was expected."""
    if spec.mode not in MODES:
        raise AnalysisInputError(f"grading.mode must be one of {', '.join(MODES)}, got {spec.mode!r}")
    if spec.normalize is not None:
        unknown = [s for s in spec.normalize if s not in NORMALIZE_STEPS]
        if unknown:
            raise AnalysisInputError(
                f"grading.normalize has unknown step {unknown[0]!r}; steps are: {', '.join(NORMALIZE_STEPS)}"
            )
    if not isinstance(spec.separator, str) or not spec.separator:
        raise AnalysisInputError(f"grading.separator must be non-empty text, got {spec.separator!r}")
    if spec.which not in ("first", "last"):
        raise AnalysisInputError(f"grading.which must be 'first' or 'last', got {spec.which!r}")
    for name in ("tolerance", "relative_tolerance"):
        value = getattr(spec, name)
        if value is None and name == "relative_tolerance":
            continue
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
            raise AnalysisInputError(f"grading.{name} must be a number >= 0, got {value!r}")
    problem = choices_problem(spec.choices)
    if problem:
        raise AnalysisInputError(f"grading.choices: {problem}")


def choices_problem(choices: Any) -> str | None:
    """What is wrong with a ``choices`` value (``None`` when it is fine): distinct ASCII letters, at least two.

    >>> choices_problem("ABCD") is None, choices_problem("AAB")
    (True, "expected distinct letters such as 'ABCD', got 'AAB' (A is given twice)")
    """
    if not isinstance(choices, str) or len(choices) < 2 or not all("a" <= c.lower() <= "z" for c in choices):
        return f"expected two or more letters such as 'ABCD', got {choices!r}"
    seen: set[str] = set()
    for letter in choices.upper():
        if letter in seen:
            return f"expected distinct letters such as 'ABCD', got {choices!r} ({letter} is given twice)"
        seen.add(letter)
    return None


def grading_spec(value: GradingSpec | Mapping[str, Any], *, where: str = "grading") -> GradingSpec:
    """A :class:`GradingSpec` from itself or from a mapping (``run.json``'s ``scenario.grading``).

    Keys set to ``None`` take their default, as the scenario writes every key into ``run.json``.

    Examples
    --------
    >>> grading_spec({"mode": "aliases", "separator": ";", "normalize": None}).separator
    ';'
    >>> grading_spec({"mode": "numeric", "tolerence": 1})
    Traceback (most recent call last):
    ...
    loadgrade.analysis.errors.AnalysisInputError: grading has unknown key 'tolerence'; keys are: mode, normalize, \
separator, which, tolerance, relative_tolerance, choices
    """
    if isinstance(value, GradingSpec):
        return value
    if not isinstance(value, Mapping):
        raise AnalysisInputError(f"{where} must be a mapping of grading keys, got {type(value).__name__}")
    known = [f.name for f in fields(GradingSpec)]
    for key in value:
        if key not in known:
            raise AnalysisInputError(f"{where} has unknown key {key!r}; keys are: {', '.join(known)}")
    given = {k: v for k, v in value.items() if v is not None}
    if "normalize" in given:
        steps = given["normalize"]
        if isinstance(steps, str) or not isinstance(steps, Sequence):
            raise AnalysisInputError(f"{where}.normalize must be a list of steps, got {steps!r}")
        given["normalize"] = tuple(steps)
    return GradingSpec(**given)


def graded_task(spec: GradingSpec, *, task: str | None = None, labels: pd.Series | None = None) -> str:
    """The task the analysis reports under a grading spec: its metrics and charts, while the spec decides ``correct``.

    A task given by the scenario is kept, except regression, which has no right or wrong. Without one, ``choice``
    is a classification over the letters; ``exact`` is inferred from the labels as without grading (short class
    names stay a classification, with its confusion matrix), but never regression; the other modes are text.

    Examples
    --------
    >>> graded_task(GradingSpec(mode="choice")), graded_task(GradingSpec(mode="numeric"))
    ('classification', 'text')
    >>> graded_task(GradingSpec(), labels=pd.Series(["cat", "dog"]))
    'classification'
    """
    if task == "regression":
        raise AnalysisInputError(
            f"grading mode {spec.mode!r} decides right and wrong, but task 'regression' has neither: drop the task "
            "(numeric grading with a tolerance replaces a regression) or the grading"
        )
    if task is not None:
        return task
    if spec.mode == "choice":
        return "classification"
    if spec.mode == "exact" and labels is not None:
        from loadgrade.analysis.join import infer_task  # join imports this module

        inferred = infer_task(labels)
        return "text" if inferred == "regression" else inferred
    return "text"


# --------------------------------------------------------------------------------------------- normalisation

_ARTICLES = re.compile(r"\b(?:a|an|the)\b\s*", re.IGNORECASE)


def normalise(text: str, steps: Sequence[str]) -> str:
    """``text`` after each of :data:`NORMALIZE_STEPS` in ``steps``, in order.

    Examples
    --------
    >>> normalise("  The  Eiffel-Tower! ", ["casefold", "punctuation", "whitespace"])
    'the eiffel tower'
    >>> normalise("The cat", ["articles"]), normalise("ＡＢＣ", ["nfkc", "lower"])
    ('cat', 'abc')
    """
    for step in steps:
        if step == "nfkc":
            text = unicodedata.normalize("NFKC", text)
        elif step == "strip":
            text = text.strip()
        elif step == "lower":
            text = text.lower()
        elif step == "casefold":
            text = text.casefold()
        elif step == "punctuation":
            text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
        elif step == "whitespace":
            text = " ".join(text.split())
        elif step == "articles":
            text = _ARTICLES.sub("", text)
        else:
            raise AnalysisInputError(f"unknown normalisation step {step!r}; steps are: {', '.join(NORMALIZE_STEPS)}")
    return text


def answer_text(prediction: Any) -> str | None:
    """The answer in a prediction as ``records.csv`` holds it (JSON text), as text; None when there is none.

    A JSON string is its text; ``null``, an empty cell or NaN is no answer; any other JSON value (a number, a list)
    is its JSON text; text that is not JSON is taken as it is.

    >>> answer_text('"Paris"'), answer_text("42"), answer_text("null"), answer_text(""), answer_text("B) x")
    ('Paris', '42', None, None, 'B) x')
    """
    if prediction is None or (isinstance(prediction, float) and math.isnan(prediction)):
        return None
    if not isinstance(prediction, str):
        return json.dumps(prediction)
    if prediction == "":
        return None
    try:
        value = json.loads(prediction)
    except ValueError:
        return prediction
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def label_text(label: Any) -> str:
    """A label as text: a whole float (``3.0``, how a CSV column with gaps reads ``3``) without its ``.0``.

    >>> label_text(3.0), label_text(2.5), label_text("Paris"), label_text(7)
    ('3', '2.5', 'Paris', '7')
    """
    if isinstance(label, str):
        return label
    if isinstance(label, bool | np.bool_):
        return str(bool(label))
    if isinstance(label, Integral):
        return str(int(label))
    if isinstance(label, Real) and math.isfinite(float(label)) and float(label).is_integer():
        return str(int(float(label)))
    return str(label)


# ------------------------------------------------------------------------------------------------ numbers

# a sign counts only when not glued to what precedes it ("5-3" holds 5 and 3); thousands need groups of three
# ("1,234" is 1234, "1,2" is 1 and 2); "5." ends a sentence, ".5" is a half; "$", "€", "£" and "%" are ignored
_NUMBER = re.compile(
    r"(?:(?<![\w)\].])(?P<sign>[-+\u2212]))?[$€£]?"
    r"(?P<digits>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<!\d)\.\d+)"
)


def _numbers(text: str) -> list[Decimal]:
    found = []
    for match in _NUMBER.finditer(unicodedata.normalize("NFKC", text)):
        try:
            value = Decimal(match["digits"].replace(",", ""))
        except InvalidOperation:  # a digit Decimal does not read (some scripts' digits): not a number here
            continue
        found.append(-value if match["sign"] in ("-", "\u2212") else value)
    return found


def extract_number(text: str, *, which: str = "last") -> Decimal | None:
    """The first or last number written in ``text``, exactly (a :class:`~decimal.Decimal`); None when there is none.

    Thousands separators (``1,234``), a currency sign (``$5``), a trailing full stop (``42.``), a percent sign,
    Unicode minus and full-width digits are read; exponents (``1e5``) and decimal commas (``3,5``) are not:
    ``3,5`` is the numbers 3 and 5.

    Examples
    --------
    >>> str(extract_number("It costs $1,234.50 in total.")), str(extract_number("-3 then 5-2", which="first"))
    ('1234.50', '-3')
    >>> [str(n) for n in _numbers("1,234, then 1,2 and 1.2.3")]
    ['1234', '1', '2', '1.2', '3']
    >>> str(extract_number("5-2")), extract_number("no digits here") is None
    ('2', True)
    """
    numbers = _numbers(text)
    if not numbers:
        return None
    return numbers[0] if which == "first" else numbers[-1]


def _number_text(value: Decimal) -> str:
    """A number's canonical text: ``42`` for 42.0 and 042, ``0.5`` for .50, ``0`` for -0."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


# ------------------------------------------------------------------------------------------------ choices

_BARE_JUNK = " \t\r\n*_`'\"()[]{}<>.:;,!"
# "answer is B", "Answer: (b)", "the correct option is **C**", "choice D": the keyword in any case; the letter in
# capitals, or in any case inside brackets ("answer is a cat" is not an A)
_PHRASE = re.compile(
    r"(?i:\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|will\s+be))?)\s*[:=\-]?\s*[*_`\"']*"
    r"(?:[(\[](?P<bracketed>[A-Za-z])[)\]]|(?P<upper>[A-Z])(?![A-Za-z]))"
)
# the reply opens with its pick: "B. Paris", "B) Paris", "C: 12"; _MARKED finds every letter written so
_LEADING = re.compile(r"^[*_`\"'\s]*([A-Z])[.):](?![A-Za-z])")
_MARKED = re.compile(r"(?<![A-Za-z])([A-Z])[.):](?![A-Za-z])")
_BRACKETED = re.compile(r"[(\[]([A-Za-z])[)\]]")


def extract_choice(text: str, choices: str = "ABCD") -> str | None:
    """The multiple-choice letter an answer picks (upper case), or None when it picks none or is unclear.

    The rule, tried in this order on the answer (after Unicode NFKC):

    1. *bare*: the whole answer, less spaces, brackets, quotes, ``*``/``_`` (Markdown emphasis) and punctuation at
       its ends, is one of the letters, in either case: ``B``, ``(b)``, ``**B**``, ``B.``;
    2. *stated*: the last "answer", "option" or "choice" (any case), optionally followed by "is" or a colon, then a
       letter: a capital, or either case in brackets: ``Answer: B``, ``The answer is (c).``, ``the correct option
       is **D**`` (a lower-case letter without brackets is a word: "the answer is a cat" picks nothing);
    3. *bracketed*: the answer holds bracketed letters, all the same one: ``I'd say (C).``, ``(d) none``; an
       answer holding several ("(A) Paris or (B) Rome", the options repeated) picks nothing;
    4. *leading*: the answer opens with a capital letter and ``.``, ``)`` or ``:``, and marks no other letter so:
       ``B. Paris``, ``C) 12`` (but not ``A) Paris B) Rome``).

    A letter that is not among ``choices`` never counts, and a bare letter inside a sentence ("I think B") is not
    guessed at.

    Examples
    --------
    >>> [extract_choice(t) for t in ["B", "(b)", "Answer: C", "The answer is D.", "B. Paris", "I'd say (c)."]]
    ['B', 'B', 'C', 'D', 'B', 'C']
    >>> extract_choice("I think B"), extract_choice("(A) Paris or (B) Rome")
    (None, None)
    >>> extract_choice("The answer is a cat"), extract_choice("answer: E"), extract_choice("E", "ABCDE")
    (None, None, 'E')
    """
    letters = choices.upper()
    text = unicodedata.normalize("NFKC", text)
    bare = text.strip(_BARE_JUNK)
    if len(bare) == 1 and bare.upper() in letters:
        return bare.upper()
    stated = [
        letter.upper()
        for match in _PHRASE.finditer(text)
        if (letter := match["bracketed"] or match["upper"]).upper() in letters
    ]
    if stated:
        return stated[-1]
    bracketed = {m.upper() for m in _BRACKETED.findall(text)} & set(letters)
    if bracketed:
        return bracketed.pop() if len(bracketed) == 1 else None
    marked = set(_MARKED.findall(text)) & set(letters)
    leading = _LEADING.match(text)
    return leading[1] if leading is not None and leading[1] in letters and len(marked) == 1 else None


# ------------------------------------------------------------------------------------------------ grading


def answer_key(answer: str | None, spec: GradingSpec) -> str | None:
    """What an answer is reduced to before it is compared: normalised text, a number's canonical text, or a letter.

    None is no answer: none given, nothing left after normalisation, no number (numeric), no letter (choice).

    Examples
    --------
    >>> answer_key(" The Answer is 1,024. ", GradingSpec(mode="numeric"))
    '1024'
    >>> answer_key("Paris!", GradingSpec()), answer_key("...", GradingSpec()), answer_key("So: (B)", GradingSpec(
    ...     mode="choice"))
    ('paris', None, 'B')
    """
    if answer is None:
        return None
    if spec.mode == "numeric":
        number = extract_number(answer, which=spec.which)
        return None if number is None else _number_text(number)
    if spec.mode == "choice":
        return extract_choice(answer, spec.choices)
    key = normalise(answer, spec.steps)
    return key if key.strip() else None


def parse_label(label: Any, spec: GradingSpec) -> Any:
    """A label in the form :func:`judge` compares with: normalised text (exact), a frozenset of normalised answers
    (aliases), a :class:`~decimal.Decimal` (numeric), a capital letter (choice) or a compiled pattern (regex).

    Raises :class:`AnalysisInputError` for a label the mode cannot use (no number, no letter, a pattern that does
    not compile); callers add which sample it belongs to.

    Examples
    --------
    >>> sorted(parse_label("Paris | City of Light", GradingSpec(mode="aliases")))
    ['city of light', 'paris']
    >>> parse_label("(b)", GradingSpec(mode="choice")), parse_label(3.0, GradingSpec(mode="numeric"))
    ('B', Decimal('3.0'))
    >>> parse_label("forty-two", GradingSpec(mode="numeric"))
    Traceback (most recent call last):
    ...
    loadgrade.analysis.errors.AnalysisInputError: label 'forty-two' holds no number (grading mode 'numeric')
    """
    mode = spec.mode
    if mode == "numeric":
        if isinstance(label, bool | np.bool_):
            raise AnalysisInputError(f"label {label!r} is not a number (grading mode 'numeric')")
        if isinstance(label, Integral):
            return Decimal(int(label))
        if isinstance(label, Real):
            if not math.isfinite(float(label)):
                raise AnalysisInputError(f"label {label!r} is not a finite number (grading mode 'numeric')")
            return Decimal(repr(float(label)))
        numbers = _numbers(label_text(label))
        if len(numbers) != 1:
            held = "no number" if not numbers else f"{len(numbers)} numbers ({', '.join(map(str, numbers))})"
            raise AnalysisInputError(f"label {label!r} holds {held} (grading mode 'numeric')")
        return numbers[0]
    text = label_text(label)
    if mode == "choice":
        letter = text.strip(_BARE_JUNK)
        if len(letter) != 1 or letter.upper() not in spec.choices.upper():
            raise AnalysisInputError(
                f"label {label!r} is not one of the choices {', '.join(spec.choices.upper())} (grading mode 'choice')"
            )
        return letter.upper()
    if mode == "regex":
        try:
            return re.compile(text)
        except re.error as exc:
            raise AnalysisInputError(f"label {text!r} is not a valid regular expression: {exc}") from None
    if mode == "aliases":
        accepted = frozenset(
            key for part in text.split(spec.separator) if (key := normalise(part.strip(), spec.steps)).strip()
        )
        if not accepted:
            raise AnalysisInputError(f"label {label!r} holds no accepted answer (grading mode 'aliases')")
        return accepted
    return normalise(text, spec.steps)


def _label_key(parsed: Any, label: Any, spec: GradingSpec) -> str:
    """What the report shows as ``y_true`` for a parsed label."""
    if spec.mode == "numeric":
        return _number_text(parsed)
    if spec.mode == "regex":
        return str(parsed.pattern)
    if spec.mode == "aliases":
        return label_text(label)
    return str(parsed)


def judge(key: str, parsed_label: Any, spec: GradingSpec) -> bool:
    """Whether an answer key (:func:`answer_key`, not None) is right for a parsed label (:func:`parse_label`).

    >>> spec = GradingSpec(mode="numeric", tolerance=0.01)
    >>> judge("1.01", parse_label(1, spec), spec), judge("1.02", parse_label(1, spec), spec)
    (True, False)
    """
    mode = spec.mode
    if mode == "aliases":
        return key in parsed_label
    if mode == "regex":
        return parsed_label.search(key) is not None
    if mode == "numeric":
        error = abs(Decimal(key) - parsed_label)
        absolute, relative = spec._limits
        return error <= absolute or (relative is not None and error <= relative * abs(parsed_label))
    return bool(key == parsed_label)


def grade(prediction_text: str | None, label: Any, spec: GradingSpec) -> bool | None:
    """Grade one answer: True (right), False (wrong) or None (no answer, which counts as wrong).

    ``prediction_text`` is the model's answer as text (:func:`answer_text` of a recorded prediction), ``label``
    the dataset's label.

    Examples
    --------
    >>> grade("The answer is 42.", 42, GradingSpec(mode="numeric")), grade("41", 42, GradingSpec(mode="numeric"))
    (True, False)
    >>> grade("paris", "Paris|Lutetia", GradingSpec(mode="aliases")), grade("no idea", 42, GradingSpec(mode="numeric"))
    (True, None)
    >>> grade("I'd say (C).", "c", GradingSpec(mode="choice")), grade("Paris, France", r"\\bParis\\b", GradingSpec(
    ...     mode="regex"))
    (True, True)
    """
    key = answer_key(prediction_text, spec)
    if key is None:
        return None
    return judge(key, parse_label(label, spec), spec)


@dataclass(frozen=True)
class GradedCodes:
    """:func:`grade_codes`' result: a verdict per row, and the keys of the distinct answers and labels."""

    verdict: npt.NDArray[np.int8]
    """Per row: 1 right, 0 wrong, -1 no answer."""
    answer_keys: npt.NDArray[np.object_]
    """Per distinct answer: its :func:`answer_key` (None for no answer)."""
    label_keys: npt.NDArray[np.object_]
    """Per distinct label: what the report shows as ``y_true`` (the normalised label, the number, the letter, the
    pattern, or the aliases as written); None for labels no row uses."""


def grade_codes(
    answers: Sequence[str | None],
    labels: Sequence[Any] | npt.NDArray[Any],
    answer_codes: npt.NDArray[np.integer[Any]],
    label_codes: npt.NDArray[np.integer[Any]],
    spec: GradingSpec,
    *,
    label_names: Sequence[Any] | npt.NDArray[Any] | None = None,
) -> GradedCodes:
    """Grade rows given as codes into distinct answers and labels: each answer is reduced once, each label used is
    parsed once, and each distinct (answer, label) pair is judged once.

    Parameters
    ----------
    answers, labels : sequence
        The distinct answers (text or None) and labels.
    answer_codes, label_codes : numpy.ndarray of int
        Per row, its answer's and its label's position in ``answers`` and ``labels`` (non-negative).
    spec : GradingSpec
    label_names : sequence or None
        Per label, what an error calls it (the sample id): "label of sample 'q7' ...".

    Returns
    -------
    GradedCodes

    Examples
    --------
    >>> graded = grade_codes(["42", "41", None], [42], np.array([0, 1, 2, 0]), np.array([0, 0, 0, 0]),
    ...                      GradingSpec(mode="numeric"))
    >>> graded.verdict.tolist(), graded.answer_keys.tolist(), graded.label_keys.tolist()
    ([1, 0, -1, 1], ['42', '41', None], ['42'])
    """
    answer_codes = np.asarray(answer_codes, dtype=np.int64)
    label_codes = np.asarray(label_codes, dtype=np.int64)
    if answer_codes.shape != label_codes.shape:
        raise AnalysisInputError(
            f"answer_codes and label_codes must have one code per row each, got {len(answer_codes)} and "
            f"{len(label_codes)}"
        )
    keys = np.array([answer_key(a, spec) for a in answers], dtype=object)
    parsed: dict[int, Any] = {}
    label_keys = np.full(len(labels), None, dtype=object)
    for code in pd.unique(label_codes):
        label = labels[int(code)]
        try:
            parsed[int(code)] = parse_label(label, spec)
        except AnalysisInputError as exc:
            if label_names is None:
                raise
            raise AnalysisInputError(f"label of sample {label_names[int(code)]!r}: {exc}") from None
        label_keys[int(code)] = _label_key(parsed[int(code)], label, spec)
    verdict = np.full(len(answer_codes), -1, dtype=np.int8)
    has_key = np.array([k is not None for k in keys], dtype=bool)
    answered = has_key[answer_codes] if len(keys) else np.zeros(len(answer_codes), dtype=bool)
    pairs = label_codes[answered] * max(len(keys), 1) + answer_codes[answered]
    pair_codes, distinct = pd.factorize(pairs)
    right = np.array(
        [judge(keys[int(p) % len(keys)], parsed[int(p) // len(keys)], spec) for p in distinct], dtype=np.int8
    )
    verdict[answered] = right[pair_codes] if len(right) else 0
    return GradedCodes(verdict=verdict, answer_keys=keys, label_keys=label_keys)


def grade_many(predictions: Sequence[str | None], labels: Sequence[Any], spec: GradingSpec) -> pd.arrays.BooleanArray:
    """:func:`grade` of each (answer, label) pair at once; NA where there is no answer.

    Equal, row for row, to calling :func:`grade` on each pair, at the cost of one call per distinct answer, label
    and pair.

    Examples
    --------
    >>> grade_many(["B", "C", "none", "B"], ["B", "B", "B", "b"], GradingSpec(mode="choice")).tolist()
    [True, False, <NA>, True]
    """
    if len(predictions) != len(labels):
        raise AnalysisInputError(
            f"predictions and labels must pair up, got {len(predictions)} predictions and {len(labels)} labels"
        )
    answer_codes, answers = pd.factorize(pd.Series(list(predictions), dtype=object), use_na_sentinel=False)
    # the type is part of a label's identity: True, 1 and 1.0 hash alike but are not the same label
    typed = pd.Series([(type(v).__name__, v) for v in labels], dtype=object)
    label_codes, distinct = pd.factorize(typed, use_na_sentinel=False)
    answers_list = [None if a is None or (isinstance(a, float) and math.isnan(a)) else a for a in answers]
    graded = grade_codes(answers_list, [v for _, v in distinct], answer_codes, label_codes, spec)
    out = pd.array(graded.verdict == 1, dtype="boolean")
    out[graded.verdict < 0] = pd.NA
    return out
