"""Streamed replies (server-sent events): read each chunk as it arrives and time it on the client's clock.

An LLM server streams its answer as SSE events (``data: {...}`` lines ending with a blank line, ``data: [DONE]``
last). Token latencies are only true if each event is timed when its bytes are read from the socket, not when the
stream has ended: :func:`read_events` reads whatever the socket has, parses the events it completes and stamps
them with the time of that read. Events that arrive in one TCP read share its time, as they would for any client.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from geventhttpclient.response import HTTPConnectionClosed

__all__ = ["SSEParser", "StreamExchange", "read_events"]

_READ_SIZE = 64 * 1024


class SSEParser:
    """An incremental parser of ``text/event-stream``: feed bytes, get the ``data`` of each completed event.

    Only ``data`` fields matter here (several ``data`` lines join with a newline); ``event``, ``id``, ``retry`` and
    comments are skipped. Lines may end with LF or CRLF.

    >>> parser = SSEParser()
    >>> parser.feed(b'data: {"a": 1}\\n\\ndata: [DO'), parser.feed(b'NE]\\r\\n\\r\\n: ping\\n\\n')
    ([b'{"a": 1}'], [b'[DONE]'])
    >>> parser.feed(b"data: tail"), parser.close()
    ([], [b'tail'])
    """

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._pending + chunk).split(b"\n") if self._pending else chunk.split(b"\n")
        self._pending = lines.pop()
        events: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        return events

    def close(self) -> list[bytes]:
        """What the stream left unfinished: an event whose blank line never came (kept, leniently)."""
        events = self.feed(b"\n\n") if self._pending or self._data else []
        self._pending = b""
        return events


class StreamExchange(NamedTuple):
    """One streamed request and what came back.

    ``events`` are ``(ms after the send, data)`` for each SSE event, in order; ``content`` holds the whole body
    instead when the reply was not a stream (an error status, or a server that ignored ``stream``).
    """

    start_time: float  # epoch seconds, when the request was sent
    response_time_ms: float  # from the send to the end of the stream (or to the failure)
    status_code: int
    events: list[tuple[float, bytes]]
    content: bytes | None
    exception: BaseException | None
    response_bytes: int


def _is_event_stream(response: Any) -> bool:
    kind = response.get("content-type") or ""
    if isinstance(kind, list):
        kind = kind[-1]
    return str(kind).split(";")[0].strip().lower() == "text/event-stream"


def read_events(response: Any, *, start_time: float, started: float) -> StreamExchange:
    """Read a geventhttpclient response to its end, timing each SSE event when its bytes are read.

    geventhttpclient's own ``read(n)`` waits until ``n`` bytes have come, so the body buffer and socket are read
    directly: whatever one ``recv`` returns is parsed at once. A socket time-out or reset mid-stream is returned as
    the ``exception`` with the events read so far.
    """
    status = response.status_code
    if not (200 <= status < 300) or not _is_event_stream(response):
        try:
            content = bytes(response.read())
        except Exception as exc:
            return StreamExchange(start_time, _since(started), status, [], None, exc, 0)
        return StreamExchange(start_time, _since(started), status, [], content, None, len(content))
    parser = SSEParser()
    events: list[tuple[float, bytes]] = []
    size = 0
    buffer = response._body_buffer  # bytes parsed with the headers, then each read's body bytes
    try:
        while True:
            if buffer:
                data = bytes(buffer)
                del buffer[:]
                size += len(data)
                at = _since(started)
                events.extend((at, event) for event in parser.feed(data))
            if response.message_complete:
                break
            sock = response._sock
            if sock is None:
                raise HTTPConnectionClosed("connection closed mid-stream")
            received = sock.recv(_READ_SIZE)
            response.feed(received)  # an empty read ends a close-delimited body, or fails a chunked one
            if not received and not response.message_complete and not buffer:
                raise HTTPConnectionClosed("connection closed mid-stream")
    except Exception as exc:  # timed out, reset, or a body cut off: what was read so far, and why it stopped
        response.release()
        return StreamExchange(start_time, _since(started), status, events, None, exc, size)
    at = _since(started)
    events.extend((at, event) for event in parser.close())
    return StreamExchange(start_time, at, status, events, None, None, size)


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
