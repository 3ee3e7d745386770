"""What the two OpenAI-compatible presets share: the prompt template, sampling options and answer reduction.

The prompt is a text template whose ``{{input}}``, ``{{sample_id}}`` and ``{{<column>}}`` placeholders are filled from
the dataset row, as in the ``generic`` preset; values that are not text are written as compact JSON (a list of
features becomes ``[0.0,3.0,...]``). The model's text answer is reduced to what is compared with the label: first
``answer_regex`` (its first group, or the whole match), then the ``normalize`` steps in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, ProtocolBase, describe, dumps, server_error
from loadgrade.protocols.generic import BUILTIN_FIELDS, placeholders

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
# fields the preset writes itself; ``extra`` may not override them
_OWN_FIELDS = frozenset({"model", "messages", "prompt", "temperature", "max_tokens", "stream", "stream_options"})

Normalizer = Literal["strip", "lower"]


def fill(template: str, sample: Sample) -> str:
    """A prompt template with its placeholders replaced by the sample's values (non-text values as JSON).

    >>> fill("Digit for {{input}}? (id {{sample_id}}, {{ note }})", Sample("7", [0.0, 16.0], {"note": "hi"}))
    'Digit for [0.0,16.0]? (id 7, hi)'
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = sample.input if name == "input" else sample.sample_id if name == "sample_id" else sample.fields[name]
        return found if isinstance(found, str) else dumps(found)

    return _PLACEHOLDER.sub(value, template)


def usage_counts(payload: Any) -> dict[str, int] | None:
    """``prompt_tokens`` and ``completion_tokens`` from an OpenAI-style ``usage`` object, when the server sent one.

    >>> usage_counts({"usage": {"prompt_tokens": 80, "completion_tokens": 5, "total_tokens": 85}})
    {'prompt_tokens': 80, 'completion_tokens': 5}
    >>> usage_counts({"choices": []}) is None
    True
    """
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    counts = {k: usage[k] for k in ("prompt_tokens", "completion_tokens") if type(usage.get(k)) is int}
    return counts or None


def _default_normalize() -> list[Normalizer]:
    return ["strip"]


class OpenAIBase(ProtocolBase):
    """Options common to ``openai-chat`` and ``openai-completions``."""

    model: str = Field(min_length=1, description="Model name sent in the request's 'model' field")
    prompt: str = Field(min_length=1, description="Prompt template with {{input}}, {{sample_id}}, {{<column>}}")
    temperature: float | None = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 for repeatable answers")
    max_tokens: int | None = Field(None, gt=0, description="Upper bound on the answer's tokens")
    extra: dict[str, Any] = Field(default_factory=dict, description="More request fields (seed, top_p, stop, ...)")
    answer_regex: str | None = Field(None, description="Regex reducing the text to the answer: first group, or match")
    normalize: list[Normalizer] = Field(default_factory=_default_normalize, description="strip and/or lower, in order")
    stream: bool = Field(False, description="Stream the reply (server-sent events): records TTFT, ITL and TPOT")
    include_usage: bool = Field(True, description="With stream: ask for token counts (stream_options.include_usage)")
    reply_chars: int = Field(200, ge=0, description="Characters of the reply's text kept in the 'reply' column")
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("answer_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @field_validator("extra")
    @classmethod
    def _no_own_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(_OWN_FIELDS & set(value))
        if clash:
            raise ValueError(
                f"'extra' may not set {', '.join(clash)}: the preset writes them itself (use its own options: "
                "model, prompt, temperature, max_tokens, stream, include_usage)"
            )
        return value

    @model_validator(mode="after")
    def _compile(self) -> OpenAIBase:
        self._regex = re.compile(self.answer_regex) if self.answer_regex is not None else None
        return self

    def template_fields(self) -> set[str]:
        """Placeholder names the templates use (checked against the dataset's columns)."""
        return placeholders(self.prompt)

    def check_fields(self, fields: Sequence[str]) -> None:
        unknown = sorted(self.template_fields() - set(fields) - set(BUILTIN_FIELDS))
        if unknown:
            raise ValueError(
                f"placeholder {{{{{unknown[0]}}}}} names no dataset column; "
                f"use {{{{input}}}}, {{{{sample_id}}}} or one of: {', '.join(list(fields)[:10])}"
            )

    def options(self) -> dict[str, Any]:
        """The sampling fields of the request body (model first, the way the API documents it)."""
        body: dict[str, Any] = {"model": self.model}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.stream:
            body["stream"] = True
            if self.include_usage:
                body["stream_options"] = {"include_usage": True}
        body.update(self.extra)
        return body

    @property
    def streams(self) -> bool:
        return self.stream

    @property
    def reply_limit(self) -> int | None:
        return self.reply_chars

    def text_of(self, choice: dict[str, Any]) -> str:
        """The text of a whole (non-streamed) reply's first choice; raises ExtractionError when it is not text."""
        raise NotImplementedError

    def piece_of(self, choice: dict[str, Any]) -> Any:
        """The text piece of a streamed event's first choice (None or absent when it has none)."""
        raise NotImplementedError

    def extract(self, payload: Any) -> Any:
        return self.answer(self.text_of(self.first_choice(payload)))

    def reply_text(self, payload: Any) -> tuple[str, str]:
        choice = self.first_choice(payload)
        reason = choice.get("finish_reason")
        return self.text_of(choice), reason if isinstance(reason, str) else ""

    def stream_piece(self, event: Any) -> tuple[str, str, tuple[int, int] | None]:
        """
        >>> from loadgrade.protocols import OpenAIChatProtocol
        >>> chat = OpenAIChatProtocol(model="m", prompt="p", stream=True)
        >>> chat.stream_piece({"choices": [{"delta": {"content": "7"}, "finish_reason": None}]})
        ('7', '', None)
        >>> chat.stream_piece({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
        ('', '', (9, 4))
        """
        if not isinstance(event, dict):
            raise ExtractionError(f"expected each streamed event to be an object, got {describe(event)}")
        choices = event.get("choices")
        if choices is None and "error" in event:
            raise ExtractionError(f"the stream carried an error{server_error(event)}")
        text, reason = "", ""
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            piece = self.piece_of(choices[0])
            text = piece if isinstance(piece, str) else ""
            found = choices[0].get("finish_reason")
            reason = found if isinstance(found, str) else ""
        return text, reason, self.usage(event)

    def stream_prediction(self, text: str, last_event: Any) -> Any:
        return self.answer(text)

    def ended(self, done: bool, finish_reason: str) -> bool:
        return done or bool(finish_reason)

    def first_choice(self, payload: Any) -> dict[str, Any]:
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list):
            raise ExtractionError(
                f"expected an object with a 'choices' list, got {describe(payload)}{server_error(payload)}"
            )
        if not choices or not isinstance(choices[0], dict):
            raise ExtractionError(f"expected 'choices' to hold at least one object, got {describe(choices)}")
        return choices[0]

    def usage(self, payload: Any) -> tuple[int, int] | None:
        counts = usage_counts(payload)
        if counts is None:
            return None
        return counts.get("prompt_tokens", -1), counts.get("completion_tokens", -1)

    def answer(self, text: str) -> Any:
        """Reduce the model's text to the answer compared with the label.

        No match of ``answer_regex`` is a wrong answer, not a failed request: the prediction is ``None`` (JSON
        ``null``), which matches no label. The server did its job; the model did not give an answer.

        >>> OpenAIBase(model="m", prompt="p", answer_regex=r"digit is (\\d)").answer("The digit is 7.")
        '7'
        >>> OpenAIBase(model="m", prompt="p", normalize=["strip", "lower"]).answer("  Cat ")
        'cat'
        """
        if self._regex is not None:
            match = self._regex.search(text)
            if match is None:
                return None
            text = next((g for g in match.groups() if g is not None), match.group(0))
        for step in self.normalize:
            text = text.strip() if step == "strip" else text.lower()
        return text
