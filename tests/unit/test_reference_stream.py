"""The reference server's streamed OpenAI replies over real sockets: SSE format, pacing under load, cut-short kinds."""

import contextlib
import dataclasses
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from loadgrade.servers import reference, wire
from loadgrade.servers.models import ModelSet, train_models
from loadgrade.servers.reference import ServerConfig, running_server

_INSTANT = ServerConfig(ttft_ms=0, ttft_per_inflight_ms=0, tpot_ms=0, tpot_per_inflight_ms=0, cut_above=None)
#: Server configurations under test, by name
_CONFIGS = {
    # no pacing and no cuts: the wire format alone
    "format": _INSTANT,
    # pacing dominated by the in-flight count, so concurrency shows plainly against timer noise
    "paced": ServerConfig(ttft_ms=10, ttft_per_inflight_ms=40, tpot_ms=2, tpot_per_inflight_ms=20, cut_above=None),
    # slow tokens: a stream lasts long enough to be seen in flight
    "slow": ServerConfig(ttft_ms=0, ttft_per_inflight_ms=0, tpot_ms=150, tpot_per_inflight_ms=0, cut_above=None),
    # a non-streamed request held for a while makes every stream sent meanwhile the second in flight: cut short
    "cut": dataclasses.replace(_INSTANT, cut_above=1, service_time_ms=400),
}


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    return train_models(seed=0)


def _options(config: ServerConfig) -> list[str]:
    """The command line that starts the reference server with ``config``'s streaming settings."""
    return [
        *("--ttft-ms", str(config.ttft_ms), "--ttft-per-inflight-ms", str(config.ttft_per_inflight_ms)),
        *("--tpot-ms", str(config.tpot_ms), "--tpot-per-inflight-ms", str(config.tpot_per_inflight_ms)),
        *("--cut-above", str(config.cut_above or 0), "--service-time-ms", str(config.service_time_ms)),
    ]


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    """A real server process per configuration (a thread would share gevent's loop once Locust is imported)."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(running_server(*_options(config))) for name, config in _CONFIGS.items()}


@dataclass
class Stream:
    """A reply as read: its status, headers, SSE events (JSON objects, or "[DONE]") and their arrival times."""

    status: int
    content_type: str
    events: list[Any] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    body: Any = None

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [event for event in self.events if isinstance(event, dict)]

    @property
    def pieces(self) -> list[str]:
        """The text of every chunk that carries some (chat delta content or completion text)."""
        found = []
        for chunk in self.chunks:
            for choice in chunk["choices"]:
                piece = choice["delta"].get("content") if "delta" in choice else choice["text"]
                if piece:
                    found.append(piece)
        return found

    @property
    def finish_reasons(self) -> list[str]:
        return [c["finish_reason"] for chunk in self.chunks for c in chunk["choices"] if c["finish_reason"]]

    def ttft_ms(self) -> float:
        """Send to the first event carrying text, as loadgrade's client measures it."""
        return next(t for t, e in zip(self.times_ms, self.events, strict=True) if isinstance(e, dict) and _text(e))


def _text(chunk: dict[str, Any]) -> bool:
    return any(c.get("delta", {}).get("content") or c.get("text") for c in chunk["choices"])


def _document(model_set: ModelSet, *, chat: bool, **fields: Any) -> dict[str, Any]:
    row = json.dumps(model_set.digits.X_test[0].tolist())
    if chat:
        return {"model": "digits", "messages": [{"role": "user", "content": f"Which digit is {row}?"}], **fields}
    return {"model": "digits", "prompt": f"Pixels {row}. The digit is", **fields}


def _path(chat: bool) -> str:
    return "/v1/chat/completions" if chat else "/v1/completions"


def _connect(url: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)


def _post(url: str, path: str, document: object, *, stop_after: int | None = None) -> Stream:
    """POST a JSON document; read an event stream event by event (at most ``stop_after`` events, then hang up)."""
    connection = _connect(url)
    try:
        start = time.perf_counter()
        connection.request("POST", path, json.dumps(document), {"Content-Type": "application/json"})
        response = connection.getresponse()
        reply = Stream(response.status, response.getheader("Content-Type", ""))
        if not reply.content_type.startswith("text/event-stream"):
            reply.body = json.loads(response.read())
            return reply
        while stop_after is None or len(reply.events) < stop_after:
            line = response.readline()  # bounded by the connection's time-out
            if not line:
                break
            if line.startswith(b"data: "):
                reply.times_ms.append((time.perf_counter() - start) * 1000)
                data = line[len(b"data: ") :].strip()
                reply.events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
            else:
                assert line == b"\n", line  # an event is one data line and a blank line
        return reply
    finally:
        connection.close()


def _get(url: str, path: str) -> Any:
    connection = _connect(url)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def _wait_for_in_flight(url: str, expected: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := _get(url, "/stats")["in_flight"]) != expected:
        assert time.monotonic() < deadline, f"in_flight stayed {seen}, expected {expected}"
        time.sleep(0.01)


def _expected_text(model_set: ModelSet) -> str:
    return f"The digit is {model_set.digits.primary.predict(model_set.digits.X_test[:1])[0]}."


# ------------------------------------------------------------------------------------------------ the format


def test_chat_stream_is_openai_sse(urls: dict[str, str], model_set: ModelSet) -> None:
    document = _document(model_set, chat=True, stream=True, stream_options={"include_usage": True})
    reply = _post(urls["format"], "/v1/chat/completions", document)
    assert reply.status == 200
    assert reply.content_type.startswith("text/event-stream")
    first, *tokens, finish, usage = reply.chunks
    assert reply.events[-1] == "[DONE]"
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert [t["choices"][0]["delta"] for t in tokens] == [
        {"content": p} for p in ["The", " digit", " is", reply.pieces[-1]]
    ]
    assert "".join(reply.pieces) == _expected_text(model_set)
    assert reply.pieces[-1][1].isdigit()  # the answer is the last token
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 4
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 4
    # one id for the whole stream, and "usage": null on every chunk but the last, as OpenAI sends them
    assert {chunk["id"] for chunk in reply.chunks} == {first["id"]}
    assert all(chunk["usage"] is None for chunk in reply.chunks[:-1])


def test_completion_stream_is_openai_sse(urls: dict[str, str], model_set: ModelSet) -> None:
    document = _document(model_set, chat=False, stream=True, stream_options={"include_usage": True})
    reply = _post(urls["format"], "/v1/completions", document)
    *tokens, finish, usage = reply.chunks
    assert reply.events[-1] == "[DONE]"
    assert {chunk["object"] for chunk in reply.chunks} == {"text_completion"}
    assert [t["choices"][0]["text"] for t in tokens] == [" The", " digit", " is", reply.pieces[-1]]
    assert "".join(reply.pieces) == " " + _expected_text(model_set)
    assert finish["choices"] == [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]
    assert (usage["choices"], usage["usage"]["completion_tokens"]) == ([], 4)


@pytest.mark.parametrize("chat", [True, False])
def test_usage_chunk_only_when_asked(urls: dict[str, str], model_set: ModelSet, chat: bool) -> None:
    for options in ({}, {"stream_options": {"include_usage": False}}):
        reply = _post(urls["format"], _path(chat), _document(model_set, chat=chat, stream=True, **options))
        assert reply.events[-1] == "[DONE]"
        assert all(chunk["choices"] for chunk in reply.chunks)
        assert not any("usage" in chunk for chunk in reply.chunks)
        assert reply.finish_reasons == ["stop"]


@pytest.mark.parametrize("chat", [True, False])
def test_max_tokens_stops_the_reply_with_length(urls: dict[str, str], model_set: ModelSet, chat: bool) -> None:
    url, path = urls["format"], _path(chat)
    options = {"stream_options": {"include_usage": True}}
    short = _post(url, path, _document(model_set, chat=chat, stream=True, max_tokens=2, **options))
    assert [p.strip() for p in short.pieces] == ["The", "digit"]
    assert short.finish_reasons == ["length"]
    assert short.chunks[-1]["usage"]["completion_tokens"] == 2
    assert short.events[-1] == "[DONE]"
    exact = _post(url, path, _document(model_set, chat=chat, stream=True, max_tokens=4, **options))
    assert (len(exact.pieces), exact.finish_reasons) == (4, ["stop"])
    # not streamed: the same cut, the same reasons
    whole = _post(url, path, _document(model_set, chat=chat))
    cut = _post(url, path, _document(model_set, chat=chat, max_tokens=2))
    assert whole.body["choices"][0]["finish_reason"] == "stop"
    assert cut.body["choices"][0]["finish_reason"] == "length"
    text = cut.body["choices"][0]["message"]["content"] if chat else cut.body["choices"][0]["text"]
    assert text.split() == ["The", "digit"]
    assert cut.body["usage"]["completion_tokens"] == 2


def test_chat_honours_max_completion_tokens(urls: dict[str, str], model_set: ModelSet) -> None:
    reply = _post(urls["format"], "/v1/chat/completions", _document(model_set, chat=True, max_completion_tokens=3))
    assert reply.body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "The digit is"},
        "finish_reason": "length",
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stream": "yes"}, 'stream must be true or false; got "yes"'),
        ({"stream_options": {"include_usage": True}}, "stream_options is only allowed when stream is true"),
        ({"stream": True, "stream_options": [1]}, "stream_options must be an object"),
        (
            {"stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage must be true or false; got 1",
        ),
        ({"max_tokens": 0}, "max_tokens must be a whole number of at least 1; got 0"),
        ({"stream": True, "max_tokens": 2.5}, "max_tokens must be a whole number of at least 1; got 2.5"),
    ],
)
def test_bad_stream_options_answer_400(
    urls: dict[str, str], model_set: ModelSet, fields: dict[str, Any], message: str
) -> None:
    reply = _post(urls["format"], "/v1/chat/completions", _document(model_set, chat=True, **fields))
    assert reply.status == 400
    assert reply.body["error"]["message"].startswith(message)


def test_a_stream_with_a_bad_prompt_answers_400_not_a_stream(urls: dict[str, str]) -> None:
    document = {"model": "digits", "stream": True, "messages": [{"role": "user", "content": "no pixels here"}]}
    reply = _post(urls["format"], "/v1/chat/completions", document)
    assert reply.status == 400
    assert "the prompt holds no list of 64 numbers" in reply.body["error"]["message"]
    _wait_for_in_flight(urls["format"], 0)


def test_stats_show_the_stream_settings(urls: dict[str, str]) -> None:
    stats = _get(urls["format"], "/stats")
    assert stats["config"] == {
        "seed": 0,
        "service_time_ms": 0.0,
        "degrade_above": None,
        "shed_above": None,
        "shed_mode": "503",
    }
    assert stats["streaming"]["config"] == {
        "ttft_ms": 0.0,
        "ttft_per_inflight_ms": 0.0,
        "tpot_ms": 0.0,
        "tpot_per_inflight_ms": 0.0,
        "cut_above": None,
    }
    assert stats["streaming"]["streams"] >= 1


# ------------------------------------------------------------------------------------------------ the pacing


def _concurrent_streams(n: int, url: str, document: dict[str, Any]) -> list[Stream]:
    barrier = threading.Barrier(n)
    replies: list[Stream | None] = [None] * n

    def send(i: int) -> None:
        barrier.wait(timeout=10)
        replies[i] = _post(url, "/v1/chat/completions", document)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert all(reply is not None for reply in replies), "a stream did not complete"
    return [reply for reply in replies if reply is not None]


def _tpot_ms(reply: Stream) -> float:
    times = [t for t, e in zip(reply.times_ms, reply.events, strict=True) if isinstance(e, dict) and _text(e)]
    return (times[-1] - times[0]) / (len(times) - 1)


def test_ttft_and_tpot_grow_with_streams_in_flight(urls: dict[str, str], model_set: ModelSet) -> None:
    url, document = urls["paced"], _document(model_set, chat=True, stream=True)
    alone = _post(url, "/v1/chat/completions", document)
    # 10 ms to the first token and 2 ms a token with nothing else in flight (the bounds leave room for a busy machine)
    assert alone.ttft_ms() < 100
    assert _tpot_ms(alone) < 40
    replies = _concurrent_streams(8, url, document)
    assert all(reply.finish_reasons == ["stop"] and len(reply.pieces) == 4 for reply in replies)
    # the k-th of 8 arrivals waits 10 + 40 (k - 1) ms: up to 290 ms
    ttfts = sorted(reply.ttft_ms() for reply in replies)
    assert ttfts[-1] > 200
    assert ttfts[-1] - ttfts[0] > 150
    # while 8 are in flight a token takes 2 + 20 * 7 = 142 ms; the first streams to start see most of the others
    assert max(_tpot_ms(reply) for reply in replies) > 60
    _wait_for_in_flight(url, 0)


def test_a_stream_is_in_flight_until_its_end(urls: dict[str, str], model_set: ModelSet) -> None:
    url = urls["slow"]
    _wait_for_in_flight(url, 0)
    document = _document(model_set, chat=True, stream=True)
    connection = _connect(url)
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(document), {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.readline().startswith(b"data: ")  # the role chunk, with the first token
        # the handler returned long ago; three more tokens are 150 ms apart
        assert _get(url, "/stats")["in_flight"] == 1
        rest = response.read()
    finally:
        connection.close()
    assert rest.endswith(b"data: [DONE]\n\n")
    _wait_for_in_flight(url, 0)


def test_a_stream_hung_up_on_is_no_longer_in_flight(urls: dict[str, str], model_set: ModelSet) -> None:
    url = urls["slow"]
    _wait_for_in_flight(url, 0)
    # hang up after the first event: the server notices, or its stream runs out within 3 paces; either way it ends
    half = _post(url, "/v1/chat/completions", _document(model_set, chat=True, stream=True), stop_after=1)
    assert len(half.events) == 1
    _wait_for_in_flight(url, 0)


# ---------------------------------------------------------------------------------------------- the cuts


@contextlib.contextmanager
def _held(url: str, model_set: ModelSet) -> Iterator[None]:
    """Keep one non-streamed request in flight (the server's service time) for the duration of the block."""
    holder = threading.Thread(target=_post, args=(url, "/v1/chat/completions", _document(model_set, chat=True)))
    holder.start()
    try:
        _wait_for_in_flight(url, 1)
        yield
    finally:
        holder.join(timeout=10)


def _cut_kind(reply: Stream) -> str:
    if reply.events[-1] != "[DONE]" and not reply.finish_reasons:
        return "no_end"
    if not reply.pieces:
        return "empty"
    return reply.finish_reasons[0]


def test_streams_above_cut_above_are_cut_short_in_turn(urls: dict[str, str], model_set: ModelSet) -> None:
    url = urls["cut"]
    options = {"stream": True, "stream_options": {"include_usage": True}}
    before = _get(url, "/stats")["streaming"]["cut_short"]
    with _held(url, model_set):
        chat = [_post(url, "/v1/chat/completions", _document(model_set, chat=True, **options)) for _ in range(3)]
        completion = [_post(url, "/v1/completions", _document(model_set, chat=False, **options)) for _ in range(3)]
    after = _get(url, "/stats")["streaming"]["cut_short"]
    for replies in (chat, completion):
        assert [_cut_kind(reply) for reply in replies] == list(wire.CUT_KINDS)
        length, empty, no_end = replies
        # "length": two tokens, before the answer
        assert [p.strip() for p in length.pieces] == ["The", "digit"]
        assert length.finish_reasons == ["length"]
        assert length.chunks[-1]["usage"]["completion_tokens"] == 2
        assert length.events[-1] == "[DONE]"
        # "empty": no text at all, yet a clean end
        assert empty.pieces == []
        assert empty.finish_reasons == ["stop"]
        assert empty.chunks[-1]["usage"]["completion_tokens"] == 0
        assert empty.events[-1] == "[DONE]"
        # "no_end": two tokens, then the body ends with neither finish_reason nor [DONE] nor usage
        assert [p.strip() for p in no_end.pieces] == ["The", "digit"]
        assert "[DONE]" not in no_end.events
        assert not any(chunk.get("usage") for chunk in no_end.chunks)
    assert {kind: after[kind] - before[kind] for kind in wire.CUT_KINDS} == dict.fromkeys(wire.CUT_KINDS, 2)
    # alone again, a stream is whole
    _wait_for_in_flight(url, 0)
    whole = _post(url, "/v1/chat/completions", _document(model_set, chat=True, **options))
    assert "".join(whole.pieces) == _expected_text(model_set)
    assert (whole.finish_reasons, whole.events[-1]) == (["stop"], "[DONE]")


def test_non_streamed_replies_are_never_cut(urls: dict[str, str], model_set: ModelSet) -> None:
    url = urls["cut"]
    with _held(url, model_set):
        reply = _post(url, "/v1/completions", _document(model_set, chat=False))
    assert reply.body["choices"][0]["text"] == " " + _expected_text(model_set)
    assert reply.body["choices"][0]["finish_reason"] == "stop"


# ------------------------------------------------------------------------------------------------ pure parts


def test_command_line_sets_the_stream_settings(capsys: pytest.CaptureFixture[str]) -> None:
    parser = reference._parser("serve")
    assert reference._config(parser.parse_args([])) == ServerConfig()
    options = {
        "--ttft-ms": 1,
        "--ttft-per-inflight-ms": 2,
        "--tpot-ms": 3,
        "--tpot-per-inflight-ms": 4,
        "--cut-above": 5,
    }
    given = parser.parse_args([str(part) for option in options.items() for part in option])
    assert reference._config(given) == ServerConfig(
        ttft_ms=1, ttft_per_inflight_ms=2, tpot_ms=3, tpot_per_inflight_ms=4, cut_above=5
    )
    assert reference._config(parser.parse_args(["--cut-above", "0"])).cut_above is None  # 0 never cuts
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "--cut-above C in-flight count above which streamed replies are cut short; 0 never cuts (default: 12)" in shown
    )
    assert "streaming model" in shown


def test_server_config_validates_the_stream_settings() -> None:
    assert ServerConfig().cut_above == 12
    with pytest.raises(ValueError, match="tpot_per_inflight_ms must be a non-negative number of milliseconds"):
        ServerConfig(tpot_per_inflight_ms=-1)
    with pytest.raises(ValueError, match="cut_above must be a non-negative number of requests or None"):
        ServerConfig(cut_above=-1)


def test_tokens_join_back_into_the_answer_with_the_answer_last(model_set: ModelSet) -> None:
    text = wire.answer_text(model_set.diabetes, 151.5)
    pieces = wire.tokens(text)
    assert "".join(pieces) == text
    assert pieces[-1] == " 151.5."
    assert all("151" not in piece for piece in pieces[: wire.CUT_TOKENS])
