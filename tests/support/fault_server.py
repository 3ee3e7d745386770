"""A small real HTTP server on 127.0.0.1 that misbehaves on purpose, one way per path.

``POST /ok`` answers ``{"output_data": [sum(input) mod 10]}`` (the flask-predict style), and the other paths
fail in one specific way each, so tests can check that every failure becomes the right kind of error row.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_STALL: dict[str, float] = {}

MIXED = ("/ok", "/status/500", "/nonjson", "/wrongshape", "/slow", "/reset")
"""What ``/mixed`` does for a sample whose first feature is i: ``MIXED[i % 6]``."""
MIXED_ERROR_KIND = {
    "/ok": "",
    "/status/500": "http",
    "/nonjson": "decode",
    "/wrongshape": "extract",
    "/slow": "timeout",
    "/reset": "connection",
}


def expected_prediction(features: list[float]) -> int:
    return int(sum(features)) % 10


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        if path == "/mixed":  # the first feature picks the behaviour, so one run exercises every failure
            behaviour = MIXED[int(json.loads(raw)["input_data"][0][0]) % len(MIXED)]
            path, query = behaviour, "ms=1500" if behaviour == "/slow" else ""
        if path == "/reset":
            # SO_LINGER with a zero timeout makes close() send a TCP RST: a "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if path == "/stall":  # fast, except that everything stalls for 1 s, 3 s after the first request
            first = _STALL.setdefault("first", time.time())
            now = time.time()
            if first + 3 <= now < first + 4:
                time.sleep(first + 4 - now)
            path = "/ok"
        if path.endswith("/echo"):  # what arrived: method, path with query, headers
            sent = {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "client_port": self.client_address[1],
            }
            self._reply(200, json.dumps({"output_data": [0], "request": sent}).encode())
            return
        if path == "/gzip":  # the /ok answer, gzip-compressed although nobody asked for it
            features = json.loads(raw)["input_data"][0]
            body = json.dumps({"output_data": [expected_prediction(features)]}).encode()
            self._reply(200, gzip.compress(body), Content_Encoding="gzip")
            return
        if path == "/stall-body-once":  # the first reply stops half-way through its body for 1 s, later ones don't
            features = json.loads(raw)["input_data"][0]
            body = json.dumps({"output_data": [expected_prediction(features)]}).encode()
            first = "body" not in _STALL
            _STALL["body"] = time.time()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first:
                self.wfile.write(body[:5])
                time.sleep(1.0)
                body = body[5:]
            self.wfile.write(body)
            return
        if path == "/redirect":
            self._reply(307, b"", Location="/ok")
            return
        if path == "/status/500":
            self._reply(500, b'{"error": "internal"}')
        elif path == "/nonjson":
            self._reply(200, b"<html>definitely not json</html>", "text/html")
        elif path == "/wrongshape":
            self._reply(200, b'{"predictions": [1]}')
        elif path in ("/ok", "/slow"):
            if path == "/slow":
                time.sleep(float(query.removeprefix("ms=") or 1000) / 1000)
            features = json.loads(raw)["input_data"][0]
            self._reply(200, json.dumps({"output_data": [expected_prediction(features)]}).encode())
        else:
            self._reply(404, b'{"error": "no such path"}')

    do_PUT = do_POST


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (time-out) breaks the pipe of a late reply: expected here, not worth a trace."""


@contextmanager
def fault_server(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve on a free port of 127.0.0.1 in a thread (over TLS with a server context); yields the base URL."""
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    _STALL.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
