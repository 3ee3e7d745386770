"""Request building, prediction extraction and error classification, without a server."""

from __future__ import annotations

import json

import pytest

from loadgrade.dataset import Sample
from loadgrade.protocols import FlaskPredictProtocol, GenericProtocol
from loadgrade.responses import Outcome, classify_exception, interpret_response

SAMPLE = Sample("s-1", [0.5, 2], {"id": "s-1", "text": "hello", "x": 1.5})


def test_flask_predict_round_trip() -> None:
    protocol = FlaskPredictProtocol()
    assert json.loads(protocol.build_body(SAMPLE)) == {"input_data": [[0.5, 2]]}
    assert protocol.extract({"output_data": [4]}) == 4
    assert protocol.extract({"output_data": "cat"}) == "cat"


def test_generic_template_keeps_types_and_fills_text() -> None:
    protocol = GenericProtocol(
        body={"inputs": [{"data": "{{input}}", "name": "{{text}}"}], "meta": "id={{sample_id}} x={{x}}", "n": 3},
        prediction="outputs[0].data[0]",
    )
    assert json.loads(protocol.build_body(SAMPLE)) == {
        "inputs": [{"data": [0.5, 2], "name": "hello"}],
        "meta": "id=s-1 x=1.5",
        "n": 3,
    }
    assert protocol.extract({"outputs": [{"data": [7, 1]}]}) == 7


def test_generic_checks_placeholders_against_columns() -> None:
    protocol = GenericProtocol(body={"a": "{{colour}}"}, prediction="p")
    with pytest.raises(ValueError, match=r"placeholder \{\{colour\}\} names no dataset column"):
        protocol.check_fields(["id", "x"])
    protocol.check_fields(["id", "colour"])


@pytest.mark.parametrize(
    ("status", "content", "exception", "expected"),
    [
        (200, b'{"output_data": [3]}', None, Outcome(True, prediction="3")),
        (200, b'{"output_data": ["a,\\"b\\""]}', None, Outcome(True, prediction='"a,\\"b\\""')),
        (500, b'{"error": "boom"}', None, Outcome(False, "http", 'HTTP 500: {"error": "boom"}')),
        (503, b"", None, Outcome(False, "http", "HTTP 503: (empty body)")),
        (200, b"<html>", None, None),
        (200, b"", None, Outcome(False, "decode", "response is not JSON: (empty body)")),
        (
            200,
            b'{"predictions": [1]}',
            None,
            Outcome(
                False, "extract", "expected an object with key 'output_data', got an object with keys: predictions"
            ),
        ),
        (
            200,
            b'{"output_data": [1, 2]}',
            None,
            Outcome(False, "extract", "expected 'output_data' to hold 1 prediction, got 2"),
        ),
        (0, None, ConnectionRefusedError(111, "Connection refused"), None),
        (0, None, TimeoutError("timed out"), Outcome(False, "timeout", "TimeoutError: timed out")),
    ],
)
def test_interpret_response(
    status: int, content: bytes | None, exception: BaseException | None, expected: Outcome | None
) -> None:
    outcome = interpret_response(FlaskPredictProtocol(), status_code=status, content=content, exception=exception)
    if expected is not None:
        assert outcome == expected
    elif status == 200:
        assert (outcome.ok, outcome.error_kind) == (False, "decode")
        assert outcome.error.endswith(": <html>")
    else:
        assert (outcome.ok, outcome.error_kind) == (False, "connection")
        assert "Connection refused" in outcome.error


def test_a_wrong_answer_is_not_an_error() -> None:
    outcome = interpret_response(
        GenericProtocol(prediction="label"), status_code=200, content=b'{"label": 9}', exception=None
    )
    assert outcome.ok
    assert outcome.prediction == "9"


def test_generic_extraction_failure_names_the_expression() -> None:
    outcome = interpret_response(
        GenericProtocol(prediction="result.label"), status_code=200, content=b'{"result": {}}', exception=None
    )
    assert outcome == Outcome(False, "extract", "JMESPath 'result.label' found nothing in an object with keys: result")


def test_gevent_style_timeouts_are_timeouts() -> None:
    class Timeout(BaseException):  # the shape of gevent.Timeout: not an OSError, named Timeout
        pass

    assert classify_exception(Timeout()) == "timeout"

    class RetriesExceeded(Exception):  # geventhttpclient wraps the real cause
        def __init__(self, original: BaseException) -> None:
            super().__init__("retries exceeded")
            self.original = original

    assert classify_exception(RetriesExceeded(TimeoutError("timed out"))) == "timeout"
    assert classify_exception(RetriesExceeded(ConnectionRefusedError())) == "connection"
    assert classify_exception(ConnectionResetError(104, "reset")) == "connection"
