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
first bracketed list in the prompt that holds exactly as many numbers as the model has features, and the tokens
are the words of the answer, each with the space before it (a stand-in for a tokenizer, deterministic and cheap):
``"The digit is 7."`` is ``["The", " digit", " is", " 7."]``, so the answer comes last and a reply cut after a few
tokens has lost it. ``max_tokens`` (chat also ``max_completion_tokens``) keeps the first tokens and says
``finish_reason: "length"``; usage counts the tokens sent.

With ``"stream": true`` the reply is server-sent events as OpenAI sends them, one ``data: {chunk}`` per token
(chat: a first ``delta: {"role": "assistant", "content": ""}``, then ``delta: {"content": token}``; completions:
``choices[0].text``), a last chunk with an empty delta (or text) and the ``finish_reason``, then, when asked with
``"stream_options": {"include_usage": true}``, a chunk with ``choices: []`` and ``usage``, and ``data: [DONE]``.
:func:`stream_frames` builds them; the server only paces them.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from loadgrade.servers.models import Task

__all__ = [
    "CUT_KINDS",
    "BadRequest",
    "CutKind",
    "OpenAIOptions",
    "StreamFrames",
    "check_row",
    "decode_json",
    "openai_options",
    "rows_array",
    "stream_frames",
    "tokens",
]

CutKind = Literal["length", "empty", "no_end"]
#: How a streamed reply is cut short under load, in the order the server takes them in turn.
CUT_KINDS: tuple[CutKind, ...] = ("length", "empty", "no_end")

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


@dataclass(frozen=True)
class OpenAIOptions:
    """The fields of an OpenAI-style request that shape the reply rather than the answer."""

    model: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None


def _flag(document: dict[str, Any], key: str, where: str) -> bool:
    value = document.get(key)
    if value is not None and type(value) is not bool:
        raise BadRequest(f"{where} must be true or false; got {json.dumps(value)}")
    return bool(value)


def openai_options(document: Any, *, chat: bool) -> OpenAIOptions:
    """The model (the task), streaming and length options of an OpenAI-style request, or a BadRequest.

    >>> openai_options({"model": "digits", "stream": True, "stream_options": {"include_usage": True}}, chat=True)
    OpenAIOptions(model='digits', stream=True, include_usage=True, max_tokens=None)
    >>> openai_options({"model": "digits", "max_tokens": 2}, chat=False).max_tokens
    2
    """
    if not isinstance(document, dict) or not isinstance(document.get("model"), str):
        raise BadRequest('request body must be a JSON object with a "model" field naming the model')
    stream = _flag(document, "stream", "stream")
    stream_options = document.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not stream:  # as OpenAI answers: the option means nothing without a stream
            raise BadRequest("stream_options is only allowed when stream is true")
        if not isinstance(stream_options, dict):
            raise BadRequest('stream_options must be an object such as {"include_usage": true}')
        include_usage = _flag(stream_options, "include_usage", "stream_options.include_usage")
    keys = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    limits = [document[key] for key in keys if document.get(key) is not None]
    for value in limits:
        if type(value) is not int or value < 1:
            raise BadRequest(f"max_tokens must be a whole number of at least 1; got {json.dumps(value)}")
    return OpenAIOptions(
        model=str(document["model"]),
        stream=stream,
        include_usage=include_usage,
        max_tokens=min(limits) if limits else None,
    )


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


def tokens(text: str) -> list[str]:
    """The reply's tokens: its words, each with the whitespace before it, so that they join back into the text.

    >>> tokens(" The digit is 7.")
    [' The', ' digit', ' is', ' 7.']
    """
    return re.findall(r"\s*\S+", text)


def answer_text(task: Task, answer: Any) -> str:
    """
    >>> from types import SimpleNamespace
    >>> answer_text(SimpleNamespace(name="digits"), 7)
    'The digit is 7.'
    """
    return _ANSWER_TEXT.get(task.name, "The answer is {}.").format(answer)


def _reply_tokens(task: Task, answer: Any, *, chat: bool, max_tokens: int | None) -> tuple[list[str], str]:
    """The tokens of the answer (completions continue the prompt, so theirs start with a space) and why they end."""
    pieces = tokens(answer_text(task, answer) if chat else " " + answer_text(task, answer))
    if max_tokens is not None and len(pieces) > max_tokens:
        return pieces[:max_tokens], "length"
    return pieces, "stop"


def _prompt_words(document: dict[str, Any], *, chat: bool) -> int:
    if chat:
        return sum(_words(m["content"]) for m in document["messages"] if isinstance(m.get("content"), str))
    return _words(document["prompt"])


def reply_chat(task: Task, answer: Any, document: dict[str, Any], *, max_tokens: int | None = None) -> dict[str, Any]:
    pieces, finish = _reply_tokens(task, answer, chat=True, max_tokens=max_tokens)
    message = {"role": "assistant", "content": "".join(pieces)}
    return {
        "id": f"chatcmpl-ref-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": task.name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(_prompt_words(document, chat=True), len(pieces)),
    }


def reply_completion(
    task: Task, answer: Any, document: dict[str, Any], *, max_tokens: int | None = None
) -> dict[str, Any]:
    pieces, finish = _reply_tokens(task, answer, chat=False, max_tokens=max_tokens)
    return {
        "id": f"cmpl-ref-{time.monotonic_ns()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": task.name,
        "choices": [{"index": 0, "text": "".join(pieces), "logprobs": None, "finish_reason": finish}],
        "usage": _usage(_prompt_words(document, chat=False), len(pieces)),
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


#: The end of an OpenAI-style stream.
SSE_DONE = b"data: [DONE]\n\n"
#: Tokens a reply cut short with finish_reason "length" (or with no end) keeps: fewer than the answer needs.
CUT_TOKENS = 2


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True)
class StreamFrames:
    """A streamed reply as its server-sent events, grouped by when they are sent.

    ``opening`` goes out with the first token (or, with no tokens, after the time to the first one), each of
    ``tokens`` one pace apart, ``closing`` right after the last token: ``finish_reason``, usage, ``[DONE]``.
    """

    opening: tuple[bytes, ...]
    tokens: tuple[bytes, ...]
    closing: tuple[bytes, ...]


def stream_frames(
    task: Task,
    answer: Any,
    document: dict[str, Any],
    options: OpenAIOptions,
    *,
    chat: bool,
    cut: CutKind | None = None,
) -> StreamFrames:
    """The server-sent events of a streamed chat or completion reply, whole or cut short.

    ``cut`` is how the reply is cut short: ``"length"`` stops after :data:`CUT_TOKENS` tokens with finish_reason
    "length" (before the answer), ``"empty"`` sends no text and finish_reason "stop", ``"no_end"`` sends
    :data:`CUT_TOKENS` tokens and stops, with neither a finish_reason nor ``[DONE]``.

    >>> from types import SimpleNamespace
    >>> frames = stream_frames(SimpleNamespace(name="digits"), 7, {"prompt": "[1, 2]"},
    ...                        OpenAIOptions("digits", stream=True, include_usage=True), chat=False)
    >>> [json.loads(f[6:])["choices"][0]["text"] for f in frames.tokens]
    [' The', ' digit', ' is', ' 7.']
    >>> [json.loads(f[6:]).get("usage") for f in frames.closing[:2]]
    [None, {'prompt_tokens': 2, 'completion_tokens': 4, 'total_tokens': 6}]
    >>> frames.closing[-1] == SSE_DONE
    True
    """
    pieces, finish = _reply_tokens(task, answer, chat=chat, max_tokens=options.max_tokens)
    end: str | None = finish
    if cut == "length":
        pieces, end = pieces[:CUT_TOKENS], "length"
    elif cut == "empty":
        pieces, end = [], "stop"
    elif cut == "no_end":
        pieces, end = pieces[:CUT_TOKENS], None
    head: dict[str, Any] = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-ref-{time.monotonic_ns()}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": task.name,
    }
    if options.include_usage:
        head["usage"] = None  # as OpenAI does: every chunk but the last has "usage": null

    def chunk(piece: str | None, finish_reason: str | None = None) -> bytes:
        choice: dict[str, Any]
        if chat:
            delta = {} if piece is None else {"content": piece}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish_reason}
        return sse({**head, "choices": [choice]})

    opening = (sse({**head, "choices": [_role_choice()]}),) if chat else ()
    closing: tuple[bytes, ...] = ()
    if end is not None:
        closing = (chunk(None, end),)
        if options.include_usage:
            usage = _usage(_prompt_words(document, chat=chat), len(pieces))
            closing += (sse({**head, "choices": [], "usage": usage}),)
        closing += (SSE_DONE,)
    return StreamFrames(opening=opening, tokens=tuple(chunk(piece) for piece in pieces), closing=closing)


def _role_choice() -> dict[str, Any]:
    delta = {"role": "assistant", "content": ""}
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}


def openai_error(message: str, *, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """The error body OpenAI-compatible servers send."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
