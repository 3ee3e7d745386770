"""Turn what came back from the endpoint into a record outcome: a prediction, or a classified error.

A wrong prediction is not an error here: only transport and format problems are (``ok`` is False).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import orjson

from loadgrade.protocols import ExtractionError, ProtocolBase, dumps

ErrorKind = Literal["", "http", "timeout", "connection", "decode", "extract"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("http", "timeout", "connection", "decode", "extract")

_SNIPPET = 200


class Outcome(NamedTuple):
    """How one request ended: ``ok`` with a prediction (JSON text), or an ``error_kind`` and message.

    A named tuple: made once per request, at a third of a frozen dataclass's cost.
    """

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


def decode_reply(
    *, status_code: int, content: bytes | None, exception: BaseException | None
) -> tuple[Any, Outcome | None]:
    """The decoded JSON reply, or (None, the outcome of a transport, HTTP or format failure).

    ``status_code`` is 0 when no HTTP response arrived.
    """
    if 300 <= status_code < 400:
        return None, Outcome(False, "http", f"HTTP {status_code}: a redirect, not followed (use the final URL)")
    if status_code >= 400 or (status_code and not 200 <= status_code < 300):
        return None, Outcome(False, "http", f"HTTP {status_code}: {_snippet(content)}")
    if exception is not None or not status_code:
        kind = classify_exception(exception) if exception is not None else "connection"
        message = f"{type(exception).__name__}: {exception}" if exception is not None else "no response"
        return None, Outcome(False, kind, message.strip())
    if not content:
        return None, Outcome(False, "decode", "response is not JSON: (empty body)")
    try:
        return orjson.loads(content), None
    except orjson.JSONDecodeError as exc:
        return None, Outcome(False, "decode", f"response is not JSON ({exc}): {_snippet(content)}")


def interpret_response(
    protocol: ProtocolBase, *, status_code: int, content: bytes | None, exception: BaseException | None
) -> Outcome:
    """Classify one reply: a prediction, or the kind of failure.

    >>> from loadgrade.protocols import FlaskPredictProtocol
    >>> interpret_response(FlaskPredictProtocol(), status_code=200, content=b'{"output_data": [3]}', exception=None)
    Outcome(ok=True, error_kind='', error='', prediction='3', usage=None)
    >>> interpret_response(FlaskPredictProtocol(), status_code=503, content=b'busy', exception=None).error
    'HTTP 503: busy'
    """
    payload, failure = decode_reply(status_code=status_code, content=content, exception=exception)
    if failure is not None:
        return failure
    try:
        prediction = protocol.extract(payload)
    except ExtractionError as exc:
        return Outcome(False, "extract", str(exc))
    return Outcome(True, prediction=dumps(prediction), usage=protocol.usage(payload))


def interpret_batch(
    protocol: ProtocolBase, *, n: int, status_code: int, content: bytes | None, exception: BaseException | None
) -> list[Outcome]:
    """Classify the reply to a request that carried ``n`` samples: one outcome per sample, in the order sent.

    A transport, HTTP or format problem concerns every sample of the request; otherwise each gets its prediction.

    >>> from loadgrade.protocols import OpenInferenceV2Protocol
    >>> reply = b'{"outputs": [{"name": "p", "shape": [2, 1], "data": [7, 3]}]}'
    >>> [o.prediction for o in interpret_batch(OpenInferenceV2Protocol(model_name="m", batch_size=2), n=2,
    ...                                        status_code=200, content=reply, exception=None)]
    ['7', '3']
    """
    payload, failure = decode_reply(status_code=status_code, content=content, exception=exception)
    if failure is not None:
        return [failure] * n
    try:
        predictions = protocol.extract_batch(payload, n)
    except ExtractionError as exc:
        return [Outcome(False, "extract", str(exc))] * n
    usage = protocol.usage(payload)
    return [Outcome(True, prediction=dumps(p), usage=usage) for p in predictions]
