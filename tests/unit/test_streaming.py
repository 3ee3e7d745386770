"""Streamed LLM replies read by loadgrade's client from a real SSE server on 127.0.0.1: timing and outcomes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from loadgrade.client import EndpointClient
from loadgrade.protocols import GenericProtocol, OpenAIChatProtocol
from loadgrade.responses import Outcome, interpret_stream
from tests.support.sse_server import SENT, sse_server

CHAT = OpenAIChatProtocol(model="m", prompt="{{input}}", stream=True, answer_regex=r"(\d)")
HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with sse_server() as url:
        yield url


@pytest.fixture
def stream(server: str) -> Iterator[Callable[..., tuple[Outcome, float]]]:
    """Sends one streamed chat request to a path; returns the outcome and the epoch time it was sent."""
    opened: list[EndpointClient] = []

    def send(path: str, *, timeout_s: float = 5.0) -> tuple[Outcome, float]:
        opened.append(EndpointClient(server + path, method="POST", headers=HEADERS, timeout_s=timeout_s))
        exchange = opened[-1].send_stream(b'{"model": "m"}')
        return interpret_stream(CHAT, exchange), exchange.start_time

    yield send
    for client in opened:
        client.close()


def test_token_latencies_are_timed_as_each_event_is_read(stream: Callable[..., tuple[Outcome, float]]) -> None:
    SENT.clear()
    outcome, t_sent = stream("/stream?first_ms=120&gap_ms=40")
    assert outcome.ok
    assert outcome.prediction == '"7"'
    llm = outcome.llm
    assert llm is not None
    assert llm.ttft_ms is not None
    assert llm.itl_mean_ms is not None
    assert llm.itl_max_ms is not None
    sent = SENT["/stream"]
    # the client's clock at each read, against the server's own send times: a few milliseconds on loopback
    assert abs((t_sent + llm.ttft_ms / 1000) - sent[0]) < 0.01
    assert llm.ttft_ms >= 120
    assert llm.itl_mean_ms == pytest.approx((sent[-1] - sent[0]) / 4 * 1000, abs=5)
    assert 40 <= llm.itl_max_ms < 60
    assert llm.output_tokens == 5  # from the usage chunk
    assert llm.tpot_ms is not None
    assert llm.tpot_ms >= 40
    assert (llm.finish_reason, llm.reply) == ("stop", "The digit is 7.")
    assert outcome.usage == (9, 5)


@pytest.mark.parametrize(
    ("path", "reason", "tokens"),
    [("/length", "length", 2), ("/empty", "empty", 0), ("/no-end", "no_end", 5)],
)
def test_cut_short_replies_are_an_outcome_of_their_own(
    stream: Callable[..., tuple[Outcome, float]], path: str, reason: str, tokens: int
) -> None:
    outcome, _ = stream(path)
    assert (outcome.ok, outcome.error_kind, outcome.prediction) == (False, "cut_short", "")
    assert outcome.error.startswith(f"cut short ({reason}): ")
    assert outcome.llm is not None
    assert outcome.llm.output_tokens == tokens


def test_a_broken_or_stalled_stream_is_a_transport_failure_with_what_came(
    stream: Callable[..., tuple[Outcome, float]],
) -> None:
    broken, _ = stream("/broken")
    assert (broken.ok, broken.error_kind) == (False, "connection")
    assert "the stream broke after 2 text events" in broken.error
    assert broken.llm is not None
    assert broken.llm.reply == "The digit"
    stalled, _ = stream("/stall", timeout_s=0.5)
    assert (stalled.ok, stalled.error_kind) == (False, "timeout")
    assert "the stream stalled after 1 text events" in stalled.error


def test_a_reply_that_is_not_a_stream_is_read_whole(stream: Callable[..., tuple[Outcome, float]]) -> None:
    whole, _ = stream("/json")
    assert whole.ok
    assert whole.prediction == '"7"'
    assert whole.llm is not None
    assert (whole.llm.ttft_ms, whole.llm.output_tokens, whole.llm.finish_reason) == (
        None,
        5,
        "stop",
    )
    busy, _ = stream("/busy")
    assert (busy.ok, busy.error_kind, busy.error) == (False, "http", 'HTTP 503: {"error": {"message": "overloaded"}}')


def test_generic_sse_takes_its_prediction_from_the_last_event(server: str) -> None:
    generic = GenericProtocol(prediction="usage.completion_tokens", sse=True, token_path="choices[0].delta.content")
    with EndpointClient(server + "/stream?first_ms=30", method="POST", headers=HEADERS, timeout_s=5) as client:
        outcome = interpret_stream(generic, client.send_stream(b"{}"))
    assert outcome.ok
    assert outcome.prediction == "5"
    assert outcome.llm is not None
    assert outcome.llm.reply == "The digit is 7."
    assert outcome.llm.ttft_ms is not None
    assert outcome.llm.ttft_ms >= 30
