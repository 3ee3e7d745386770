"""The reference server over real HTTP: a subprocess on port 0, driven with urllib."""

# Like every test in tests/load, import Locust first: its gevent monkey-patching then happens at the same point
# whichever tests are selected, and running_server is exercised the way Locust-based tests will use it.
import locust  # noqa: F401  (imported for its side effect)

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loadgrade.servers.make_datasets import DEFAULT_OUT, dataset_path
from loadgrade.servers.models import ModelSet, train_models
from loadgrade.servers.reference import running_server

Response = tuple[int, Any, Message]


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    return train_models(seed=0)


#: Server configurations under test, by name; "default" never degrades.
_CONFIGS = {
    "default": (),
    "degrade": ("--degrade-above", "2", "--service-time-ms", "200"),
    "shed-503": ("--shed-above", "1", "--shed-mode", "503", "--service-time-ms", "200"),
    "shed-fallback": ("--shed-above", "1", "--shed-mode", "fallback", "--service-time-ms", "200"),
}


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    """One server per configuration, started in parallel: a start is a second or two of imports and training."""
    # The pool exits first, waiting for every start; the stack then stops every server that started.
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(max_workers=len(_CONFIGS)) as pool:
        starts = {name: pool.submit(stack.enter_context, running_server(*args)) for name, args in _CONFIGS.items()}
        yield {name: start.result() for name, start in starts.items()}


@pytest.fixture(scope="module")
def url(urls: dict[str, str]) -> str:
    return urls["default"]


def _csv_rows(name: str, feature_names: tuple[str, ...]) -> list[list[float]]:
    """Feature rows as a load test sends them: parsed from the committed CSV."""
    frame = pd.read_csv(dataset_path(DEFAULT_OUT, name))
    return frame[list(feature_names)].to_numpy().tolist()


def _request(url: str, payload: object = None, *, method: str = "POST") -> Response:
    data = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def _concurrently(n: int, url: str, payload: object) -> list[Response]:
    """Send ``n`` requests at once (a barrier releases them together) and return the responses."""
    barrier = threading.Barrier(n)
    responses: list[Response | None] = [None] * n

    def send(i: int) -> None:
        barrier.wait(timeout=10)
        responses[i] = _request(url, payload)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert all(response is not None for response in responses), "a request did not complete"
    return [response for response in responses if response is not None]


def test_health(url: str) -> None:
    assert _request(f"{url}/health", method="GET")[:2] == (200, {"status": "ready", "models": ["digits", "diabetes"]})


def test_predict_protocol_matches_offline_primary(url: str, model_set: ModelSet) -> None:
    task = model_set.digits
    rows = _csv_rows("digits", task.feature_names)[:20]
    status, body, headers = _request(f"{url}/predict", {"input_data": rows})
    assert status == 200
    assert body == {"output_data": task.primary.predict(np.array(rows)).tolist()}
    assert all(type(label) is int for label in body["output_data"])
    assert headers["X-Model-Tier"] == "primary"


def test_predict_protocol_accepts_one_flat_row(url: str, model_set: ModelSet) -> None:
    task = model_set.digits
    row = task.X_test[7].tolist()
    assert _request(f"{url}/predict", {"input_data": row})[:2] == (
        200,
        {"output_data": task.primary.predict(task.X_test[7:8]).tolist()},
    )


def test_generic_protocol_matches_offline_primary(url: str, model_set: ModelSet) -> None:
    task = model_set.digits
    for row in _csv_rows("digits", task.feature_names)[:20]:
        status, body, _ = _request(f"{url}/v1/models/digits/predict", {"features": row})
        assert status == 200
        assert body == {"prediction": int(task.primary.predict(np.array([row]))[0]), "tier": "primary"}


def test_regression_is_exact_to_the_bit(url: str, model_set: ModelSet) -> None:
    task = model_set.diabetes
    rows = _csv_rows("diabetes", task.feature_names)
    # One batch of all rows against the same batch offline ...
    status, body, _ = _request(f"{url}/predict?model=diabetes", {"input_data": rows})
    assert status == 200
    assert body["output_data"] == task.primary.predict(np.array(rows)).tolist()
    assert all(type(value) is float for value in body["output_data"])
    # ... and one row per request against single-row predictions (batching moves a linear model by an ulp)
    for row in rows[:40]:
        status, body, _ = _request(f"{url}/v1/models/diabetes/predict", {"features": row})
        assert (status, body) == (200, {"prediction": task.primary.predict(np.array([row]))[0], "tier": "primary"})


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/predict", b'{"input_data": [[1, 2', "request body is not valid JSON"),
        ("/predict", b"\xff\xfe", "request body is not valid JSON"),
        ("/predict", [1, 2], 'a JSON object with a "input_data" field'),
        ("/predict", {"inputs": [[0.0] * 64]}, 'a JSON object with a "input_data" field'),
        ("/predict", {"input_data": [[0.0] * 64, [0.0] * 63]}, r"input_data\[1\] has 63 values; the digits model"),
        ("/predict", {"input_data": []}, "input_data has 0 values; the digits model expects 64"),
        ("/predict", {"input_data": [True] * 64}, "input_data must contain only numbers"),
        ("/predict", {"input_data": ["1.0"] * 64}, "input_data must contain only numbers"),
        ("/predict?model=diabetes", {"input_data": [[0.0] * 64]}, "the diabetes model expects 10"),
        ("/predict", b'{"input_data": [' + b", ".join([b"NaN"] * 64) + b"]}", "only finite numbers"),
        ("/predict", b'{"input_data": [' + b", ".join([b"1e999"] * 64) + b"]}", "only finite numbers"),
        (
            "/v1/models/diabetes/predict",
            {"features": [[0.0] * 10]},
            "features must be one flat list of 10 numbers: this endpoint takes one sample",
        ),
        ("/v1/models/diabetes/predict", {"features": 3}, "features must be a list of 10 numbers; got int"),
    ],
)
def test_bad_requests_answer_400(url: str, path: str, body: object, message: str) -> None:
    status, answer, _ = _request(f"{url}{path}", body)
    assert status == 400
    assert answer.keys() == {"error"}
    assert re.search(message, answer["error"]), answer["error"]


@pytest.mark.parametrize("path", ["/v1/models/mnist/predict", "/predict?model=mnist"])
def test_unknown_model_answers_404(url: str, path: str) -> None:
    status, answer, _ = _request(f"{url}{path}", {"features": [0.0]})
    assert (status, answer) == (404, {"error": "unknown model 'mnist'; known models are: digits, diabetes"})


def test_stats_count_requests(url: str) -> None:
    before = _request(f"{url}/stats", method="GET")[1]
    _request(f"{url}/v1/models/diabetes/predict", {"features": [0.0] * 10})
    _request(f"{url}/v1/models/diabetes/predict", {"features": []})
    after = _request(f"{url}/stats", method="GET")[1]
    assert after["requests"] - before["requests"] == 2
    assert after["tiers"]["primary"] - before["tiers"]["primary"] == 1
    assert after["bad_requests"] - before["bad_requests"] == 1
    assert after["in_flight"] == 0
    assert after["config"] == {
        "seed": 0,
        "service_time_ms": 0.0,
        "degrade_above": None,
        "shed_above": None,
        "shed_mode": "503",
    }


def test_degrades_to_the_cheap_model_under_load(urls: dict[str, str], model_set: ModelSet) -> None:
    task = model_set.digits
    # a row on which the two models disagree shows which one answered
    (disagree,) = np.flatnonzero(task.primary.predict(task.X_test) != task.cheap.predict(task.X_test))[:1]
    row = task.X_test[disagree]
    url = urls["degrade"]
    responses = _concurrently(4, f"{url}/v1/models/digits/predict", {"features": row.tolist()})
    stats = _request(f"{url}/stats", method="GET")[1]
    assert all(status == 200 for status, _, _ in responses)
    tiers = Counter(body["tier"] for _, body, _ in responses)
    assert tiers["primary"] >= 1
    assert tiers["cheap"] >= 1
    expected = {"primary": task.primary.predict(row[None, :])[0], "cheap": task.cheap.predict(row[None, :])[0]}
    assert all(body["prediction"] == expected[body["tier"]] for _, body, _ in responses)
    assert stats["max_in_flight"] >= 3


def test_sheds_with_503_under_load(urls: dict[str, str], model_set: ModelSet) -> None:
    payload = {"input_data": model_set.digits.X_test[:2].tolist()}
    responses = _concurrently(3, f"{urls['shed-503']}/predict", payload)
    statuses = Counter(status for status, _, _ in responses)
    assert statuses[503] >= 1
    assert statuses[200] >= 1
    assert all(body == {"error": "overloaded"} for status, body, _ in responses if status == 503)


def test_sheds_with_the_fallback_answer_under_load(urls: dict[str, str], model_set: ModelSet) -> None:
    task = model_set.diabetes
    payload = {"input_data": task.X_test[:2].tolist()}
    responses = _concurrently(3, f"{urls['shed-fallback']}/predict?model=diabetes", payload)
    assert all(status == 200 for status, _, _ in responses)
    by_tier = {headers["X-Model-Tier"]: body for _, body, headers in responses}
    assert by_tier.keys() == {"primary", "fallback"}
    assert by_tier["fallback"] == {"output_data": [task.fallback, task.fallback]}


def test_refuses_a_non_loopback_host() -> None:
    refused = r"exited with status 2 before listening(.|\n)*refusing to listen on '0.0.0.0': it is not a loopback"
    with pytest.raises(RuntimeError, match=refused), running_server("--host", "0.0.0.0"):
        pytest.fail("the server should not have started")


def test_stops_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgrade.servers.reference", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,  # its own process group
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the test's timeout bounds this
        assert line.startswith("LISTENING http://127.0.0.1:")
        assert _request(f"{line.split()[1]}/health", method="GET")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
