"""A real HTTP/1.1 server on 127.0.0.1 that streams OpenAI-style chat replies, well and badly, for client tests.

Each path is one behaviour; the query sets the pace: ``first_ms`` before the first token, ``gap_ms`` between
tokens. The server writes its own send time of every token into ``SENT`` (path -> list of epoch seconds), so tests
can check the client's timing against it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SENT: dict[str, list[float]] = {}
TOKENS = ["The", " digit", " is", " 7", "."]


def _chunk(delta: dict[str, str] | None = None, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    event = {"object": "chat.completion.chunk", "choices": [choice]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = urlsplit(self.path)
        query = {k: float(v[0]) for k, v in parse_qs(url.query).items()}
        first, gap = query.get("first_ms", 20) / 1000, query.get("gap_ms", 10) / 1000
        path = url.path
        if path == "/busy":
            body = b'{"error": {"message": "overloaded"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/json":
            body = json.dumps(
                {
                    "choices": [
                        {"message": {"role": "assistant", "content": "The digit is 7."}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 5},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = SENT.setdefault(path, [])
        tokens = {"/length": TOKENS[:2], "/empty": [], "/broken": TOKENS[:2], "/stall": TOKENS[:1]}.get(path, TOKENS)
        self._write(_chunk({"role": "assistant", "content": ""}))
        time.sleep(first)
        for position, token in enumerate(tokens):
            if position:
                time.sleep(gap)
            sent.append(time.time())
            self._write(_chunk({"content": token}))
        if path == "/broken":
            self.close_connection = True
            return  # no terminal chunk: the body is cut off
        if path == "/stall":
            time.sleep(2.0)
            self.close_connection = True
            return
        if path != "/no-end":
            self._write(_chunk(finish="length" if path == "/length" else "stop"))
            if path == "/stream":
                usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": len(tokens)}}
                self._write(b"data: " + json.dumps(usage).encode() + b"\n\n")
            self._write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@contextlib.contextmanager
def sse_server() -> Iterator[str]:
    """Serve on a free port of 127.0.0.1 in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
