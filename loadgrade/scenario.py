"""Scenario files: typed, strict models of ``scenarios/*.yaml`` and :func:`load_scenario`.

Every problem a scenario can have is found here, before any load starts, and reported as a
:class:`~loadgrade.errors.ScenarioError` naming the file, the key path (with its line) and what was expected.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loadgrade.dataset import FORMAT_BY_SUFFIX, Dataset, DatasetFormat, Order, load_dataset
from loadgrade.errors import Problem, ScenarioError
from loadgrade.protocols import Protocol
from loadgrade.resources import ResourcesSpec
from loadgrade.shapes import Load

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|cookie|password", re.IGNORECASE)
REDACTED = "<redacted>"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    """Where the model is served. ``${NAME}`` in ``base_url`` or a header value reads an environment variable."""

    base_url: str = Field(description="Scheme, host and port, e.g. http://127.0.0.1:8000")
    path: str | None = Field(None, description="Request path; defaults to the protocol's usual path")
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: PositiveFloat = Field(30.0, description="Connect and read time-out of one request")
    verify_tls: bool = True

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
    seed: int = 0
    passes: PositiveInt | None = Field(None, description="Stop after replaying the dataset this many times")
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


class Slo(_Strict):
    """Service-level objectives: the latency SLO used for goodput, the accuracy tolerance, and check rules."""

    latency_ms: PositiveFloat | None = None
    tolerance: float = Field(0.01, ge=0, le=1)
    rules: list[str] = Field(default_factory=list)


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
        data["endpoint"]["base_url"] = self._base_url_template or self.endpoint.base_url
        return data


# --------------------------------------------------------------------------------------------------- loading


def _expand_env(text: str, key: str, path: Path, line: int | None) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ScenarioError(
                path, key, f"environment variable {name} is not set (referenced as ${{{name}}})", line=line
            )
        return os.environ[name]

    return _ENV_REFERENCE.sub(replace, text)


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[yaml.Node | None, yaml.Node | None]:
    """The YAML node at a key path and, for mappings, the node of its key (for line numbers)."""
    node, key_node = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    node, key_node = v, k
                    break
            else:
                return node, key_node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node, key_node = node.value[part], None
        else:
            return node, key_node
    return node, key_node


def _line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    node, key_node = _node_at(root, loc)
    target = key_node or node
    return target.start_mark.line + 1 if target is not None else None


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


def _describe(error: Any, raw: Any) -> tuple[tuple[Any, ...], str]:
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
    message = error["msg"].removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error"):
        message = f"{message} (got {error['input']!r})"
    return loc, message


def _default_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem) or "scenario"


def load_scenario(path: str | os.PathLike[str], *, check_dataset: bool = True) -> Scenario:
    """Read, validate and resolve a scenario YAML file.

    Relative paths inside it resolve against the file's folder; ``${NAME}`` references are read from the
    environment; with ``check_dataset`` the dataset is read and its columns, ids and labels are checked too.
    Any problem raises :class:`ScenarioError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(path, "", "scenario file not found")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScenarioError(
            path, "", f"not valid YAML: {getattr(exc, 'problem', exc)}", line=mark.line + 1 if mark else None
        ) from None
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
    if isinstance(endpoint, dict):
        if isinstance(endpoint.get("base_url"), str):
            base_url_template = endpoint["base_url"]
            endpoint["base_url"] = _expand_env(
                base_url_template, "endpoint.base_url", path, _line(root, ("endpoint", "base_url"))
            )
        if isinstance(endpoint.get("headers"), dict):
            for name, value in endpoint["headers"].items():
                if isinstance(value, str):
                    header_templates[str(name)] = value
                    endpoint["headers"][name] = _expand_env(
                        value, f"endpoint.headers.{name}", path, _line(root, ("endpoint", "headers", name))
                    )

    try:
        scenario = Scenario.model_validate(raw, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc, message = _describe(error, raw)
            problems.append(Problem(".".join(map(str, loc)), message, _line(root, loc)))
        raise ScenarioError(path, problems=problems) from None

    scenario._source = path.resolve()
    scenario._header_templates = header_templates
    scenario._base_url_template = base_url_template
    if check_dataset:
        try:
            dataset = scenario.data()
        except ScenarioError as exc:
            raise ScenarioError(
                path, problems=[Problem(p.key, p.message, _line(root, tuple(p.key.split(".")))) for p in exc.problems]
            ) from None
        try:
            scenario.protocol.check_fields([str(c) for c in dataset.frame.columns])
        except ValueError as exc:
            raise ScenarioError(path, "protocol", str(exc), line=_line(root, ("protocol",))) from None
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
    return scenario
