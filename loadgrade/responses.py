"""Turn what came back from the endpoint into a record outcome: a prediction, or a classified error.

A wrong prediction is not an error here: only transport and format problems are (``ok`` is False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from loadgrade.protocols import ExtractionError, ProtocolBase, dumps

ErrorKind = Literal["", "http", "timeout", "connection", "decode", "extract"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("http", "timeout", "connection", "decode", "extract")

_SNIPPET = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended: ``ok`` with a prediction (JSON text), or an ``error_kind`` and message."""

    ok: bool
    error_kind: ErrorKind = ""
    error: str = ""
    prediction: str = ""
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens) when the reply reported them


def classify_exception(exc: BaseException) -> ErrorKind:
    """``timeout`` for any kind of time-out (socket, gevent), else ``connection`` (refused, reset, closed).

    >>> classify_exception(TimeoutError("timed out")), classify_exception(ConnectionResetError())
    ('timeout', 'connection')
    """
    seen: BaseException | None = exc
    for _ in range(5):  # HTTP clients wrap the cause (geventhttpclient: RetriesExceeded(original=...))
        if seen is None:
            break
        if isinstance(seen, TimeoutError) or "timeout" in type(seen).__name__.lower():
            return "timeout"
        seen = getattr(seen, "original", None) or seen.__cause__
    return "connection"


def _snippet(content: bytes | None) -> str:
    if not content:
        return "(empty body)"
    text = content[:_SNIPPET].decode("utf-8", errors="replace")
    return " ".join(text.split()) + ("..." if len(content) > _SNIPPET else "")


def interpret_response(
    protocol: ProtocolBase, *, status_code: int, content: bytes | None, exception: BaseException | None
) -> Outcome:
    """Classify one reply. ``status_code`` is 0 when no HTTP response arrived.

    >>> from loadgrade.protocols import FlaskPredictProtocol
    >>> interpret_response(FlaskPredictProtocol(), status_code=200, content=b'{"output_data": [3]}', exception=None)
    Outcome(ok=True, error_kind='', error='', prediction='3', usage=None)
    >>> interpret_response(FlaskPredictProtocol(), status_code=503, content=b'busy', exception=None).error
    'HTTP 503: busy'
    """
    if status_code >= 400 or (status_code and not 200 <= status_code < 300):
        return Outcome(False, "http", f"HTTP {status_code}: {_snippet(content)}")
    if exception is not None or not status_code:
        kind = classify_exception(exception) if exception is not None else "connection"
        message = f"{type(exception).__name__}: {exception}" if exception is not None else "no response"
        return Outcome(False, kind, message.strip())
    try:
        payload = orjson.loads(content) if content else None
    except orjson.JSONDecodeError as exc:
        return Outcome(False, "decode", f"response is not JSON ({exc}): {_snippet(content)}")
    if payload is None and not content:
        return Outcome(False, "decode", "response is not JSON: (empty body)")
    try:
        prediction = protocol.extract(payload)
    except ExtractionError as exc:
        return Outcome(False, "extract", str(exc))
    return Outcome(True, prediction=dumps(prediction), usage=protocol.usage(payload))
