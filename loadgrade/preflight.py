"""Pre-flight: a few samples, one at a time, before any user is spawned.

A wrong ``endpoint.path``, a server that is not up, or a protocol that does not match the server's replies would
otherwise become thousands of identical error rows and a run that measured nothing. Sending the first few samples
through the very client, headers and protocol the users will use finds that in a second, and says what to fix in
one line (with the reply's snippet).

Nothing here is recorded and no Locust event is fired: the pre-flight is not part of the measurement. It works in a
gevent-patched Locust process and in a plain one (geventhttpclient runs its own hub when nothing is patched).
"""

from __future__ import annotations

import socket
import statistics
from dataclasses import dataclass, field
from typing import Any

import orjson

from loadgrade.client import Exchange, endpoint_client
from loadgrade.errors import ScenarioError
from loadgrade.protocols import ProtocolBase
from loadgrade.responses import Outcome, interpret_batch, interpret_response, interpret_stream
from loadgrade.scenario import Scenario

__all__ = ["PreflightResult", "preflight"]

_SNIPPET = 200
_SHOWN_PREDICTIONS = 5
_SKIP_HINT = "no load was sent (pass --skip-preflight to run anyway)"


@dataclass(frozen=True)
class PreflightResult:
    """What the pre-flight found; ``line`` is the one console line to print either way."""

    ok: bool
    sent: int  # samples answered (ok) or sent up to and including the failing request
    line: str
    error_kind: str = ""  # "" when ok; else an Outcome kind (http, timeout, connection, decode, extract) or "build"
    status_code: int = 0  # of the last reply (0: no HTTP response)
    predictions: list[str] = field(default_factory=list)  # JSON text, as recorded in the prediction column
    url: str = ""


def preflight(scenario: Scenario, *, host: str | None = None, samples: int = 3) -> PreflightResult:
    """Send the first ``samples`` samples of the dataset, one request at a time, and stop at the first failure.

    A protocol that batches sends them ``samples_per_request`` to a request (at least one full request). Each
    request is bounded by ``endpoint.timeout_s``. Never raises for a bad endpoint: the result says what went wrong.
    """
    base = (host or scenario.endpoint.base_url).rstrip("/")
    try:
        dataset = scenario.data()
    except ScenarioError as exc:
        return _failed("build", 0, 0, "", f"cannot read the dataset: {exc}")
    protocol = scenario.protocol
    batch = protocol.samples_per_request
    count = min(len(dataset), max(samples, 1) if batch == 1 else -(-max(samples, 1) // batch) * batch)
    groups = [list(range(start, min(start + batch, count))) for start in range(0, count, batch)]
    if not groups:
        return _failed("build", 0, 0, "", "the dataset has no samples to send")
    try:
        opened = endpoint_client(scenario, host=host)
    except Exception as exc:  # a --host the HTTP client cannot parse
        return _failed("connection", 0, 0, "", f"cannot send to {base}: {_text(exc)}: check --host")
    predictions: list[str] = []
    latencies: list[float] = []
    last_content: bytes | None = None
    last_status = 0
    with opened as client:
        where = f"{client.method} {client.url}"
        sent = 0
        for indices in groups:
            ids = [dataset.ids[i] for i in indices]
            try:
                body = (
                    protocol.build_body(dataset.sample(indices[0]))
                    if batch == 1
                    else protocol.build_batch([dataset.sample(i) for i in indices])
                )
            except Exception as exc:  # a user hook or preset that cannot build this sample: a scenario problem
                return _failed(
                    "build", sent, 0, client.url, f"cannot build the request for {_which(ids)}: {_text(exc)}"
                )
            if protocol.streams:
                streamed = client.send_stream(body)
                outcomes = [interpret_stream(protocol, streamed)]
                reply = outcomes[0].llm.reply if outcomes[0].llm is not None else ""
                # the explanations below quote the reply: a stream's text stands in for its body
                exchange = Exchange(
                    streamed.start_time,
                    streamed.response_time_ms,
                    streamed.status_code,
                    streamed.content if streamed.content is not None else reply.encode(),
                    streamed.exception,
                )
            else:
                exchange = client.send(body)
                outcomes = _interpret(protocol, exchange, len(indices))
            sent += len(indices)
            failed = next((o for o in outcomes if not o.ok), None)
            if failed is not None:
                return _failed(
                    failed.error_kind,
                    sent,
                    exchange.status_code,
                    client.url,
                    _explain(scenario, base, where, _which(ids), failed, exchange),
                )
            predictions += [o.prediction for o in outcomes]
            latencies.append(exchange.response_time_ms)
            last_content, last_status = exchange.content, exchange.status_code
    regex = getattr(protocol, "answer_regex", None)
    if regex is not None and predictions and all(p == "null" for p in predictions):
        return _failed(
            "extract",
            sent,
            last_status,
            client.url,
            f"{where} answered every sample, but protocol.answer_regex {regex!r} matched none of the "
            f"{len(predictions)} answers ({_last_answer(protocol, last_content)}): check protocol.answer_regex "
            "and the prompt",
            predictions,
        )
    shown = ", ".join(repr(p) for p in predictions[:_SHOWN_PREDICTIONS])
    more = f", ... ({len(predictions)} in all)" if len(predictions) > _SHOWN_PREDICTIONS else ""
    requests = f" in {len(groups)} request{'s' if len(groups) != 1 else ''}" if batch > 1 else ""
    line = (
        f"loadgrade: pre-flight: {sent} sample{'s' if sent != 1 else ''}{requests} answered by {where} "
        f"(predictions {shown}{more}; {statistics.median(latencies):.1f} ms median)"
    )
    return PreflightResult(True, sent, line, "", last_status, predictions, client.url)


def _last_answer(protocol: ProtocolBase, content: bytes | None) -> str:
    """The model's text before ``answer_regex``: what the regex should have matched."""
    try:
        plain = type(protocol).model_validate({**protocol.model_dump(by_alias=True), "answer_regex": None})
        return f"the last was {str(plain.extract(orjson.loads(content or b'')))[:_SNIPPET]!r}"
    except Exception:  # a reply shaped unlike the preset's: show the reply itself
        return f"last reply: {_snippet(content)}"


def _interpret(protocol: ProtocolBase, exchange: Exchange, n: int) -> list[Outcome]:
    status, content, exception = exchange.status_code, exchange.content, exchange.exception
    if protocol.samples_per_request == 1:
        return [interpret_response(protocol, status_code=status, content=content, exception=exception)]
    return interpret_batch(protocol, n=n, status_code=status, content=content, exception=exception)


def _failed(
    kind: str, sent: int, status: int, url: str, reason: str, predictions: list[str] | None = None
) -> PreflightResult:
    line = f"loadgrade: pre-flight failed: {reason}; {_SKIP_HINT}"
    return PreflightResult(False, sent, line, kind, status, predictions or [], url)


def _explain(scenario: Scenario, base: str, where: str, which: str, outcome: Outcome, exchange: Exchange) -> str:
    """What went wrong and which scenario key to look at, for each kind of failure."""
    kind, status = outcome.error_kind, exchange.status_code
    if kind == "connection":
        if _caused_by(exchange.exception, ConnectionRefusedError):
            return (
                f"nothing listens at {base} (connection refused): check endpoint.base_url (or --host) and that the "
                "server is up"
            )
        if _caused_by(exchange.exception, socket.gaierror):
            return f"cannot resolve the host of {base} ({outcome.error}): check endpoint.base_url (or --host)"
        return (
            f"{where} broke off without a reply for {which} ({outcome.error}): check endpoint.base_url (or --host), "
            "http:// against https://, and the server's logs"
        )
    if kind == "timeout":
        return (
            f"{where} did not answer {which} within endpoint.timeout_s = {scenario.endpoint.timeout_s:g} s: "
            "check that the server is up and not overloaded, or raise endpoint.timeout_s"
        )
    reply = f"(reply: {_snippet(exchange.content)})"
    if kind == "cut_short":
        return (
            f"{where} cut its reply to {which} short with no load at all ({outcome.error}) {reply}: check "
            "protocol.max_tokens, the prompt, and that the server streams to its end"
        )
    if kind == "http":
        return f"{where} answered HTTP {status} for {which} {reply}: {_http_hint(status)}"
    if kind == "decode":
        return (
            f"{where} answered HTTP {status} for {which} but the reply is not JSON {reply}: check endpoint.path "
            f"and protocol.kind ({_kind(scenario.protocol)})"
        )
    return (
        f"{where} answered HTTP {status} for {which} but protocol {_kind(scenario.protocol)} found no prediction: "
        f"{outcome.error} {reply}: check {_prediction_setting(scenario.protocol)}"
    )


def _http_hint(status: int) -> str:
    if 300 <= status < 400:
        return "a redirect, not followed: put the final URL in endpoint.base_url and endpoint.path"
    if status in (401, 403):
        return "check the credentials in endpoint.headers"
    if status in (404, 410):
        return "check endpoint.base_url and endpoint.path"
    if status == 405:
        return "check endpoint.method and endpoint.path"
    if status in (400, 415, 422):
        return "the server refused the request body: check protocol (its kind and options) and the dataset's inputs"
    if status in (429, 503):
        return "the server sheds or is not ready yet: wait until it is, or check what else loads it"
    return "the server failed on the request: check its logs"


def _prediction_setting(protocol: ProtocolBase) -> str:
    """The protocol option that says where the prediction is, e.g. ``protocol.output_key ('output_data')``."""
    for name in ("prediction", "output_key", "output_name", "output", "extract_function", "answer_regex"):
        info = type(protocol).model_fields.get(name)
        if info is not None:
            value: Any = getattr(protocol, name)
            shown = f"{value!r}" if value is not None else "not set"
            return f"protocol.{info.alias or name} ({shown}) and protocol.kind"
    return "protocol.kind and its options"


def _kind(protocol: ProtocolBase) -> str:
    return str(getattr(protocol, "kind", type(protocol).__name__))


def _which(ids: list[str]) -> str:
    return f"sample {ids[0]!r}" if len(ids) == 1 else f"samples {ids[0]!r} to {ids[-1]!r}"


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    for _ in range(5):  # geventhttpclient may wrap the cause (RetriesExceeded(original=...))
        if exc is None:
            return False
        if isinstance(exc, kind):
            return True
        exc = getattr(exc, "original", None) or exc.__cause__
    return False


def _text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"


def _snippet(content: bytes | None) -> str:
    """The start of a reply on one line, as the records' error column shows it."""
    if not content:
        return "(empty body)"
    text = content[:_SNIPPET].decode("utf-8", errors="replace")
    return " ".join(text.split()) + ("..." if len(content) > _SNIPPET else "")
