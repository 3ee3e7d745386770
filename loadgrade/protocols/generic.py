"""``generic``: any JSON endpoint, described by a body template and a JMESPath expression for the prediction.

Template placeholders are ``{{input}}`` (the sample's model input), ``{{sample_id}}`` and ``{{<column>}}`` for any
dataset column. A string that is exactly one placeholder is replaced by the value itself (a list stays a list);
placeholders inside longer strings are replaced by their text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, ProtocolBase, compile_jmespath, describe, dumps

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
BUILTIN_FIELDS = ("input", "sample_id")


def placeholders(template: Any) -> set[str]:
    """Every placeholder name used anywhere in a template.

    >>> sorted(placeholders({"a": "{{input}}", "b": ["id={{ sample_id }}"]}))
    ['input', 'sample_id']
    """
    if isinstance(template, str):
        return set(_PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(placeholders(v) for v in template)) if template else set()
    return set()


def _lookup(name: str, sample: Sample) -> Any:
    if name == "input":
        return sample.input
    if name == "sample_id":
        return sample.sample_id
    return sample.fields[name]


def render(template: Any, sample: Sample) -> Any:
    """Fill a template's placeholders from a sample.

    >>> render({"x": "{{input}}", "tag": "s-{{sample_id}}"}, Sample("7", [1, 2], {}))
    {'x': [1, 2], 'tag': 's-7'}
    """
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return _lookup(whole.group(1), sample)
        return _PLACEHOLDER.sub(lambda m: str(_lookup(m.group(1), sample)), template)
    if isinstance(template, dict):
        return {k: render(v, sample) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, sample) for v in template]
    return template


class GenericProtocol(ProtocolBase):
    """A JSON body template filled from the dataset row; the prediction is found with JMESPath."""

    kind: Literal["generic"] = "generic"
    body: Any = Field(default_factory=lambda: {"inputs": "{{input}}"})
    prediction: str
    sse: bool = Field(False, description="The reply is a stream of server-sent JSON events; prediction: the last one")
    token_path: str | None = Field(None, description="With sse: JMESPath of each event's text piece (token timing)")
    reply_chars: int = Field(200, ge=0, description="With sse: characters of the streamed text kept in 'reply'")
    default_path: ClassVar[str] = "/"
    _expression: Any = PrivateAttr(default=None)
    _token: Any = PrivateAttr(default=None)

    @field_validator("prediction", "token_path")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_jmespath(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._expression = compile_jmespath(self.prediction)
        self._token = compile_jmespath(self.token_path) if self.token_path is not None else None

    @property
    def streams(self) -> bool:
        return self.sse

    @property
    def reply_limit(self) -> int | None:
        return self.reply_chars if self.sse else None

    def stream_piece(self, event: Any) -> tuple[str, str, tuple[int, int] | None]:
        """
        >>> GenericProtocol(prediction="generated_text", sse=True, token_path="token.text").stream_piece(
        ...     {"token": {"text": " 7"}, "generated_text": None})
        (' 7', '', None)
        """
        piece = self._token.search(event) if self._token is not None else None
        return (piece if isinstance(piece, str) else ""), "", None

    def stream_prediction(self, text: str, last_event: Any) -> Any:
        if last_event is None:
            raise ExtractionError("the stream held no JSON event")
        return self.extract(last_event)

    def check_fields(self, fields: Sequence[str]) -> None:
        unknown = sorted(placeholders(self.body) - set(fields) - set(BUILTIN_FIELDS))
        if unknown:
            raise ValueError(
                f"placeholder {{{{{unknown[0]}}}}} names no dataset column; "
                f"use {{{{input}}}}, {{{{sample_id}}}} or one of: {', '.join(list(fields)[:10])}"
            )

    def build_body(self, sample: Sample) -> bytes:
        return dumps(render(self.body, sample)).encode()

    def extract(self, payload: Any) -> Any:
        """
        >>> GenericProtocol(prediction="result.label").extract({"result": {"label": "cat"}})
        'cat'
        """
        value = self._expression.search(payload)
        if value is None:
            raise ExtractionError(f"JMESPath {self.prediction!r} found nothing in {describe(payload)}")
        return value
