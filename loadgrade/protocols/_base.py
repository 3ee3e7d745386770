"""What every protocol preset provides: build a request body from a sample, extract a prediction from a reply.

A preset is a small frozen pydantic model (its options are scenario keys under ``protocol:``) whose two methods
are pure, so they can be tested without a server and called on the hot path without surprises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import jmespath
import jmespath.exceptions
import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from loadgrade.dataset import Sample


class ExtractionError(ValueError):
    """The reply was JSON but did not hold a prediction where the protocol expects one."""


def dumps(value: Any) -> str:
    """Compact JSON text, as written to request bodies and to the ``prediction`` column.

    orjson rather than the standard library: this runs once per request, where microseconds count.

    >>> dumps({"a": [1, 2.5, "é"]})
    '{"a":[1,2.5,"é"]}'
    """
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def describe(payload: Any) -> str:
    """A short description of a reply's shape for error messages."""
    if isinstance(payload, dict):
        keys = ", ".join(list(map(str, payload))[:8])
        return f"an object with keys: {keys}" if keys else "an empty object"
    if isinstance(payload, list):
        return f"a list of {len(payload)}"
    return f"{type(payload).__name__} {dumps(payload)[:60]}"


def server_error(payload: Any) -> str:
    """``; the reply says: <message>`` when a JSON reply carries an error message, else empty.

    Servers (TF Serving, the Open Inference Protocol, OpenAI-compatible ones) put it in ``error`` as text or as an
    object with a ``message``; quoting it beats listing the reply's keys.

    >>> server_error({"error": {"message": "model not loaded"}})
    '; the reply says: model not loaded'
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message", error)
    if error is None or error == "":
        return ""
    text = error if isinstance(error, str) else dumps(error)
    return f"; the reply says: {text[:200]}"


def path_segment(value: str, what: str) -> str:
    """Check that a model name or version fits in one URL path segment; returns it unchanged."""
    if not value or value != value.strip() or any(ch in value for ch in "/?#"):
        raise ValueError(f"expected a {what} without '/', '?', '#' or surrounding spaces, got {value!r}")
    return value


def quoted(value: str) -> str:
    """A path segment percent-encoded for the URL (a space becomes %20)."""
    return quote(value, safe="")


def compile_jmespath(value: str) -> Any:
    """A compiled JMESPath expression, or a ValueError naming the expression."""
    try:
        return jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {value!r}: {exc}") from None


def first_row(data: list[Any], shape: Any, index: int = 0) -> Any:
    """Row ``index`` of a tensor given as flat (row-major) or nested data: a scalar when a row holds one value.

    >>> first_row([7, 3], [2, 1]), first_row([0.1, 0.9, 0.8, 0.2], [2, 2], 1), first_row([[0.1, 0.9]], [1, 2])
    (7, [0.8, 0.2], [0.1, 0.9])
    """
    if data and isinstance(data[0], list):  # nested: one list per row
        row = data[index]
        return row[0] if len(row) == 1 else row
    width = 1
    if isinstance(shape, list) and len(shape) > 1 and all(isinstance(d, int) and d >= 0 for d in shape):
        width = math.prod(shape[1:])
    if width <= 1:
        return data[index]
    return data[index * width : (index + 1) * width]


class ProtocolBase(BaseModel):
    """Base of the protocol presets; subclasses set ``kind`` and implement the two methods."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_path: ClassVar[str] = "/"
    """Path used when the scenario's ``endpoint.path`` is not given (a pattern, for presets whose path has options)."""

    content_type: ClassVar[str] = "application/json"

    def path(self) -> str:
        """The request path when the scenario's ``endpoint.path`` is not given.

        Presets whose path holds their options (a model name, a version) override this; it is called for every
        request, so they compute the path once, when the preset is built.
        """
        return self.default_path

    def build_body(self, sample: Sample) -> bytes:
        """The request body for one sample."""
        raise NotImplementedError

    def extract(self, payload: Any) -> Any:
        """The prediction in a decoded JSON reply; raises :class:`ExtractionError` when it is not there."""
        raise NotImplementedError

    @property
    def samples_per_request(self) -> int:
        """How many samples one request carries (presets that can batch have a ``batch_size`` option)."""
        return 1

    def build_batch(self, samples: Sequence[Sample]) -> bytes:
        """The request body for several samples (presets that can batch)."""
        raise NotImplementedError(f"protocol {getattr(self, 'kind', '?')} sends one sample per request")

    def extract_batch(self, payload: Any, n: int) -> list[Any]:
        """The ``n`` predictions of a batched reply, in the order the samples were sent."""
        raise NotImplementedError(f"protocol {getattr(self, 'kind', '?')} sends one sample per request")

    def usage(self, payload: Any) -> tuple[int, int] | None:
        """``(prompt_tokens, completion_tokens)`` when the reply reports them (LLM servers); None otherwise."""
        return None

    @property
    def streams(self) -> bool:
        """True when replies come as server-sent events (the presets with a ``stream`` or ``sse`` option)."""
        return False

    @property
    def reply_limit(self) -> int | None:
        """How many characters of an LLM reply's text to record (``reply_chars``); None for presets without text."""
        return None

    def reply_text(self, payload: Any) -> tuple[str, str] | None:
        """An LLM reply's text and ``finish_reason`` ("" when not given), for presets whose replies are text."""
        return None

    def stream_piece(self, event: Any) -> tuple[str, str, tuple[int, int] | None]:
        """One streamed event's text, ``finish_reason`` ("" when none) and usage counts (when it carries them)."""
        raise NotImplementedError(f"protocol {getattr(self, 'kind', '?')} does not stream")

    def stream_prediction(self, text: str, last_event: Any) -> Any:
        """The prediction of a whole stream: from its text, or (``generic``) from its last event."""
        raise NotImplementedError(f"protocol {getattr(self, 'kind', '?')} does not stream")

    def ended(self, done: bool, finish_reason: str) -> bool:
        """Whether a stream that closed cleanly had its end (``[DONE]`` or a ``finish_reason``, for OpenAI)."""
        return True

    def check_fields(self, fields: Sequence[str]) -> None:
        """Raise ValueError if the preset refers to dataset fields that do not exist (checked at load time)."""


class ModelServerProtocol(ProtocolBase):
    """Presets whose path names a model and optionally its version (Open Inference, TF Serving, TorchServe).

    Subclasses give :meth:`model_path`; the path is computed once, when the preset is built, since it is used for
    every request.
    """

    model_name: str = Field(description="The model's name in the URL")
    version: str | None = Field(None, description="Model version; default: the server's choice")
    _path: str = PrivateAttr(default="")

    @field_validator("model_name")
    @classmethod
    def _model_segment(cls, value: str) -> str:
        return path_segment(value, "model name")

    @field_validator("version")
    @classmethod
    def _version_segment(cls, value: str | None) -> str | None:
        return None if value is None else path_segment(value, "version")

    @model_validator(mode="after")
    def _build_path(self) -> ModelServerProtocol:
        self._path = self.model_path(quoted(self.model_name), None if self.version is None else quoted(self.version))
        return self

    def model_path(self, model: str, version: str | None) -> str:
        """The request path for a (percent-encoded) model name and version."""
        raise NotImplementedError

    def path(self) -> str:
        return self._path
