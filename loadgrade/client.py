"""The replay's HTTP client: one keep-alive connection per user, one request at a time, nothing in between.

Locust's FastHttpSession carries a browser-like user agent's kit through every request (URL building, cookies,
redirects, response wrappers, a context manager): on a fast endpoint that is about 40 % of the CPU a FastHttpUser
spends per request (bench/README.md). Replaying a dataset needs none of it, so each user sends through
geventhttpclient's ``HTTPClient`` (the library under FastHttpUser) directly, and the replay reports each request
to Locust's ``request`` event itself. Redirects are not followed: each request is sent once, to the URL the
scenario names.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import gevent.ssl
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed
from geventhttpclient.url import URL

from loadgrade import __version__
from loadgrade.streaming import StreamExchange, read_events

if TYPE_CHECKING:
    from loadgrade.scenario import Scenario

__all__ = ["USER_AGENT", "EndpointClient", "Exchange", "endpoint_client"]

USER_AGENT = f"loadgrade/{__version__}"


class Exchange(NamedTuple):
    """One request and what came back: ``status_code`` is 0 when no response head arrived."""

    start_time: float  # epoch seconds, when the request was sent
    response_time_ms: float  # from the send to the last byte of the body (or to the failure)
    status_code: int
    content: bytes | None
    exception: BaseException | None


class EndpointClient:
    """Sends request bodies to one URL with fixed headers.

    geventhttpclient closes a connection whose reply was not read to its end (a time-out, a reset, a body cut
    off), so a reply that arrives late can never be read as the answer to the next request (tests/unit).
    """

    def __init__(
        self, url: str, *, method: str, headers: Mapping[str, str], timeout_s: float, verify_tls: bool = True
    ) -> None:
        self.url = url
        self.method = method.upper()
        target = URL(url)
        self._uri = target.quoted_uri
        self._headers = dict(headers)
        options: dict[str, Any] = {"connection_timeout": timeout_s, "network_timeout": timeout_s, "concurrency": 1}
        if not verify_tls:  # geventhttpclient's insecure flag alone only skips the host name check
            options.update(insecure=True, ssl_context_factory=_unverified_context)
        self._client = HTTPClient.from_url(target, **options)

    def send(self, body: bytes) -> Exchange:
        """POST (or the scenario's method) one body; never raises for a transport or HTTP failure."""
        start_time = time.time()
        started = time.perf_counter()
        status = 0
        try:
            response = self._request(body)
            status = response.status_code
            content = bytes(response.read())
            elapsed = (time.perf_counter() - started) * 1000
        except Exception as exc:  # refused, reset, timed out, broken mid-reply: a failed exchange, never a crash
            return Exchange(start_time, (time.perf_counter() - started) * 1000, status, None, exc)
        encoding = response.get("content-encoding")
        if encoding:
            content = _decoded(content, encoding)
        return Exchange(start_time, elapsed, status, content, None)

    def _request(self, body: bytes) -> Any:
        """Send once; again on a new connection if the kept-alive one was closed before any byte of a reply.

        Some servers (llama.cpp's, after a streamed reply) close a connection they announced as kept alive; the
        next request on it meets the close before the server read it. geventhttpclient retries that only for
        idempotent methods, so a POST is sent once more here, on a fresh connection: nothing was answered.
        """
        try:
            return self._client.request(self.method, self._uri, body=body, headers=self._headers)
        except HTTPConnectionClosed:
            return self._client.request(self.method, self._uri, body=body, headers=self._headers)

    def send_stream(self, body: bytes) -> StreamExchange:
        """Send one body and read the reply as a stream of server-sent events, each timed as it is read.

        Never raises for a transport or HTTP failure: a stream cut off mid-way keeps the events read before it.
        """
        start_time = time.time()
        started = time.perf_counter()
        try:
            response = self._request(body)
        except Exception as exc:
            return StreamExchange(start_time, (time.perf_counter() - started) * 1000, 0, [], None, exc, 0)
        exchange = read_events(response, start_time=start_time, started=started)
        encoding = response.get("content-encoding")
        if encoding and exchange.content:
            exchange = exchange._replace(content=_decoded(exchange.content, encoding))
        return exchange

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _unverified_context(cafile: str | None = None) -> gevent.ssl.SSLContext:
    """A TLS context that accepts any certificate (``endpoint.verify_tls: false``: self-signed test endpoints)."""
    return gevent.ssl._create_unverified_context()


def _decoded(content: bytes, encoding: str | list[str]) -> bytes:
    """The body without its gzip or deflate ``Content-Encoding`` (no compression is asked for, but a server may
    compress anyway); anything else is left as it came, to be recorded as a reply that is not JSON."""
    name = (encoding if isinstance(encoding, str) else encoding[-1]).strip().lower()
    try:
        if name in ("gzip", "x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if name == "deflate":
            try:
                return zlib.decompress(content)
            except zlib.error:  # raw deflate without the zlib header, as some servers send it
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error:
        pass
    return content


def endpoint_client(scenario: Scenario, *, host: str | None = None) -> EndpointClient:
    """The client each Locust user gets, and the pre-flight's: the same URL, headers, time-out and TLS setting.

    ``host`` is Locust's ``--host`` (or the web UI's), else the scenario's ``endpoint.base_url``.
    """
    base = (host or scenario.endpoint.base_url).rstrip("/")
    return EndpointClient(
        base + scenario.request_path,
        method=scenario.endpoint.method,
        headers={
            "Content-Type": scenario.protocol.content_type,
            "Accept": "text/event-stream" if scenario.protocol.streams else "application/json",
            "User-Agent": USER_AGENT,
            **scenario.endpoint.headers,
        },
        timeout_s=scenario.endpoint.timeout_s,
        verify_tls=scenario.endpoint.verify_tls,
    )
