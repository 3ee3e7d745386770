"""Turn what came back from the endpoint into a record outcome: a prediction, or a classified error.

A wrong prediction is not an error here: only transport and format problems are (``ok`` is False).
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, NamedTuple

import orjson

from loadgrade.protocols import ExtractionError, ProtocolBase, dumps
from loadgrade.streaming import StreamExchange

ErrorKind = Literal["", "http", "timeout", "connection", "decode", "extract", "cut_short"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("http", "timeout", "connection", "decode", "extract", "cut_short")
#: Why an LLM reply was cut short (``error_kind`` "cut_short", error text ``cut short (<reason>): ...``): ``empty``
#: (no output text), ``length`` (stopped at max_tokens before the answer), ``no_end`` (a stream that ended without
#: ``[DONE]`` or a ``finish_reason``). A lost answer, neither a wrong one nor a transport failure.
CUT_SHORT_REASONS: tuple[str, ...] = ("empty", "length", "no_end")

_SNIPPET = 200


class LLMFigures(NamedTuple):
    """What an LLM reply adds to its record (the ``ttft_ms`` ... ``reply`` columns); None where not measured."""

    ttft_ms: float | None = None
    itl_mean_ms: float | None = None
    itl_max_ms: float | None = None
    tpot_ms: float | None = None
    output_tokens: int | None = None
    finish_reason: str = ""
    reply: str = ""


class Outcome(NamedTuple):
    """How one request ended: ``ok`` with a prediction (JSON text), or an ``error_kind`` and message.

    A named tuple: made once per request, at a third of a frozen dataclass's cost.
    """

    ok: bool
    error_kind: ErrorKind = ""
    error: str = ""
    prediction: str = ""
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens) when the reply reported them
    llm: LLMFigures | None = None  # LLM replies (streamed or not): token latencies, finish_reason, text


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
    Outcome(ok=True, error_kind='', error='', prediction='3', usage=None, llm=None)
    >>> interpret_response(FlaskPredictProtocol(), status_code=503, content=b'busy', exception=None).error
    'HTTP 503: busy'
    """
    payload, failure = decode_reply(status_code=status_code, content=content, exception=exception)
    if failure is not None:
        return failure
    limit = protocol.reply_limit
    if limit is not None:
        return _interpret_text_reply(protocol, payload, limit)
    try:
        prediction = protocol.extract(payload)
    except ExtractionError as exc:
        return Outcome(False, "extract", str(exc))
    return Outcome(True, prediction=dumps(prediction), usage=protocol.usage(payload))


def _interpret_text_reply(protocol: ProtocolBase, payload: Any, limit: int) -> Outcome:
    """A whole (non-streamed) LLM reply: its text, finish_reason and token count, and whether it was cut short."""
    usage = protocol.usage(payload)
    try:
        found = protocol.reply_text(payload)
        prediction = protocol.extract(payload) if found is None else protocol.stream_prediction(found[0], payload)
    except ExtractionError as exc:
        return Outcome(False, "extract", str(exc), usage=usage)
    text, reason = found if found is not None else ("", "")
    tokens = usage[1] if usage is not None and usage[1] >= 0 else None
    figures = LLMFigures(output_tokens=tokens, finish_reason=reason, reply=text[:limit])
    cut = cut_short(text=text, prediction=prediction, finish_reason=reason, ended=True, tokens=tokens)
    if cut is not None:
        return Outcome(False, "cut_short", cut, usage=usage, llm=figures)
    return Outcome(True, prediction=dumps(prediction), usage=usage, llm=figures)


def cut_short(*, text: str, prediction: Any, finish_reason: str, ended: bool, tokens: int | None) -> str | None:
    """Why an LLM reply lost its answer (``cut short (<reason>): ...``), or None when it did not.

    A stream without its end comes first (what came may be any part of the reply), then a reply with no text, then
    one stopped at ``max_tokens`` before its answer. A reply cut at ``max_tokens`` that still holds the answer is an
    answer.

    >>> cut_short(text="The digit", prediction=None, finish_reason="length", ended=True, tokens=2)
    'cut short (length): the reply stopped at max_tokens (2 tokens) before an answer'
    >>> cut_short(text="The digit is 7", prediction="7", finish_reason="length", ended=True, tokens=4) is None
    True
    """
    count = "?" if tokens is None else str(tokens)
    if not ended:
        return f"cut short (no_end): the stream ended without [DONE] or a finish_reason ({count} tokens)"
    if not text.strip():
        why = f"finish_reason {finish_reason}" if finish_reason else "no finish_reason"
        return f"cut short (empty): the reply holds no text ({why})"
    if finish_reason == "length" and prediction is None:
        return f"cut short (length): the reply stopped at max_tokens ({count} tokens) before an answer"
    return None


def interpret_stream(protocol: ProtocolBase, exchange: StreamExchange) -> Outcome:
    """Classify a streamed reply and measure its token latencies from the events' read times.

    TTFT is the time to the first event carrying text, ITL the gaps between such events, TPOT
    ``(E2E - TTFT) / (tokens - 1)`` with the server's token count when it reports one (else the events counted).
    A reply that was not a stream (an HTTP error, or a server that ignored ``stream``) is classified as a whole.
    """
    if exchange.content is not None or not 200 <= exchange.status_code < 300:
        return interpret_response(
            protocol, status_code=exchange.status_code, content=exchange.content, exception=exchange.exception
        )
    limit = protocol.reply_limit or 0
    pieces: list[str] = []
    times: list[float] = []
    reason = ""
    usage: tuple[int, int] | None = None
    done = False
    last: Any = None
    problem: Outcome | None = None
    for at, data in exchange.events:
        if data.strip() == b"[DONE]":
            done = True
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            problem = Outcome(False, "decode", f"streamed event {len(times) + 1} is not JSON ({exc}): {_snippet(data)}")
            break
        try:
            text, finish, counts = protocol.stream_piece(event)
        except ExtractionError as exc:
            problem = Outcome(False, "extract", str(exc))
            break
        last = event
        if text:
            pieces.append(text)
            times.append(at)
        if finish:
            reason = finish
        if counts is not None:
            usage = counts
    text = "".join(pieces)
    tokens = usage[1] if usage is not None and usage[1] >= 0 else len(times)
    figures = _figures(times, exchange.response_time_ms, tokens, reason, text[:limit])
    if problem is not None:
        return problem._replace(usage=usage, llm=figures)
    if exchange.exception is not None:
        kind = classify_exception(exchange.exception)
        how = "stalled" if kind == "timeout" else "broke"
        message = f"the stream {how} after {len(times)} text events: {type(exchange.exception).__name__}: "
        return Outcome(False, kind, (message + str(exchange.exception)).strip(), usage=usage, llm=figures)
    try:
        prediction = protocol.stream_prediction(text, last)
    except ExtractionError as exc:
        return Outcome(False, "extract", str(exc), usage=usage, llm=figures)
    cut = cut_short(
        text=text, prediction=prediction, finish_reason=reason, ended=protocol.ended(done, reason), tokens=tokens
    )
    if cut is not None:
        return Outcome(False, "cut_short", cut, usage=usage, llm=figures)
    return Outcome(True, prediction=dumps(prediction), usage=usage, llm=figures)


def _figures(times: list[float], e2e_ms: float, tokens: int, reason: str, reply: str) -> LLMFigures:
    """TTFT, ITL (mean, max) and TPOT from the read times (ms after the send) of the events that carried text.

    >>> _figures([100.0, 110.0, 130.0], 140.0, 3, "stop", "a b c")[:5]
    (100.0, 15.0, 20.0, 20.0, 3)
    """
    if not times:
        return LLMFigures(output_tokens=tokens, finish_reason=reason, reply=reply)
    ttft = times[0]
    itl_mean = itl_max = None
    if len(times) > 1:
        itl_mean = (times[-1] - times[0]) / (len(times) - 1)
        itl_max = max(b - a for a, b in itertools.pairwise(times))
    tpot = (e2e_ms - ttft) / (tokens - 1) if tokens > 1 else None
    return LLMFigures(ttft, itl_mean, itl_max, tpot, tokens, reason, reply)


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
