"""Scenario files: typed, strict models of ``scenarios/*.yaml`` and :func:`load_scenario`.

Every problem a scenario can have is found here, before any load starts, and reported as a
:class:`~loadgrade.errors.ScenarioError` naming the file, the key path (with its line) and what was expected.
"""

from __future__ import annotations

import codecs
import difflib
import math
import operator
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loadgrade.dataset import FORMAT_BY_SUFFIX, Dataset, DatasetFormat, Order, load_dataset
from loadgrade.errors import Problem, ScenarioError
from loadgrade.protocols import Protocol
from loadgrade.resources import ResourcesSpec
from loadgrade.shapes import Count, Load, Number, PositiveNumber, RateLoad, SearchLoad, Seed, search_stage

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|cookie|password", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"^(?P<head>https?://[^/@:\s]*:)(?P<password>[^/@\s]+)(?=@)")
REDACTED = "<redacted>"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    """Where the model is served. ``${NAME}`` in ``base_url`` or a header value reads an environment variable."""

    base_url: str = Field(description="Scheme, host and port, e.g. http://127.0.0.1:8000")
    path: str | None = Field(None, description="Request path; defaults to the protocol's usual path")
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: PositiveNumber = Field(30.0, description="Connect and read time-out of one request")
    verify_tls: StrictBool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value.rstrip("/")

    @field_validator("path")
    @classmethod
    def _leading_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {value!r}")
        return value


class DatasetSpec(_Strict):
    """The labelled data to replay. Exactly one of ``input_columns`` (names or globs) and ``input_field``."""

    path: Path
    format: DatasetFormat | None = Field(None, description="csv, jsonl or parquet; inferred from the suffix")
    id_column: str = "id"
    label_column: str = "label"
    input_columns: list[str] | None = Field(None, min_length=1)
    input_field: str | None = None
    order: Order = "sequential"
    seed: Seed = 0
    passes: Count | None = Field(
        None, description="Each stage replays the dataset at most this many times; the run stops after the last"
    )
    task: Literal["classification", "regression", "text"] | None = None

    @field_validator("path")
    @classmethod
    def _relative_to_scenario(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        return (Path(base) / value).resolve() if base is not None and not value.is_absolute() else value

    @model_validator(mode="after")
    def _one_input_and_a_format(self) -> DatasetSpec:
        if (self.input_columns is None) == (self.input_field is None):
            raise ValueError(
                "expected exactly one of 'input_columns' (a list of columns or globs) "
                "and 'input_field' (one column holding the whole input)"
            )
        if self.format is None:
            fmt = FORMAT_BY_SUFFIX.get(self.path.suffix.lower())
            if fmt is None:
                raise ValueError(
                    f"cannot tell the format of {self.path.name!r}; set 'format' to one of: csv, jsonl, parquet"
                )
            object.__setattr__(self, "format", fmt)
        return self


def _suggest(message: str, name: str, known: tuple[str, ...]) -> str:
    """``message`` with a "did you mean" for a misspelt ``name``, right after the name where the message quotes it."""
    close = difflib.get_close_matches(name, known, n=1)
    if not close:
        return message
    hint = f" (did you mean {close[0]!r}?)"
    quoted = f"metric {name!r}"
    return message.replace(quoted, quoted + hint, 1) if quoted in message else message + hint


def _parsed_rule(text: str) -> str:
    """A rule is checked by the very parser that ``python -m analysis check`` and a search use: a typo fails now,
    not after the run."""
    # imported here: the core does not load the analysis package (a sibling) until a scenario has rules
    from loadgrade.analysis.errors import AnalysisInputError
    from loadgrade.analysis.rules import RULE_METRICS, parse_rule

    try:
        parse_rule(text)
    except AnalysisInputError as exc:
        metric = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", text)
        if metric is None or metric.group(1) in RULE_METRICS:
            raise ValueError(str(exc)) from None
        raise ValueError(_suggest(str(exc), metric.group(1), tuple(RULE_METRICS))) from None
    return text


RuleText = Annotated[str, AfterValidator(_parsed_rule)]
"""A pass/fail rule such as ``p95_ms<=200`` (see analysis.rules), parsed when the scenario is loaded."""


class Slo(_Strict):
    """Service-level objectives: the latency SLO used for goodput, the accuracy tolerance, and check rules."""

    latency_ms: PositiveNumber | None = Field(None, description="End-to-end latency limit for goodput")
    ttft_ms: PositiveNumber | None = Field(None, description="Time-to-first-token limit for goodput (streamed)")
    tpot_ms: PositiveNumber | None = Field(None, description="Time-per-output-token limit for goodput (streamed)")
    tolerance: Number = Field(0.01, ge=0, le=1)
    rules: list[RuleText] = Field(default_factory=list)


GradingStep = Literal["nfkc", "strip", "lower", "casefold", "punctuation", "whitespace", "articles"]


class Grading(_Strict):
    """How a text answer is judged right (LLM answers); each mode's rule is in ``loadgrade.analysis.grading``."""

    mode: Literal["exact", "aliases", "numeric", "choice", "regex"] = "exact"
    normalize: list[GradingStep] | None = Field(
        None, description="Steps applied to the answer (and to exact/aliases labels), in order; default: the mode's"
    )
    separator: str = Field("|", min_length=1, description="aliases: what separates the accepted answers in a label")
    which: Literal["first", "last"] = Field("last", description="numeric: the answer's first or last number")
    tolerance: Number = Field(0.0, ge=0, description="numeric: largest absolute difference still right")
    relative_tolerance: Number | None = Field(
        None, ge=0, description="numeric: largest difference still right, as a share of the label (0.01 = 1 %)"
    )
    choices: str = Field("ABCD", description="choice: the letters a question offers")

    @field_validator("normalize")
    @classmethod
    def _each_step_once(cls, value: list[str] | None) -> list[str] | None:
        repeated = sorted({step for step in value or [] if (value or []).count(step) > 1})
        if repeated:
            raise ValueError(f"step {repeated[0]!r} is given twice; each step is applied once, in the order given")
        return value

    @field_validator("choices")
    @classmethod
    def _distinct_letters(cls, value: str) -> str:
        from loadgrade.analysis.grading import choices_problem  # the analysis package loads only when needed

        problem = choices_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Output(_Strict):
    dir: Path | None = Field(None, description="Run directory; default runs/<name>-<UTC timestamp>/")

    @field_validator("dir")
    @classmethod
    def _relative_to_scenario(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is None or base is None or value.is_absolute():
            return value
        return (Path(base) / value).resolve()


class Scenario(_Strict):
    """One load test of one model endpoint: where, how to talk to it, with what data, at what load."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    endpoint: Endpoint
    protocol: Protocol
    dataset: DatasetSpec
    load: Load
    slo: Slo | None = None
    grading: Grading | None = None
    resources: ResourcesSpec | None = None
    output: Output = Output()

    @model_validator(mode="after")
    def _search_needs_slos(self) -> Scenario:
        if self.load.kind == "search" and (self.slo is None or not (self.slo.rules or self.slo.tolerance)):
            raise ValueError(
                "load kind 'search' needs an 'slo' section (a tolerance and/or rules such as 'p95_ms<=200') "
                "to know when quality breaks"
            )
        return self

    _source: Path | None = PrivateAttr(default=None)
    _header_templates: dict[str, str] = PrivateAttr(default_factory=dict)
    _base_url_template: str = PrivateAttr(default="")
    _dataset: Dataset | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The YAML file this scenario was loaded from."""
        return self._source

    @property
    def request_path(self) -> str:
        """``endpoint.path`` when given, else the path the protocol computes from its options."""
        return self.endpoint.path or self.protocol.path()

    def data(self) -> Dataset:
        """The validated dataset, read once when the scenario was loaded."""
        if self._dataset is None:
            spec = self.dataset
            assert spec.format is not None
            self._dataset = load_dataset(
                spec.path,
                fmt=spec.format,
                id_column=spec.id_column,
                label_column=spec.label_column,
                input_columns=spec.input_columns,
                input_field=spec.input_field,
                scenario_path=self._source or "<scenario>",
            )
        return self._dataset

    @property
    def base_url_as_written(self) -> str:
        """``endpoint.base_url`` for printing: ``${NAME}`` references as written, never their values, and a
        password written into the URL redacted."""
        return _redact_url_password(self._base_url_template.rstrip("/") or self.endpoint.base_url)

    def redacted(self) -> dict[str, Any]:
        """The scenario as JSON-able data with no secret in it, for ``run.json``.

        Values read from the environment are shown as their ``${NAME}`` reference; literal values of headers whose
        name suggests a credential are replaced by ``<redacted>``.
        """
        data = self.model_dump(mode="json", by_alias=True)
        headers = {}
        for name, value in self.endpoint.headers.items():
            template = self._header_templates.get(name, value)
            if _SENSITIVE_HEADER.search(name) and not _ENV_REFERENCE.fullmatch(
                template.split()[-1] if template.split() else ""
            ):
                template = REDACTED
            headers[name] = template
        data["endpoint"]["headers"] = headers
        data["endpoint"]["base_url"] = self.base_url_as_written
        return data


def _redact_url_password(url: str) -> str:
    """``https://user:<redacted>@host`` for a literal password; a ``${NAME}`` reference is shown as it is."""
    match = _URL_PASSWORD.match(url)
    if match is None or _ENV_REFERENCE.fullmatch(match["password"]):
        return url
    return match["head"] + REDACTED + url[match.end() :]


# --------------------------------------------------------------------------------------------------- loading


def _expand_env(text: str, key: str, path: Path, line: int | None, secrets: dict[str, str]) -> str:
    """``text`` with each ``${NAME}`` replaced by its value; ``secrets`` learns each value and how it was written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ScenarioError(
                path, key, f"environment variable {name} is not set (referenced as ${{{name}}})", line=line
            )
        secrets[os.environ[name]] = match.group(0)
        return os.environ[name]

    expanded = _ENV_REFERENCE.sub(replace, text)
    if expanded != text:
        secrets[expanded] = text
    return expanded


def _without_secrets(error: ScenarioError, secrets: dict[str, str]) -> ScenarioError:
    """The error with every value read from the environment shown as written (``${NAME}``).

    Values shorter than four characters are left alone: they are no secret, and replacing them would garble the
    message (a variable set to ``1`` would rewrite every 1 in it).
    """
    shown = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
    if not shown:
        return error

    def clean(message: str) -> str:
        for secret in shown:
            message = message.replace(secret, secrets[secret])
        return message

    return ScenarioError(error.path, problems=[Problem(p.key, clean(p.message), p.line) for p in error.problems])


def _read_text(path: Path) -> str:
    """The file as text; bytes that are not UTF-8 are reported with their line instead of a decoding traceback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(path, "", f"cannot read the scenario file: {exc.strerror or exc}") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ScenarioError(
            path, "", "not UTF-8 text: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        byte = data[exc.start]
        legacy = bytes([byte]).decode("cp1252", errors="replace")
        guess = f", {legacy!r} in Latin-1/Windows-1252" if legacy.isprintable() and legacy != "\ufffd" else ""
        raise ScenarioError(
            path,
            "",
            f"not UTF-8 text at line {line}, column {column} (byte 0x{byte:02x}{guess}): save the file as UTF-8",
            line=line,
        ) from None


def _key(loc: tuple[Any, ...]) -> str:
    """A key path as a person writes it: ``load.steps[2].users``, ``slo.rules[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(root: yaml.Node, loader: yaml.SafeLoader) -> list[Problem]:
    """Keys given twice in one mapping: YAML keeps the last one silently, so the first would be ignored unseen."""
    problems = []
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    visited: set[int] = set()  # an alias shares its node: walk it once
    while stack:
        node, loc = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:  # `<<: *defaults` then an explicit key is an override, not a repeat
                    continue
                key = loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                if key is not None and key in first_line:
                    problems.append(
                        Problem(
                            _key((*loc, key)),
                            f"key {key!r} is given twice, at line {first_line[key]} and again at line {line}; "
                            "YAML would silently keep only the last one: remove one of them",
                            line,
                        )
                    )
                elif key is not None:
                    first_line[key] = line
                stack.append((value_node, (*loc, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node.value))
    return sorted(problems, key=lambda p: p.line or 0)


def _parse(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, read once; repeated keys are an error."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is None:
            return None, None
        duplicates = _duplicate_keys(root, loader)
        if duplicates:
            raise ScenarioError(path, problems=duplicates)
        return root, loader.construct_document(root)
    except yaml.reader.ReaderError as exc:
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ScenarioError(
            path,
            "",
            f"not valid YAML: character U+{code:04X} is not allowed in a YAML file ({exc.reason})",
            line=text.count("\n", 0, exc.position) + 1,
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScenarioError(
            path, "", f"not valid YAML: {getattr(exc, 'problem', None) or exc}", line=mark.line + 1 if mark else None
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _walk(root: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[yaml.Node | None, yaml.Node | None, bool]:
    """The YAML node at a key path (or the deepest one found on the way), the node of its key, and whether the
    whole path was found."""
    node, key_node = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    node, key_node = v, k
                    break
            else:
                return node, key_node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node, key_node = node.value[part], None
        else:
            return node, key_node, False
    return node, key_node, True


def _line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    node, key_node, _ = _walk(root, loc)
    target = key_node or node
    return target.start_mark.line + 1 if target is not None else None


def _written(root: yaml.Node | None, loc: tuple[Any, ...]) -> str | None:
    """The scalar at ``loc`` exactly as the file spells it (``yes``, ``2.0``), for messages."""
    node, _, found = _walk(root, loc)
    return node.value if found and isinstance(node, yaml.ScalarNode) else None


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold (through Optional, Annotated, unions, lists and dicts)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict):
        return [m for arg in typing.get_args(annotation) for m in _unwrap(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def _allowed_keys(loc: tuple[Any, ...], raw: Any) -> list[str]:
    """Keys a scenario accepts at ``loc`` (a mapping's path), following ``kind`` through unions."""
    models: list[type[BaseModel]] = [Scenario]
    value = raw
    for part in loc:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
            continue
        value = value.get(part) if isinstance(value, dict) else None
        candidates = [
            m for model in models if part in model.model_fields for m in _unwrap(model.model_fields[part].annotation)
        ]
        kind = value.get("kind") if isinstance(value, dict) else None
        chosen = [m for m in candidates if "kind" in m.model_fields and m.model_fields["kind"].default == kind]
        models = chosen or candidates
    # a field may be spelt differently in the file (its alias): list what the file must say
    return sorted({f.alias or n for model in models for n, f in model.model_fields.items()}) if models else []


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
}
# a boolean that reached a number's bound was read as one (lax mode, in another module's model): say so instead
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of", "finite_number")


def _wrong_type(expected: str, value: Any, written: str | None) -> str:
    """What was expected and what the file holds, in the file's own spelling (``yes`` is a boolean in YAML)."""
    if isinstance(value, bool):
        spelt = written if written is not None else str(value).lower()
        how = "a boolean" if spelt.lower() in ("true", "false") else "YAML reads it as a boolean"
        return f"expected {expected}, got {spelt} ({how})"
    if expected == "text" and isinstance(value, int | float):
        return f"expected text, got the number {written or repr(value)}: quote it if it is meant as text"
    if isinstance(value, float) and expected == "a whole number":
        hint = f": write {int(value)}" if value.is_integer() else ""
        return f"expected a whole number, got {written or repr(value)}{hint}"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"expected {expected}, got the text {value!r}"
        return f"expected {expected}, got the text {value!r} (a quoted number: remove the quotes)"
    return f"expected {expected}, got {value!r}"


def _describe(error: Any, raw: Any, root: yaml.Node | None) -> tuple[tuple[Any, ...], str]:
    """A pydantic error as (key path, message a person can act on)."""
    loc = tuple(error["loc"])
    kind = error["type"]
    # a discriminated union puts the tag into the path (protocol.generic.prediction): take it out
    if (
        len(loc) > 1
        and isinstance(raw, dict)
        and isinstance(raw.get(loc[0]), dict)
        and raw[loc[0]].get("kind", "users" if loc[0] == "load" else None) == loc[1]
    ):
        loc = (loc[0], *loc[2:])
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], raw)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key {loc[-1]!r}{hint}; expected one of: {', '.join(allowed)}"
    if kind == "missing":
        return loc, "missing required key"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return (*loc, "kind"), (
            f"unknown {loc[-1] if loc else ''} kind {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
        )
    if kind == "union_tag_not_found":
        return (*loc, "kind"), "missing required key 'kind'"
    if kind in _EXPECTED:
        message = _wrong_type(_EXPECTED[kind], error["input"], _written(root, loc))
        if loc[:2] == ("slo", "rules"):
            message += "; a rule is one line of text such as 'p95_ms<=200' (no space after a colon)"
        return loc, message
    if kind in _BOUNDS and isinstance(error["input"], bool):
        return loc, _wrong_type("a number", error["input"], _written(root, loc))
    message = error["msg"].removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error"):
        message = f"{message} (got {error['input']!r})"
    return loc, message


def _loose_numbers(value: Any, raw: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any, str]]:
    """Numbers that pydantic's lax mode made of a boolean (``true`` -> 1) or a float (``2.0`` -> 2).

    The load shapes and this module type their numbers strictly; this catches the same mistake in the models of
    other modules (protocol presets, resources), with the same message. Yields (key path, raw value, expected).
    """
    if isinstance(value, BaseModel):
        if isinstance(raw, dict):
            for name, field in type(value).model_fields.items():
                key = field.alias or name
                if key in raw:
                    yield from _loose_numbers(getattr(value, name), raw[key], (*loc, key))
    elif isinstance(value, list | tuple) and isinstance(raw, list) and len(value) == len(raw):
        for index, (item, raw_item) in enumerate(zip(value, raw, strict=True)):
            yield from _loose_numbers(item, raw_item, (*loc, index))
    elif isinstance(value, dict) and isinstance(raw, dict):
        for key, item in value.items():
            if key in raw:
                yield from _loose_numbers(item, raw[key], (*loc, key))
    elif (isinstance(value, int | float) and not isinstance(value, bool)) and (
        isinstance(raw, bool) or (isinstance(raw, float) and isinstance(value, int))
    ):
        yield loc, raw, "a number" if isinstance(value, float) else "a whole number"


_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


def _unjudgeable_rules(scenario: Scenario) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Rules that parse but that this load cannot judge: each would fail (or pass) whatever the endpoint does.

    A level table has a target rate only in an open-model run; a search judges each level it tries on the table
    of its first level and that level (see ``locust_plugin._judge_level``).
    """
    if scenario.slo is None or not scenario.slo.rules:
        return
    from loadgrade.analysis import rules as analysis_rules

    # the metrics a rule measures at the best level rather than the worst (see loadgrade.analysis.rules' docstring)
    capacity = analysis_rules._CAPACITY
    load = scenario.load
    searched = load.variable if isinstance(load, SearchLoad) else None
    open_model = isinstance(load, RateLoad) or searched == "rate"
    for index, text in enumerate(scenario.slo.rules):
        rule, loc = analysis_rules.parse_rule(text), ("slo", "rules", index)
        if rule.where_field == "rate" and not open_model:
            shape = "a search over users" if searched else f"load kind {load.kind!r}"
            yield (
                loc,
                (
                    f"rule {text!r} selects levels by arrival rate, but {shape} sets no arrival rate, so no level "
                    "would be selected and the rule would fail for lack of data: select by users or level, "
                    "or use an open-model load (kind: rate)"
                ),
            )
        elif isinstance(load, SearchLoad) and rule.metric in capacity:
            yield (
                loc,
                (
                    f"rule {text!r} cannot judge a search level: {rule.metric} is measured at the best of the first "
                    "level and the one being judged, so the verdict does not follow that level; the search finds the "
                    "capacity itself (the highest level meeting every SLO): bound latency or quality instead"
                ),
            )
        elif isinstance(load, SearchLoad) and rule.where_field and rule.where_op and rule.where_value is not None:
            first = search_stage(load, load.start)
            at_first = {"level": 0.0, "users": float(first.users), "rate": first.target_rps or math.nan}
            value = at_first[rule.where_field]
            if not _COMPARE[rule.where_op](value, rule.where_value):
                yield (
                    loc,
                    (
                        f"rule {text!r} does not apply to the search's first level ({rule.where_field} {value:g}), "
                        "so that level would be judged 'fail: no data' and the search would stop there: "
                        "drop the condition or make it include the first level"
                    ),
                )


def _grading_problems(scenario: Scenario) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Grading keys that mean nothing in the chosen mode (a tolerance for exact matching would be ignored unseen),
    and a grading section on a regression, which has no right or wrong answer to grade."""
    grading = scenario.grading
    if grading is None:
        return
    from loadgrade.analysis.grading import MODE_OPTIONS

    for key in sorted(grading.model_fields_set - {"mode"} - MODE_OPTIONS[grading.mode]):
        modes = [mode for mode, options in MODE_OPTIONS.items() if key in options]
        yield (
            ("grading", key),
            f"{key!r} applies to mode {' or '.join(repr(m) for m in modes)} only, and this section's mode is "
            f"{grading.mode!r}: remove it or change the mode",
        )
    if scenario.dataset.task == "regression":
        yield (
            ("dataset", "task"),
            f"task 'regression' has no right or wrong answer, but the 'grading' section (mode {grading.mode!r}) "
            "decides them: drop the task (numeric grading with a tolerance replaces a regression) or the grading",
        )


def _grading_label_problem(grading: Grading, dataset: Dataset) -> str | None:
    """The first label the grading cannot use (no number, no letter, a pattern that does not compile), naming its
    sample and how many more share the problem; None when every label is usable. Each distinct label is parsed
    once."""
    from loadgrade.analysis.errors import AnalysisInputError
    from loadgrade.analysis.grading import grading_spec, parse_label

    spec = grading_spec(grading.model_dump())
    first: str | None = None
    bad = 0
    verdicts: dict[tuple[str, Any], str | None] = {}
    for sample_id, label in zip(dataset.ids, dataset.labels, strict=True):
        identity = (type(label).__name__, label if isinstance(label, str | int | float | bool) else repr(label))
        if identity not in verdicts:
            try:
                parse_label(label, spec)
                verdicts[identity] = None
            except AnalysisInputError as exc:
                verdicts[identity] = str(exc)
        problem = verdicts[identity]
        if problem is not None:
            bad += 1
            first = first or f"label of sample {sample_id!r}: {problem}"
    if first is None:
        return None
    more = f" (and {bad - 1} more label{'s' if bad > 2 else ''})" if bad > 1 else ""
    return f"{first}{more}"


def _default_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem) or "scenario"


def _problems(path: Path, root: yaml.Node | None, found: list[tuple[tuple[Any, ...], str]]) -> ScenarioError:
    return ScenarioError(path, problems=[Problem(_key(loc), message, _line(root, loc)) for loc, message in found])


def _validated(path: Path, root: yaml.Node | None, raw: dict[str, Any], *, check_dataset: bool) -> Scenario:
    try:
        scenario = Scenario.model_validate(raw, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise _problems(path, root, [_describe(error, raw, root) for error in exc.errors()]) from None
    loose = [
        (loc, _wrong_type(expected, value, _written(root, loc)))
        for loc, value, expected in _loose_numbers(scenario, raw, ())
    ]
    unjudgeable = list(_unjudgeable_rules(scenario)) + list(_grading_problems(scenario))
    if loose or unjudgeable:
        raise _problems(path, root, loose + unjudgeable)

    scenario._source = path.resolve()
    if not check_dataset:
        return scenario
    try:
        dataset = scenario.data()
    except ScenarioError as exc:
        raise ScenarioError(
            path, problems=[Problem(p.key, p.message, _line(root, tuple(p.key.split(".")))) for p in exc.problems]
        ) from None
    columns = [str(c) for c in dataset.frame.columns]
    try:
        scenario.protocol.check_fields(columns)
    except ValueError as exc:
        raise ScenarioError(path, "protocol", str(exc), line=_line(root, ("protocol",))) from None
    try:  # a template naming the label column sends the model the answer
        scenario.protocol.check_fields([c for c in columns if c != dataset.label_column])
    except ValueError:
        label = dataset.label_column
        raise ScenarioError(
            path,
            "protocol",
            f"the request names the label column {label!r} (placeholder {{{{{label}}}}}), so the model would be "
            "sent the answer: leave it out",
            line=_line(root, ("protocol",)),
        ) from None
    # a request the preset cannot build (text into a numeric tensor, a user function that raises) is a
    # scenario problem: find it now, on the first sample, rather than as an exception in every user's task
    first = dataset.sample(0)
    try:
        scenario.protocol.build_body(first)
    except Exception as exc:
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise ScenarioError(
            path,
            "protocol",
            f"cannot build the request for sample {first.sample_id!r}: {message}",
            line=_line(root, ("protocol",)),
        ) from None
    if scenario.grading is not None:  # a label the grading cannot read would be a wrong answer at every load
        problem = _grading_label_problem(scenario.grading, dataset)
        if problem is not None:
            raise ScenarioError(path, "grading", problem, line=_line(root, ("grading",)))
    return scenario


def load_scenario(path: str | os.PathLike[str], *, check_dataset: bool = True) -> Scenario:
    """Read, validate and resolve a scenario YAML file.

    Relative paths inside it resolve against the file's folder; ``${NAME}`` references are read from the
    environment; with ``check_dataset`` the dataset is read and its columns, ids and labels are checked too.
    Any problem raises :class:`ScenarioError`, whose message never holds a value read from the environment.
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(path, "", "scenario file not found")
    root, raw = _parse(_read_text(path), path)
    if not isinstance(raw, dict):
        raise ScenarioError(
            path, "", f"expected a mapping of keys (endpoint, protocol, dataset, load, ...), got {type(raw).__name__}"
        )
    raw.setdefault("name", _default_name(path))
    if isinstance(raw.get("load"), dict):
        raw["load"].setdefault("kind", "users")

    endpoint = raw.get("endpoint")
    header_templates: dict[str, str] = {}
    base_url_template = ""
    secrets: dict[str, str] = {}
    if isinstance(endpoint, dict):
        if isinstance(endpoint.get("base_url"), str):
            base_url_template = endpoint["base_url"]
            endpoint["base_url"] = _expand_env(
                base_url_template, "endpoint.base_url", path, _line(root, ("endpoint", "base_url")), secrets
            )
        if isinstance(endpoint.get("headers"), dict):
            for name, value in endpoint["headers"].items():
                if isinstance(value, str):
                    header_templates[str(name)] = value
                    endpoint["headers"][name] = _expand_env(
                        value, f"endpoint.headers.{name}", path, _line(root, ("endpoint", "headers", name)), secrets
                    )

    try:
        scenario = _validated(path, root, raw, check_dataset=check_dataset)
    except ScenarioError as exc:
        raise _without_secrets(exc, secrets) from None
    scenario._header_templates = header_templates
    scenario._base_url_template = base_url_template
    return scenario
