"""A fast streaming LLM endpoint for benchmarks: OpenAI chat/completions replies streamed at a fixed pace.

Every ``POST /v1/chat/completions`` (or ``/v1/completions``) with ``"stream": true`` gets ``--tokens`` SSE chunks,
the first ``--ttft-ms`` after the request arrived and then one every ``--interval-ms`` (absolute deadlines, so the
pace does not drift), a final chunk with ``finish_reason: "stop"``, a usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``. Without ``stream`` the whole reply comes at once.

Each token's text is the server's own clock at the moment the chunk was handed to the socket,
``f"{time.time():.6f} "``, and the first one is preceded by ``"@<arrival time> "``, when the request's last byte
was read. So a client that keeps the reply text carries, per request, the server's exact send times with it: the
benchmark compares the client's TTFT and inter-token gaps with them without joining two logs, and a request that
never reached the server, or a chunk that came late, is visible in the reply itself.

Raw asyncio protocol (uvloop when installed), HTTP/1.1 keep-alive with chunked transfer, no framework in the
per-chunk path: a timer per stream, one f-string and one ``write``. ``GET /stats`` returns the server's own figures
since start (streams, chunks, most streams open at once, how late chunks left against their deadline).

    python bench/sse_server.py --port 0 [--tokens 64] [--interval-ms 20] [--ttft-ms 20] [--ttft-jitter-ms 0]
    # prints "LISTENING http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

MODEL = "bench-sse"

HEAD_STREAM = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk of the body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _json_reply(status: str, body: bytes) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass
class Config:
    tokens: int
    interval_s: float
    ttft_s: float
    ttft_jitter_s: float = 0.0  # each request's TTFT gets a uniform extra delay up to this (a queue's varying wait)


@dataclass
class Stats:
    """The server's own figures: how many streams it held, and how late it sent against its deadlines."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    streams: int = 0
    streams_done: int = 0
    chunks: int = 0
    open_now: int = 0
    open_max: int = 0
    lateness_ms: list[int] = field(default_factory=lambda: [0] * 64)  # histogram, 0.25 ms bins, the last 16 ms+

    def late(self, seconds: float) -> None:
        index = int(seconds * 4000)
        self.lateness_ms[index if 0 <= index < 63 else (0 if index < 0 else 63)] += 1

    def as_json(self) -> bytes:
        total = sum(self.lateness_ms)

        def quantile(q: float) -> float | None:
            if not total:
                return None
            seen = 0
            for index, count in enumerate(self.lateness_ms):
                seen += count
                if seen >= q * total:
                    return (index + 1) / 4  # upper edge of the bin, ms
            return None

        return json.dumps(
            {
                "seconds": round(time.time() - self.started, 3),
                "requests": self.requests,
                "streams": self.streams,
                "streams_done": self.streams_done,
                "chunks": self.chunks,
                "open_now": self.open_now,
                "open_max": self.open_max,
                "late_p50_ms": quantile(0.5),
                "late_p99_ms": quantile(0.99),
                "late_over_16ms": self.lateness_ms[63],
                "late_histogram": self.lateness_ms,
            }
        ).encode()


class StreamingReply(asyncio.Protocol):
    """One client connection: requests in order, one streamed reply at a time."""

    def __init__(self, config: Config, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.buffer = b""
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.busy = False
            self.stats.open_now -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        """Answer the next complete request in the buffer, if any (a client waits for the stream's end anyway)."""
        while not self.busy and self.transport is not None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            lowered = head.lower()
            length = 0
            marker = lowered.find(b"content-length:")
            if marker >= 0:
                length = int(lowered[marker + 15 :].split(b"\r\n", 1)[0])
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body = self.buffer[head_end + 4 : end]
            self.buffer = self.buffer[end:]
            self._answer(head.split(b"\r\n", 1)[0], body, time.time())

    def _answer(self, request_line: bytes, body: bytes, arrived: float) -> None:
        assert self.transport is not None
        self.stats.requests += 1
        method, _, rest = request_line.partition(b" ")
        path = rest.partition(b" ")[0].split(b"?", 1)[0]
        if method == b"GET":
            if path == b"/stats":
                self.transport.write(_json_reply("200 OK", self.stats.as_json()))
            elif path in (b"/v1/models", b"/models"):
                models = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
                self.transport.write(_json_reply("200 OK", json.dumps(models).encode()))
            else:
                self.transport.write(_json_reply("200 OK", b'{"status":"ok"}'))
            return
        chat = path.endswith(b"/chat/completions")
        if not (chat or path.endswith(b"/completions")):
            self.transport.write(_json_reply("404 Not Found", b'{"error":"not found"}'))
            return
        try:
            request = json.loads(body)
        except ValueError:
            self.transport.write(_json_reply("400 Bad Request", b'{"error":"body is not JSON"}'))
            return
        tokens = self.config.tokens
        if isinstance(request.get("max_tokens"), int) and request["max_tokens"] > 0:
            tokens = min(tokens, request["max_tokens"])
        if not request.get("stream"):
            text = f"@{arrived:.6f} " + "".join(f"{time.time():.6f} " for _ in range(tokens))
            choice = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            reply = {"id": "bench", "object": "chat.completion" if chat else "text_completion", "model": MODEL}
            reply.update(choices=[choice], usage=_usage(tokens))
            self.transport.write(_json_reply("200 OK", json.dumps(reply).encode()))
            return
        options = request.get("stream_options") or {}
        Stream(self, chat=chat, tokens=tokens, usage=bool(options.get("include_usage")), arrived=arrived).start()

    def stream_done(self) -> None:
        self.busy = False
        self.stats.open_now -= 1
        self.stats.streams_done += 1
        if self.buffer:
            self._next_request()


def _usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}


class Stream:
    """One streamed reply: a chunk at each deadline, stamped with the time it is written."""

    def __init__(self, owner: StreamingReply, *, chat: bool, tokens: int, usage: bool, arrived: float) -> None:
        self.owner = owner
        self.chat = chat
        self.tokens = tokens
        self.usage = usage
        self.arrived = arrived
        self.sent = 0
        head = b'data: {"id":"bench","object":"%s","model":"bench-sse","choices":[{"index":0,'
        if chat:
            self.prefix = head % b"chat.completion.chunk" + b'"delta":{"content":"'
            self.suffix = b'"},"finish_reason":null}]}\n\n'
        else:
            self.prefix = head % b"text_completion" + b'"text":"'
            self.suffix = b'","finish_reason":null}]}\n\n'

    def start(self) -> None:
        owner = self.owner
        owner.busy = True
        stats = owner.stats
        stats.streams += 1
        stats.open_now += 1
        stats.open_max = max(stats.open_max, stats.open_now)
        assert owner.transport is not None
        head = HEAD_STREAM
        if self.chat:  # the role comes first and alone, as OpenAI's own streams do
            role = b'data: {"id":"bench","object":"chat.completion.chunk","model":"bench-sse","choices":[{"index":0,'
            head += _chunk(role + b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n')
        owner.transport.write(head)
        # deadlines on the loop's clock, which is what call_at schedules against
        ttft = owner.config.ttft_s + random.random() * owner.config.ttft_jitter_s
        self.origin = owner.loop.time() + ttft
        self.wall_origin = time.time() + ttft
        owner.loop.call_at(self.origin, self.send)

    def send(self) -> None:
        owner = self.owner
        transport = owner.transport
        if transport is None or transport.is_closing():
            return
        now = time.time()
        stats = owner.stats
        stats.late(now - self.wall_origin - self.sent * owner.config.interval_s)
        text = f"@{self.arrived:.6f} {now:.6f} " if self.sent == 0 else f"{now:.6f} "
        transport.write(_chunk(self.prefix + text.encode() + self.suffix))
        stats.chunks += 1
        self.sent += 1
        if self.sent < self.tokens:
            owner.loop.call_at(self.origin + self.sent * owner.config.interval_s, self.send)
            return
        end = b'data: {"id":"bench","model":"bench-sse","choices":[{"index":0,'
        end += b'"delta":{},"finish_reason":"stop"}]}\n\n' if self.chat else b'"text":"","finish_reason":"stop"}]}\n\n'
        tail = _chunk(end)
        if self.usage:
            usage = {"id": "bench", "model": MODEL, "choices": [], "usage": _usage(self.tokens)}
            tail += _chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
        tail += _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        transport.write(tail)
        owner.stream_done()


async def serve(host: str, port: int, config: Config) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(lambda: StreamingReply(config, stats), host, port, backlog=4096)
    print(f"LISTENING http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per streamed reply (default 64)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="gap between tokens (default 20)")
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="request arrival to first token (default 20)")
    parser.add_argument("--ttft-jitter-ms", type=float, default=0.0, help="uniform extra TTFT up to this (default 0)")
    args = parser.parse_args()
    config = Config(args.tokens, args.interval_ms / 1000, args.ttft_ms / 1000, args.ttft_jitter_ms / 1000)
    try:
        import uvloop  # optional: a cheaper event loop per chunk
    except ImportError:
        asyncio.run(serve(args.host, args.port, config))
    else:
        uvloop.run(serve(args.host, args.port, config))


if __name__ == "__main__":
    main()
