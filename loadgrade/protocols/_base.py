"""What every protocol preset provides: build a request body from a sample, extract a prediction from a reply.

A preset is a small frozen pydantic model (its options are scenario keys under ``protocol:``) whose two methods
are pure, so they can be tested without a server and called on the hot path without surprises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

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


class ProtocolBase(BaseModel):
    """Base of the protocol presets; subclasses set ``kind`` and implement the two methods."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_path: ClassVar[str] = "/"
    """Path used when the scenario's ``endpoint.path`` is not given."""

    content_type: ClassVar[str] = "application/json"

    def build_body(self, sample: Sample) -> bytes:
        """The request body for one sample."""
        raise NotImplementedError

    def extract(self, payload: Any) -> Any:
        """The prediction in a decoded JSON reply; raises :class:`ExtractionError` when it is not there."""
        raise NotImplementedError

    def check_fields(self, fields: Sequence[str]) -> None:
        """Raise ValueError if the preset refers to dataset fields that do not exist (checked at load time)."""
