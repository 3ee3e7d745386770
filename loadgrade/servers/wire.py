"""Wire formats of the model-serving protocols the reference server speaks, as pure functions.

Each protocol has a *parse* (decoded JSON request → float64 feature rows, or :class:`BadRequest` saying what is
wrong) and a *reply* (answers → JSON document). :mod:`.reference` wires them to routes and runs every request
through the same load-dependent tier decision, so all protocols degrade alike.

=====================  ====================================================  ==========================================
protocol               request                                               reply
=====================  ====================================================  ==========================================
Open Inference (v2)    ``{"inputs": [{"name", "shape": [n, f], "datatype",   ``{"model_name", "model_version",
                       "data"}]}``, data flat (row-major) or nested          "outputs": [{"name": "predict", "shape":
                                                                             [n, 1], "datatype", "data"}]}``
TF Serving             ``{"instances": [[f0, ...], ...]}``                   ``{"predictions": [p, ...]}``
TorchServe             ``[f0, ...]`` or ``{"data": [f0, ...]}``              the bare answer: ``7``
OpenAI chat            ``{"model", "messages": [...]}``; the last user         ``{"choices": [{"message": {"content":
                       message holds the features as a JSON list               "The digit is 7."}}], "usage": {...}}``
OpenAI completions     ``{"model", "prompt"}``, features as a JSON list        ``{"choices": [{"text": ...}], "usage"}``
=====================  ====================================================  ==========================================

For the OpenAI-style endpoints the "model" field names the task (``digits`` or ``diabetes``), the features are the
first bracketed list in the prompt that holds exactly as many numbers as the model has features, and the usage
token counts are whitespace-separated words (a stand-in for a tokenizer, deterministic and cheap).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import numpy as np

from loadgrade.servers.models import Task

__all__ = [
    "BadRequest",
    "check_row",
    "decode_json",
    "rows_array",
]

OIP_OUTPUT = "predict"
OIP_VERSION = "1"
TORCHSERVE_VERSION = "1.0"
TF_VERSION = "1"
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_ANSWER_TEXT = {"digits": "The digit is {}.", "diabetes": "The predicted disease progression is {}."}


class BadRequest(Exception):
    """A request the client got wrong; its message is the 400 response's error text."""


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def check_row(row: object, n_features: int, where: str, task: Task) -> list[float]:
    if not isinstance(row, list):
        raise BadRequest(f"{where} must be a list of {n_features} numbers; got {type(row).__name__}")
    if len(row) != n_features:
        raise BadRequest(f"{where} has {len(row)} values; the {task.name} model expects {n_features}")
    # type() rather than isinstance(): JSON true/false parse to bools, which are ints to isinstance
    if not all(type(value) is float or type(value) is int for value in row):
        raise BadRequest(f"{where} must contain only numbers")
    return row


def rows_array(rows: list[list[float]], where: str) -> np.ndarray:
    """Checked rows as a C-ordered float64 array; numbers too large or not finite are a BadRequest."""
    try:
        X = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise BadRequest(f"{where} contains a number too large for a float") from None
    if not np.isfinite(X).all():
        raise BadRequest(f"{where} must contain only finite numbers")
    return X


def _object(document: Any, key: str) -> dict[str, Any]:
    if not isinstance(document, dict) or key not in document:
        raise BadRequest(f'request body must be a JSON object with a "{key}" field')
    return document


# ----------------------------------------------------------------------------------------- Open Inference v2


def _flatten(value: Any) -> list[Any]:
    return [x for item in value for x in _flatten(item)] if isinstance(value, list) else [value]


def parse_oip(document: Any, task: Task) -> np.ndarray:
    """One input tensor of shape ``[n, n_features]``, datatype FP32, FP64 or INT64."""
    inputs = _object(document, "inputs")["inputs"]
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest(f"inputs must be a list of exactly 1 tensor; the {task.name} model has one input")
    tensor = inputs[0]
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
    if missing:
        raise BadRequest(f"input tensor lacks {', '.join(missing)}")
    datatype, shape, data = tensor["datatype"], tensor["shape"], tensor["data"]
    if datatype not in ("FP32", "FP64", "INT64"):
        raise BadRequest(f"datatype {datatype!r} is not accepted; the {task.name} model takes FP32, FP64 or INT64")
    n = task.n_features
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(d) is int and d >= 1 for d in shape)
        or shape[1] != n
    ):
        raise BadRequest(f"shape must be [rows, {n}] for the {task.name} model; got {json.dumps(shape)}")
    if not isinstance(data, list):
        raise BadRequest(f"data must be a list of numbers; got {type(data).__name__}")
    flat = _flatten(data)
    if len(flat) != math.prod(shape):
        raise BadRequest(f"shape {json.dumps(shape)} holds {math.prod(shape)} values but data has {len(flat)}")
    if datatype == "INT64" and not all(type(v) is int for v in flat):
        raise BadRequest("datatype INT64 needs whole numbers in data")
    rows = [check_row(flat[i * n : (i + 1) * n], n, f"row {i} of the input", task) for i in range(shape[0])]
    return rows_array(rows, "the input")


def reply_oip(task: Task, answers: list[Any], *, version: str | None) -> dict[str, Any]:
    return {
        "model_name": task.name,
        "model_version": version or OIP_VERSION,
        "outputs": [
            {
                "name": OIP_OUTPUT,
                "shape": [len(answers), 1],
                "datatype": "INT64" if task.kind == "classification" else "FP64",
                "data": answers,
            }
        ],
    }


def oip_metadata(task: Task) -> dict[str, Any]:
    return {
        "name": task.name,
        "versions": [OIP_VERSION],
        "platform": "scikit-learn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, task.n_features]}],
        "outputs": [
            {"name": OIP_OUTPUT, "datatype": "INT64" if task.kind == "classification" else "FP64", "shape": [-1, 1]}
        ],
    }


# ----------------------------------------------------------------------------------------------- TF Serving


def parse_tf(document: Any, task: Task) -> np.ndarray:
    """``instances``: a list of rows (the row format); ``signature_name`` may only be the default."""
    document = _object(document, "instances")
    signature = document.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise BadRequest(f"unknown signature_name {signature!r}; the {task.name} model has only 'serving_default'")
    instances = document["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest("instances must be a non-empty list of rows")
    rows = [check_row(row, task.n_features, f"instances[{i}]", task) for i, row in enumerate(instances)]
    return rows_array(rows, "instances")


# ----------------------------------------------------------------------------------------------- TorchServe


def parse_torchserve(document: Any, task: Task) -> np.ndarray:
    """One sample: the features as a list, or an object whose ``data`` (or ``input``) holds them."""
    if isinstance(document, dict):
        key = next((k for k in ("data", "input") if k in document), None)
        if key is None:
            raise BadRequest('request body must be a list of features or an object with a "data" field')
        document = document[key]
    return rows_array([check_row(document, task.n_features, "the input", task)], "the input")


# ---------------------------------------------------------------------------------------------- OpenAI-style


def openai_model(document: Any) -> str:
    """The model named in an OpenAI-style request (the task), or a BadRequest."""
    if not isinstance(document, dict) or not isinstance(document.get("model"), str):
        raise BadRequest('request body must be a JSON object with a "model" field naming the model')
    if document.get("stream"):
        raise BadRequest("stream is not supported by this server")
    return str(document["model"])


def features_in_text(text: str, task: Task) -> np.ndarray:
    """The first bracketed list of exactly ``n_features`` numbers in a prompt, as one row."""
    for match in _BRACKETED.finditer(text):
        try:
            values = json.loads(f"[{match.group(1)}]")
        except ValueError:
            continue
        if len(values) == task.n_features and all(type(v) is int or type(v) is float for v in values):
            return rows_array([values], "the prompt")
    raise BadRequest(
        f"the prompt holds no list of {task.n_features} numbers for the {task.name} model, e.g. [0.0, 3.0, ...]"
    )


def parse_chat(document: Any, task: Task) -> np.ndarray:
    messages = _object(document, "messages")["messages"]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages must be a list of objects with role and content")
    user = [m.get("content") for m in messages if m.get("role") == "user"]
    if not user or not isinstance(user[-1], str):
        raise BadRequest("messages must include a user message whose content is text")
    return features_in_text(user[-1], task)


def parse_completion(document: Any, task: Task) -> np.ndarray:
    prompt = _object(document, "prompt")["prompt"]
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be text (a list of prompts is not supported)")
    return features_in_text(prompt, task)


def _words(text: str) -> int:
    return len(text.split())


def answer_text(task: Task, answer: Any) -> str:
    """
    >>> from types import SimpleNamespace
    >>> answer_text(SimpleNamespace(name="digits"), 7)
    'The digit is 7.'
    """
    return _ANSWER_TEXT.get(task.name, "The answer is {}.").format(answer)


def reply_chat(task: Task, answer: Any, document: dict[str, Any]) -> dict[str, Any]:
    text = answer_text(task, answer)
    prompt_words = sum(_words(m["content"]) for m in document["messages"] if isinstance(m.get("content"), str))
    return {
        "id": f"chatcmpl-ref-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": task.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _usage(prompt_words, _words(text)),
    }


def reply_completion(task: Task, answer: Any, document: dict[str, Any]) -> dict[str, Any]:
    text = " " + answer_text(task, answer)
    return {
        "id": f"cmpl-ref-{time.monotonic_ns()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": task.name,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(_words(document["prompt"]), _words(text)),
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_error(message: str, *, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """The error body OpenAI-compatible servers send."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
