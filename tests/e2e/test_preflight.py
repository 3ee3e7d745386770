"""The pre-flight against real HTTP servers on 127.0.0.1: one clear line for each way an endpoint can be wrong."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from loadgrade.preflight import PreflightResult, preflight
from loadgrade.scenario import Scenario, load_scenario
from loadgrade.servers.reference import running_server
from tests.support.fault_server import fault_server, refused_url
from tests.support.locust_run import ROOT, write_scenario

DIGITS = ROOT / "scenarios" / "digits.yaml"
SKIP = re.escape("; no load was sent (pass --skip-preflight to run anyway)") + "$"


def scenario(tmp_path: Path, base_url: str, *, base: Path = DIGITS, **changes: Any) -> Scenario:
    endpoint = {"base_url": base_url, **changes.pop("endpoint", {})}
    return load_scenario(write_scenario(tmp_path / "s.yaml", base, endpoint=endpoint, **changes))


class _Canned(BaseHTTPRequestHandler):
    """Answers every POST with what the path names, and counts the requests."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []  # one list per server: canned_server makes a subclass

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(self.path)
        if self.path == "/slow":
            time.sleep(1.0)
        body, content_type = {
            "/no-field": (b'{"result": 7, "model": "digits"}', "application/json"),
            "/html": (b"<html><body>Welcome to nginx!</body></html>", "text/html"),
        }.get(self.path, (b'{"output_data": [1]}', "application/json"))
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """The client gave up on /slow (its time-out): the late reply's broken pipe is expected."""


@contextmanager
def canned_server() -> Iterator[tuple[str, list[str]]]:
    """A tiny threaded server on a free port: yields its base URL and the paths it was sent."""
    handler = type("Handler", (_Canned,), {"seen": []})
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def canned() -> Iterator[tuple[str, list[str]]]:
    with canned_server() as served:
        yield served


def assert_failed(result: PreflightResult, kind: str, pattern: str, *, sent: int = 1) -> None:
    assert not result.ok
    assert (result.error_kind, result.sent) == (kind, sent)
    assert "\n" not in result.line
    assert re.match("loadgrade: pre-flight failed: " + pattern + ".*" + SKIP, result.line), result.line


def test_a_good_endpoint_answers_three_samples(tmp_path: Path, reference_server: str) -> None:
    result = preflight(scenario(tmp_path, reference_server))
    assert result.ok, result.line
    assert (result.sent, result.error_kind, result.status_code) == (3, "", 200)
    assert len(result.predictions) == 3
    assert all(re.fullmatch(r"\d", p) for p in result.predictions)
    assert re.fullmatch(
        rf"loadgrade: pre-flight: 3 samples answered by POST {re.escape(reference_server)}/predict "
        r"\(predictions '\d', '\d', '\d'; \d+\.\d ms median\)",
        result.line,
    )


def test_host_overrides_the_base_url_and_samples_is_honoured(tmp_path: Path, reference_server: str) -> None:
    result = preflight(scenario(tmp_path, refused_url()), host=reference_server + "/", samples=1)
    assert result.ok, result.line
    assert result.sent == 1
    assert result.url == f"{reference_server}/predict"
    assert result.line.startswith(f"loadgrade: pre-flight: 1 sample answered by POST {reference_server}/predict ")


def test_a_batching_protocol_sends_one_full_request(tmp_path: Path, reference_server: str) -> None:
    oip = ROOT / "scenarios" / "digits-oip.yaml"
    result = preflight(scenario(tmp_path, reference_server, base=oip, protocol={"batch_size": 4}))
    assert result.ok, result.line
    assert (result.sent, len(result.predictions)) == (4, 4)
    assert re.match(
        r"loadgrade: pre-flight: 4 samples in 1 request answered by POST .*/v2/models/digits/infer ", result.line
    )


def test_a_wrong_path_names_the_status_the_sample_and_the_reply(tmp_path: Path, reference_server: str) -> None:
    result = preflight(scenario(tmp_path, reference_server, endpoint={"path": "/predixt"}))
    assert_failed(
        result,
        "http",
        re.escape(f"POST {reference_server}/predixt answered HTTP 404 for sample 'digits-0000' (reply: {{\"error\":")
        + r".*\): check endpoint\.base_url and endpoint\.path",
    )
    assert result.status_code == 404


def test_nothing_listening_names_the_base_url(tmp_path: Path) -> None:
    url = refused_url()
    result = preflight(scenario(tmp_path, url))
    assert_failed(
        result, "connection", re.escape(f"nothing listens at {url} (connection refused): check endpoint.base_url")
    )
    assert result.status_code == 0


def test_a_connection_broken_off_without_a_reply(tmp_path: Path) -> None:
    with fault_server() as url:
        result = preflight(scenario(tmp_path, url, endpoint={"path": "/reset"}))
    assert_failed(
        result,
        "connection",
        re.escape(f"POST {url}/reset broke off without a reply for sample 'digits-0000' (")
        + r".+\): check endpoint\.base_url \(or --host\), http:// against https://",
    )


def test_a_reply_without_the_prediction_names_the_key_and_shows_the_reply(
    tmp_path: Path, canned: tuple[str, list[str]]
) -> None:
    url, seen = canned
    before = len(seen)
    result = preflight(scenario(tmp_path, url, endpoint={"path": "/no-field"}))
    assert_failed(
        result,
        "extract",
        re.escape(
            f"POST {url}/no-field answered HTTP 200 for sample 'digits-0000' but protocol flask-predict found no "
            "prediction: expected an object with key 'output_data', got an object with keys: result, model "
            '(reply: {"result": 7, "model": "digits"}): check protocol.output_key (\'output_data\')'
        ),
    )
    assert len(seen) == before + 1  # stopped at the first failure


def test_a_reply_that_is_not_json_shows_the_snippet(tmp_path: Path, canned: tuple[str, list[str]]) -> None:
    url, _ = canned
    result = preflight(scenario(tmp_path, url, endpoint={"path": "/html"}))
    assert_failed(
        result,
        "decode",
        re.escape(
            f"POST {url}/html answered HTTP 200 for sample 'digits-0000' but the reply is not JSON "
            "(reply: <html><body>Welcome to nginx!</body></html>): "
            "check endpoint.path and protocol.kind (flask-predict)"
        ),
    )


def test_a_slow_endpoint_names_timeout_s(tmp_path: Path, canned: tuple[str, list[str]]) -> None:
    url, _ = canned
    started = time.perf_counter()
    result = preflight(scenario(tmp_path, url, endpoint={"path": "/slow", "timeout_s": 0.3}))
    assert time.perf_counter() - started < 0.9  # one request, bounded by the time-out
    assert_failed(
        result,
        "timeout",
        re.escape(f"POST {url}/slow did not answer sample 'digits-0000' within endpoint.timeout_s = 0.3 s"),
    )


def test_a_shedding_server_answers_503(tmp_path: Path) -> None:
    with running_server("--shed-above", "0") as url:  # in flight counts the request itself: every request is shed
        result = preflight(scenario(tmp_path, url))
    assert_failed(
        result,
        "http",
        re.escape(f"POST {url}/predict answered HTTP 503 for sample 'digits-0000' (reply: ")
        + re.escape('{"error":"overloaded"})')
        + ": the server sheds or is not ready yet",
    )
    assert result.status_code == 503


def test_an_answer_regex_that_never_matches_stops_the_run(tmp_path: Path, reference_server: str) -> None:
    chat = ROOT / "scenarios" / "digits-openai-chat.yaml"
    result = preflight(scenario(tmp_path, reference_server, base=chat, protocol={"answer_regex": "answer: (\\d)"}))
    assert_failed(
        result,
        "extract",
        re.escape(
            f"POST {reference_server}/v1/chat/completions answered every sample, but protocol.answer_regex "
            "'answer: (\\\\d)' matched none of the 3 answers (the last was 'The digit is "
        ),
        sent=3,
    )
    assert result.predictions == ["null", "null", "null"]


def test_the_request_carries_the_users_headers(tmp_path: Path) -> None:
    """The same headers as a Locust user's requests (loadgrade.locust_plugin.configure_user)."""
    headers: dict[str, str] = {}

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers.update(self.headers.items())
            body = json.dumps({"output_data": [3]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = preflight(scenario(tmp_path, url, endpoint={"headers": {"X-Api-Key": "k"}}), samples=1)
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok, result.line
    assert result.predictions == ["3"]
    assert headers["User-Agent"].startswith("loadgrade/")
    assert (headers["Content-Type"], headers["Accept"], headers["X-Api-Key"]) == (
        "application/json",
        "application/json",
        "k",
    )
