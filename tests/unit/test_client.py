"""loadgrade.client.EndpointClient against a real misbehaving HTTP server on 127.0.0.1 (tests/support)."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator

import pytest
import trustme

from loadgrade.client import EndpointClient, Exchange
from loadgrade.protocols import FlaskPredictProtocol
from loadgrade.responses import Outcome, interpret_response
from tests.support.fault_server import fault_server, refused_url

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with fault_server() as url:
        yield url


def body(*features: float) -> bytes:
    return json.dumps({"input_data": [list(features)]}).encode()


@pytest.fixture
def client() -> Iterator[Callable[..., EndpointClient]]:
    """Opens POST clients with JSON headers; closes them all after the test."""
    opened: list[EndpointClient] = []

    def open_client(url: str, *, timeout_s: float = 5.0, verify_tls: bool = True) -> EndpointClient:
        opened.append(EndpointClient(url, method="POST", headers=JSON, timeout_s=timeout_s, verify_tls=verify_tls))
        return opened[-1]

    yield open_client
    for endpoint in opened:
        endpoint.close()


def outcome(exchange: Exchange) -> Outcome:
    return interpret_response(
        FlaskPredictProtocol(),
        status_code=exchange.status_code,
        content=exchange.content,
        exception=exchange.exception,
    )


def test_replies_arrive_in_order_over_one_keep_alive_connection(
    server: str, client: Callable[..., EndpointClient]
) -> None:
    ok, echo = client(f"{server}/ok"), client(f"{server}/echo")
    before = time.time()
    exchanges = [ok.send(body(i, 1)) for i in range(5)]
    assert [json.loads(e.content or b"") for e in exchanges] == [{"output_data": [(i + 1) % 10]} for i in range(5)]
    assert all(e.status_code == 200 and e.exception is None for e in exchanges)
    assert all(before <= e.start_time <= time.time() and e.response_time_ms > 0 for e in exchanges)
    ports = {json.loads(echo.send(body(0)).content or b"")["request"]["client_port"] for _ in range(5)}
    assert len(ports) == 1


def test_sends_the_method_the_full_path_with_query_and_the_headers(
    server: str, client: Callable[..., EndpointClient]
) -> None:
    with EndpointClient(
        f"{server}/api/v1/models/my%20model/echo?verbose=1",
        method="put",
        headers={**JSON, "Authorization": "Bearer t0ken", "User-Agent": "loadgrade/test"},
        timeout_s=5,
    ) as echo:
        seen = json.loads(echo.send(body(1)).content or b"")["request"]
    assert seen["method"] == "PUT"
    assert seen["path"] == "/api/v1/models/my%20model/echo?verbose=1"
    assert seen["headers"]["Authorization"] == "Bearer t0ken"
    assert seen["headers"]["User-Agent"] == "loadgrade/test"
    assert seen["headers"]["Content-Length"] == str(len(body(1)))


def test_a_compressed_reply_is_decompressed(server: str, client: Callable[..., EndpointClient]) -> None:
    exchange = client(f"{server}/gzip").send(body(2, 5))
    assert exchange.content == b'{"output_data": [7]}'
    assert outcome(exchange).prediction == "7"


def test_a_redirect_is_not_followed_and_becomes_an_http_error(
    server: str, client: Callable[..., EndpointClient]
) -> None:
    exchange = client(f"{server}/redirect").send(body(1))
    assert (exchange.status_code, exchange.exception) == (307, None)
    assert (outcome(exchange).error_kind, outcome(exchange).error) == (
        "http",
        "HTTP 307: a redirect, not followed (use the final URL)",
    )


def test_after_a_time_out_the_next_request_gets_its_own_answer_at_once(
    server: str, client: Callable[..., EndpointClient]
) -> None:
    mixed = client(f"{server}/mixed", timeout_s=0.5)  # feature 4 → /slow (1.5 s), feature 0 → /ok
    late = mixed.send(body(4, 0))
    assert late.status_code == 0
    assert late.content is None
    assert outcome(late).error_kind == "timeout"
    answered = mixed.send(body(0, 6))  # while the server still works on the first: not queued behind it
    assert answered.exception is None
    assert json.loads(answered.content or b"") == {"output_data": [6]}
    assert answered.response_time_ms < 400


def test_a_reply_cut_off_mid_body_leaves_nothing_for_the_next_request(
    server: str, client: Callable[..., EndpointClient]
) -> None:
    """The head arrived and the body stalled past the time-out: that connection must not carry the next request,
    or the rest of the old body would be read as the start of the next reply."""
    stalled = client(f"{server}/stall-body-once", timeout_s=0.5)
    cut = stalled.send(body(2, 1))
    assert cut.status_code == 200
    assert outcome(cut).error_kind == "timeout"
    answered = stalled.send(body(3, 4))  # at once, before the rest of the first body arrives
    assert answered.exception is None
    assert json.loads(answered.content or b"") == {"output_data": [7]}


@pytest.mark.parametrize("path", ["/reset", None])
def test_a_reset_or_refused_connection_is_a_failed_exchange_not_an_exception(
    server: str, path: str | None, client: Callable[..., EndpointClient]
) -> None:
    exchange = client(f"{server}{path}" if path else f"{refused_url()}/ok").send(body(1))
    assert exchange.status_code == 0
    assert exchange.content is None
    assert exchange.exception is not None
    assert outcome(exchange).error_kind == "connection"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[str]:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with fault_server(tls=context) as url:
        yield url


def test_tls_with_verification_off_talks_to_a_self_signed_endpoint(
    tls_server: str, client: Callable[..., EndpointClient]
) -> None:
    exchange = client(f"{tls_server}/ok", verify_tls=False).send(body(4, 4))
    assert json.loads(exchange.content or b"") == {"output_data": [8]}


def test_tls_with_verification_on_refuses_an_untrusted_certificate(
    tls_server: str, client: Callable[..., EndpointClient]
) -> None:
    exchange = client(f"{tls_server}/ok", verify_tls=True).send(body(4, 4))
    assert exchange.status_code == 0
    assert "CERTIFICATE_VERIFY_FAILED" in str(exchange.exception)
    assert outcome(exchange).error_kind == "connection"
