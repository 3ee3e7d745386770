"""The reference model server: a real HTTP endpoint whose answers get worse, deterministically, under load.

    python -m loadgrade.servers.reference [--port 0] [--service-time-ms 50] [--degrade-above 8] [--shed-above 32]
        [--ttft-ms 20] [--ttft-per-inflight-ms 5] [--tpot-ms 5] [--tpot-per-inflight-ms 1] [--cut-above 12]

It trains the models of :mod:`.models` at start-up (well under three seconds), binds (``--port 0`` picks a
free port) and prints one line, ``LISTENING http://HOST:PORT``, on stdout once it accepts connections.
:func:`running_server` wraps all of that for tests and the demo.

Why a Starlette app on uvicorn: a request's service time is an ``asyncio.sleep``, so requests in flight really
overlap inside one process and one thread. With N users in a closed loop, N requests are in flight at once, and the
in-flight count each request sees on arrival -- hence which model answers it -- follows from the load alone, not from
thread scheduling. One process also holds hundreds of concurrent connections without a thread per connection.

Endpoints (JSON in and out)
---------------------------
``GET /health``
    ``{"status": "ready", "models": ["digits", "diabetes"]}``.
``POST /predict[?model=digits|diabetes]``
    The "flask-predict" protocol: ``{"input_data": [[f0, ..., fN], ...]}`` (or one flat row) answers
    ``{"output_data": [prediction, ...]}``, one per row; digits by default.
``POST /v1/models/{model}/predict``
    The "generic" protocol: ``{"features": [f0, ..., fN]}`` answers ``{"prediction": p, "tier": t}``.
``GET /stats``
    Request counters per tier, current and maximum in-flight requests, and the degradation settings.

The other presets' protocols (wire formats in :mod:`loadgrade.servers.wire`), each going through the same degradation:

``POST /v2/models/{model}[/versions/1]/infer``
    Open Inference Protocol v2 (``open-inference-v2``): one input tensor of shape ``[n, n_features]`` answers an
    output tensor ``predict`` of shape ``[n, 1]``. Also ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
    ``/v2/models/{model}`` (metadata) and ``/v2/models/{model}/ready``.
``POST /v1/models/{model}[/versions/1]:predict``
    TF Serving (``tf-serving``): ``{"instances": [row, ...]}`` answers ``{"predictions": [p, ...]}``.
``POST /predictions/{model}[/1.0]``
    TorchServe (``torchserve``): the features as a JSON list (or ``{"data": [...]}``) answer the bare prediction.
    Also ``GET /ping``.
``POST /v1/chat/completions``, ``POST /v1/completions``
    OpenAI-compatible (``openai-chat``, ``openai-completions``): ``"model"`` names the task and the prompt holds the
    features as a JSON list; the answer is text such as ``"The digit is 7."`` whose tokens are its words (the
    answer last), with their counts as ``usage`` and a ``finish_reason``; ``max_tokens`` keeps the first tokens
    (``finish_reason: "length"``). With ``"stream": true`` the reply is server-sent events, one chunk per token,
    as OpenAI streams (see "Streaming model" below).

Class labels are plain ints, regression values floats. Every prediction response also names its tier in the
``X-Model-Tier`` header. Malformed JSON or a wrong shape answers 400 ``{"error": ...}``, an unknown model 404.

Degradation model
-----------------
A predict request increments the in-flight counter on arrival and decrements it once its response is ready; the
count includes the request itself. On arrival, :func:`loadgrade.servers.models.decide_tier` picks its tier:

* more than ``--shed-above`` in flight: shed. With ``--shed-mode 503`` the answer is HTTP 503
  ``{"error": "overloaded"}``; with ``--shed-mode fallback`` it is a 200 with a constant answer (the majority
  training class, or the training mean) and tier ``"fallback"``. Either way it is immediate: answering without doing
  the work is what shedding buys.
* otherwise more than ``--degrade-above`` in flight: the cheap model answers, after the service time.
* otherwise the primary model answers, after the service time.

The cheap tier costs the same service time as the primary one on purpose: only the answers' quality changes, which is
the axis loadgrade measures. Inference runs inline on the event loop (a one-row predict is a fraction of a
millisecond), so nothing but the load decides the tier.

Streaming model
---------------
A streamed reply (``"stream": true`` on the OpenAI endpoints) goes through the same tier decision and then plays
an LLM server under load, whose batch slows every sequence in it. It stays in flight until its last event is
written (or its client goes away), so N streaming users hold N requests in flight. Its first token waits
``--ttft-ms + --ttft-per-inflight-ms * (in_flight - 1)`` with the count at its arrival, each later token
``--tpot-ms + --tpot-per-inflight-ms * (in_flight - 1)`` with the count at that moment; ``--service-time-ms`` is
for non-streamed replies only, whose timing streaming leaves as it was. Events due at one moment (the chat's role
chunk with the first token; the last token with its finish, usage and ``[DONE]`` chunks) go out in one write, and
every write at once: nothing buffers a stream.

More than ``--cut-above`` in flight at a stream's arrival (``0`` never cuts), its reply is cut short, each such
stream in turn taking the next of three ways (:data:`loadgrade.servers.wire.CUT_KINDS`), so any few of them show
all three: ``length`` (two tokens, before the answer, then ``finish_reason: "length"``), ``empty`` (no text,
``finish_reason: "stop"``) and ``no_end`` (two tokens, then the body ends with neither a ``finish_reason`` nor
``[DONE]``). A stream shed in fallback mode is sent at once and never cut; shed with 503, it is a JSON error like
any other. ``/stats`` counts streams and cut-short replies under ``streaming``; ``/metrics`` has
``reference_streams_total`` and ``reference_cut_short_total{reason=...}``.
"""

import argparse
import asyncio
import contextlib
import ipaddress
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import sklearn
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from loadgrade.servers import wire
from loadgrade.servers.models import MODEL_NAMES, ModelSet, Task, decide_tier, train_models
from loadgrade.servers.wire import BadRequest as _BadRequest
from loadgrade.servers.wire import check_row as _check_row

__all__ = ["ServerConfig", "create_app", "main", "running_server"]

ShedMode = Literal["503", "fallback"]

_LISTENING = "LISTENING "
_TIME_FIELDS = ("service_time_ms", "ttft_ms", "ttft_per_inflight_ms", "tpot_ms", "tpot_per_inflight_ms")
#: ServerConfig fields about streamed replies; /stats lists them apart from the degradation settings
_STREAM_FIELDS = ("ttft_ms", "ttft_per_inflight_ms", "tpot_ms", "tpot_per_inflight_ms", "cut_above")
_IMPORT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServerConfig:
    """How the app degrades under load (see the module docstring).

    The defaults never degrade or shed; streamed replies are paced (TTFT and TPOT grow with the requests in flight)
    and cut short above 12 in flight.

    Attributes
    ----------
    seed : int
        Seed of the models' training, used when :func:`create_app` trains them itself.
    service_time_ms : float
        How long each primary or cheap answer waits (asynchronously) before it is sent.
    degrade_above : int or None
        More requests in flight than this are answered by the cheap model; ``None`` never degrades.
    shed_above : int or None
        More requests in flight than this are shed; ``None`` never sheds.
    shed_mode : {"503", "fallback"}
        Shed with an HTTP 503, or with a 200 carrying the constant fallback answer.
    ttft_ms, ttft_per_inflight_ms : float
        A streamed reply's first token waits ``ttft_ms + ttft_per_inflight_ms * (in_flight - 1)``, with the
        in-flight count at its arrival.
    tpot_ms, tpot_per_inflight_ms : float
        Each later token waits ``tpot_ms + tpot_per_inflight_ms * (in_flight - 1)``, with the count at that moment.
    cut_above : int or None
        More requests in flight than this at a stream's arrival cut its reply short; ``None`` never cuts.
    """

    seed: int = 0
    service_time_ms: float = 0.0
    degrade_above: int | None = None
    shed_above: int | None = None
    shed_mode: ShedMode = "503"
    ttft_ms: float = 20.0
    ttft_per_inflight_ms: float = 5.0
    tpot_ms: float = 5.0
    tpot_per_inflight_ms: float = 1.0
    cut_above: int | None = 12

    def __post_init__(self) -> None:
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be a non-negative number of milliseconds; got {value}")
        for name in ("degrade_above", "shed_above", "cut_above"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be a non-negative number of requests or None; got {value}")
        if self.shed_mode not in ("503", "fallback"):
            raise ValueError(f"shed_mode must be '503' or 'fallback'; got {self.shed_mode!r}")


@dataclass
class _Stats:
    requests: int = 0
    primary: int = 0
    cheap: int = 0
    fallback: int = 0
    rejected: int = 0
    bad_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    streams: int = 0
    cut_short: dict[str, int] = field(default_factory=lambda: dict.fromkeys(wire.CUT_KINDS, 0))


class _EventStream(StreamingResponse):
    """A server-sent event stream that calls ``on_close`` once it is over, however it ends.

    The in-flight count must cover the whole stream, not just the handler that returns it; Starlette's background
    tasks do not run when the client goes away, so the count is released here.
    """

    media_type = "text/event-stream"

    def __init__(
        self, events: AsyncGenerator[bytes, None], *, on_close: Callable[[], None], headers: Mapping[str, str]
    ) -> None:
        super().__init__(events, headers={"Cache-Control": "no-cache", **headers})
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            await self._events.aclose()  # a stream abandoned between two events is still suspended at its yield


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _parse_rows(body: bytes, task: Task, *, key: str, batch: bool) -> np.ndarray:
    """The request's rows as a float64 array of shape (n_rows, n_features), or a _BadRequest saying what is wrong."""
    document = wire.decode_json(body)
    if not isinstance(document, dict) or key not in document:
        raise _BadRequest(f'request body must be a JSON object with a "{key}" field')
    value = document[key]
    n = task.n_features
    nested = isinstance(value, list) and bool(value) and all(isinstance(row, list) for row in value)
    if nested and batch:
        rows = [_check_row(row, n, f"{key}[{i}]", task) for i, row in enumerate(value)]
    elif nested:
        raise _BadRequest(f"{key} must be one flat list of {n} numbers: this endpoint takes one sample per request")
    else:
        rows = [_check_row(value, n, key, task)]
    return wire.rows_array(rows, key)


class _Service:
    """The app's handlers and its per-app state (counters, in-flight requests)."""

    def __init__(self, config: ServerConfig, models: ModelSet) -> None:
        self.config = config
        self.tasks = {name: models[name] for name in MODEL_NAMES}
        self.stats = _Stats()
        self._service_time_s = config.service_time_ms / 1000
        self._cuts = 0  # streams cut short so far: picks the next cut-short kind in turn

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ready", "models": list(MODEL_NAMES)})

    async def stats_endpoint(self, request: Request) -> Response:
        stats = self.stats
        settings = asdict(self.config)
        return JSONResponse(
            {
                "requests": stats.requests,
                "tiers": {
                    "primary": stats.primary,
                    "cheap": stats.cheap,
                    "fallback": stats.fallback,
                    "rejected": stats.rejected,
                },
                "bad_requests": stats.bad_requests,
                "in_flight": stats.in_flight,
                "max_in_flight": stats.max_in_flight,
                "config": {k: v for k, v in settings.items() if k not in _STREAM_FIELDS},
                "streaming": {
                    "streams": stats.streams,
                    "cut_short": dict(stats.cut_short),
                    "config": {k: settings[k] for k in _STREAM_FIELDS},
                },
            }
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        """The counters in Prometheus' text format, as model servers expose them (for loadgrade's resource sampler)."""
        stats = self.stats
        lines = [
            "# HELP reference_requests_total Predict requests received.",
            "# TYPE reference_requests_total counter",
            f"reference_requests_total {stats.requests}",
            "# HELP reference_answers_total Answers by model tier.",
            "# TYPE reference_answers_total counter",
            *(
                f'reference_answers_total{{tier="{tier}"}} {getattr(stats, tier)}'
                for tier in ("primary", "cheap", "fallback", "rejected")
            ),
            "# HELP reference_in_flight Predict requests being answered now (the server's queue).",
            "# TYPE reference_in_flight gauge",
            f"reference_in_flight {stats.in_flight}",
            "# HELP reference_streams_total Streamed (server-sent events) replies begun.",
            "# TYPE reference_streams_total counter",
            f"reference_streams_total {stats.streams}",
            "# HELP reference_cut_short_total Streamed replies cut short under load, by how.",
            "# TYPE reference_cut_short_total counter",
            *(f'reference_cut_short_total{{reason="{kind}"}} {n}' for kind, n in stats.cut_short.items()),
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def predict_batch(self, request: Request) -> Response:
        return await self._predict(request, request.query_params.get("model", "digits"), batch=True)

    async def predict_one(self, request: Request) -> Response:
        return await self._predict(request, request.path_params["model"], batch=False)

    async def _predict(self, request: Request, name: str, *, batch: bool) -> Response:
        task = self.tasks.get(name)
        if task is None:
            return _error(404, f"unknown model {name!r}; known models are: {', '.join(MODEL_NAMES)}")
        key = "input_data" if batch else "features"

        def reply(answers: list[Any], served: str) -> Any:
            return {"output_data": answers} if batch else {"prediction": answers[0], "tier": served}

        return await self._serve(request, task, lambda body: _parse_rows(body, task, key=key, batch=batch), reply)

    async def _serve(
        self,
        request: Request,
        task: Task,
        parse: Callable[[bytes], np.ndarray],
        reply: Callable[[list[Any], str], Any],
        error: Callable[[int, str, Mapping[str, str] | None], Response] = _error,
    ) -> Response:
        """Count the request in flight, pick its tier, parse, answer (after the service time) and reply.

        Every protocol goes through here, so all of them degrade and shed alike; ``parse`` turns the body into
        feature rows (or raises _BadRequest), ``reply`` the answers into the protocol's JSON, ``error`` a status and
        message into the protocol's error response.
        """
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            tier = decide_tier(
                stats.in_flight, degrade_above=self.config.degrade_above, shed_above=self.config.shed_above
            )
            body = await request.body()
            if tier == "shed" and self.config.shed_mode == "503":
                stats.rejected += 1
                return error(503, "overloaded", {"X-Model-Tier": "shed"})
            try:
                X = parse(body)
            except _BadRequest as exc:
                stats.bad_requests += 1
                return error(400, str(exc), None)
            served: str
            answers: list[Any]
            if tier == "shed":
                served, answers = "fallback", [task.fallback] * len(X)
                stats.fallback += 1
            else:
                if self._service_time_s > 0:
                    await asyncio.sleep(self._service_time_s)
                model = task.primary if tier == "primary" else task.cheap
                # _parse_rows has checked finiteness; skipping sklearn's second check halves the cheap tree's cost
                with sklearn.config_context(assume_finite=True):
                    served, answers = tier, model.predict(X).tolist()
                if tier == "primary":
                    stats.primary += 1
                else:
                    stats.cheap += 1
            return JSONResponse(reply(answers, served), headers={"X-Model-Tier": served})
        finally:
            stats.in_flight -= 1

    # ------------------------------------------------------------------------ the other protocols' routes

    def _task(self, request: Request, versions: tuple[str, ...]) -> Task | str:
        """The task named in the path (and its version, when given), or why there is none."""
        name = request.path_params["model"]
        task = self.tasks.get(name)
        if task is None:
            return f"unknown model {name!r}; known models are: {', '.join(MODEL_NAMES)}"
        version = request.path_params.get("version")
        if version is not None and version not in versions:
            return f"model {name!r} has no version {version!r}; its versions are: {', '.join(versions)}"
        return task

    async def oip_live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def oip_ready(self, request: Request) -> Response:
        return JSONResponse({"ready": True})

    async def oip_server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "loadgrade-reference", "version": "1", "extensions": []})

    async def oip_model_ready(self, request: Request) -> Response:
        task = self._task(request, (wire.OIP_VERSION,))
        if isinstance(task, str):
            return _error(404, task)
        return JSONResponse({"name": task.name, "ready": True})

    async def oip_model_metadata(self, request: Request) -> Response:
        task = self._task(request, (wire.OIP_VERSION,))
        if isinstance(task, str):
            return _error(404, task)
        return JSONResponse(wire.oip_metadata(task))

    async def oip_infer(self, request: Request) -> Response:
        task = self._task(request, (wire.OIP_VERSION,))
        if isinstance(task, str):
            return _error(404, task)
        version = request.path_params.get("version")
        return await self._serve(
            request,
            task,
            lambda body: wire.parse_oip(wire.decode_json(body), task),
            lambda answers, served: wire.reply_oip(task, answers, version=version),
        )

    async def tf_status(self, request: Request) -> Response:
        task = self._task(request, (wire.TF_VERSION,))
        if isinstance(task, str):
            return _error(404, task)
        return JSONResponse(
            {"model_version_status": [{"version": wire.TF_VERSION, "state": "AVAILABLE", "status": {}}]}
        )

    async def tf_predict(self, request: Request) -> Response:
        task = self._task(request, (wire.TF_VERSION,))
        if isinstance(task, str):
            return _error(404, task)
        return await self._serve(
            request,
            task,
            lambda body: wire.parse_tf(wire.decode_json(body), task),
            lambda answers, served: {"predictions": answers},
        )

    async def torchserve_ping(self, request: Request) -> Response:
        return JSONResponse({"status": "Healthy"})

    async def torchserve_predict(self, request: Request) -> Response:
        task = self._task(request, (wire.TORCHSERVE_VERSION,))
        if isinstance(task, str):
            return _torchserve_error(404, task)
        return await self._serve(
            request,
            task,
            lambda body: wire.parse_torchserve(wire.decode_json(body), task),
            lambda answers, served: answers[0],
            _torchserve_error,
        )

    async def openai_models(self, request: Request) -> Response:
        data = [{"id": name, "object": "model", "owned_by": "loadgrade-reference"} for name in MODEL_NAMES]
        return JSONResponse({"object": "list", "data": data})

    async def openai_chat(self, request: Request) -> Response:
        return await self._openai(request, wire.parse_chat, wire.reply_chat, chat=True)

    async def openai_completion(self, request: Request) -> Response:
        return await self._openai(request, wire.parse_completion, wire.reply_completion, chat=False)

    async def _openai(
        self,
        request: Request,
        parse: Callable[[Any, Task], np.ndarray],
        reply: Callable[..., dict[str, Any]],
        *,
        chat: bool,
    ) -> Response:
        try:
            document = wire.decode_json(await request.body())
            options = wire.openai_options(document, chat=chat)
        except _BadRequest as exc:
            return _openai_error(400, str(exc), None)
        task = self.tasks.get(options.model)
        if task is None:
            message = f"The model {options.model!r} does not exist; known models are: {', '.join(MODEL_NAMES)}"
            return JSONResponse(wire.openai_error(message, code="model_not_found"), status_code=404)
        if options.stream:
            return self._stream(task, document, options, parse, chat=chat)
        return await self._serve(
            request,
            task,
            lambda body: parse(document, task),
            lambda answers, served: reply(task, answers[0], document, max_tokens=options.max_tokens),
            _openai_error,
        )

    def _stream(
        self,
        task: Task,
        document: dict[str, Any],
        options: wire.OpenAIOptions,
        parse: Callable[[Any, Task], np.ndarray],
        *,
        chat: bool,
    ) -> Response:
        """Like :meth:`_serve`, for a streamed reply: paced by TTFT and TPOT, cut short above ``cut_above``.

        The request stays in flight until its stream is over (:class:`_EventStream` releases it). Shedding and the
        cheap tier apply as to any request; a shed stream in fallback mode is sent at once and never cut.
        """
        stats, config = self.stats, self.config
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        arrived = stats.in_flight
        streaming = False
        try:
            tier = decide_tier(arrived, degrade_above=config.degrade_above, shed_above=config.shed_above)
            if tier == "shed" and config.shed_mode == "503":
                stats.rejected += 1
                return _openai_error(503, "overloaded", {"X-Model-Tier": "shed"})
            try:
                X = parse(document, task)
            except _BadRequest as exc:
                stats.bad_requests += 1
                return _openai_error(400, str(exc), None)
            cut: wire.CutKind | None = None
            if tier == "shed":
                served, answer = "fallback", task.fallback
                stats.fallback += 1
            else:
                model = task.primary if tier == "primary" else task.cheap
                with sklearn.config_context(assume_finite=True):
                    served, answer = tier, model.predict(X).tolist()[0]
                if tier == "primary":
                    stats.primary += 1
                else:
                    stats.cheap += 1
                if config.cut_above is not None and arrived > config.cut_above:
                    cut = wire.CUT_KINDS[self._cuts % len(wire.CUT_KINDS)]
                    self._cuts += 1
                    stats.cut_short[cut] += 1
            stats.streams += 1
            frames = wire.stream_frames(task, answer, document, options, chat=chat, cut=cut)
            events = self._paced(frames, arrived, paced=tier != "shed")
            response = _EventStream(events, on_close=self._stream_over, headers={"X-Model-Tier": served})
            streaming = True
            return response
        finally:
            if not streaming:
                stats.in_flight -= 1

    def _stream_over(self) -> None:
        self.stats.in_flight -= 1

    def _delay_s(self, base_ms: float, per_inflight_ms: float, in_flight: int) -> float:
        return (base_ms + per_inflight_ms * max(0, in_flight - 1)) / 1000

    async def _paced(self, frames: wire.StreamFrames, arrived: int, *, paced: bool) -> AsyncGenerator[bytes, None]:
        """The frames as written: events due at the same moment go out in one write, each write at once."""
        config = self.config
        if paced:
            await asyncio.sleep(self._delay_s(config.ttft_ms, config.ttft_per_inflight_ms, arrived))
        if not frames.tokens:
            yield b"".join(frames.opening + frames.closing)
            return
        last = len(frames.tokens) - 1
        for position, token in enumerate(frames.tokens):
            if position and paced:
                await asyncio.sleep(self._delay_s(config.tpot_ms, config.tpot_per_inflight_ms, self.stats.in_flight))
            before = frames.opening if position == 0 else ()
            after = frames.closing if position == last else ()
            yield b"".join((*before, token, *after))


def _torchserve_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    kind = {400: "BadRequestException", 404: "ModelNotFoundException", 503: "ServiceUnavailableException"}
    body = {"code": status, "type": kind.get(status, "InternalServerException"), "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _openai_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse(wire.openai_error(message, kind=kind), status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, headers=exc.headers)


def create_app(config: ServerConfig, models: ModelSet | None = None) -> Starlette:
    """Build the ASGI app; trains the models with ``config.seed`` unless ``models`` are given.

    Each app has its own counters, so two apps in one process do not share their in-flight count.
    """
    service = _Service(config, models if models is not None else train_models(config.seed))
    app = Starlette(
        routes=[
            Route("/health", service.health, methods=["GET"]),
            Route("/stats", service.stats_endpoint, methods=["GET"]),
            Route("/metrics", service.metrics_endpoint, methods=["GET"]),
            Route("/predict", service.predict_batch, methods=["POST"]),
            Route("/v1/models/{model}/predict", service.predict_one, methods=["POST"]),
            # open-inference-v2 (KServe v2, MLServer, Triton)
            Route("/v2", service.oip_server_metadata, methods=["GET"]),
            Route("/v2/health/live", service.oip_live, methods=["GET"]),
            Route("/v2/health/ready", service.oip_ready, methods=["GET"]),
            Route("/v2/models/{model}", service.oip_model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", service.oip_model_metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", service.oip_model_ready, methods=["GET"]),
            Route("/v2/models/{model}/infer", service.oip_infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", service.oip_infer, methods=["POST"]),
            # tf-serving
            Route("/v1/models/{model}:predict", service.tf_predict, methods=["POST"]),
            Route("/v1/models/{model}/versions/{version}:predict", service.tf_predict, methods=["POST"]),
            Route("/v1/models/{model}/versions/{version}", service.tf_status, methods=["GET"]),
            # torchserve
            Route("/ping", service.torchserve_ping, methods=["GET"]),
            Route("/predictions/{model}", service.torchserve_predict, methods=["POST"]),
            Route("/predictions/{model}/{version}", service.torchserve_predict, methods=["POST"]),
            # openai-chat, openai-completions
            Route("/v1/models", service.openai_models, methods=["GET"]),
            Route("/v1/chat/completions", service.openai_chat, methods=["POST"]),
            Route("/v1/completions", service.openai_completion, methods=["POST"]),
            Route("/v1/models/{model}", service.tf_status, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.service = service
    return app


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints ``LISTENING <url>`` once its sockets accept connections."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"{_LISTENING}{self.url}", flush=True)


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _bind(host: str, port: int) -> socket.socket:
    """Bind (not yet listen) a socket ourselves, so the real port is known even for port 0."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _non_negative(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be non-negative; got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        # "(default: None)" says nothing; those options' help says what leaving them out means
        return action.help if action.default is None else super()._get_help_string(action)


_DESCRIPTION = """\
Serve scikit-learn models (digits classifier, diabetes regressor) over HTTP, with answers that degrade under load.

degradation model:
  Each predict request counts the requests in flight when it arrives, itself included.
    more than --shed-above     shed: HTTP 503 {"error": "overloaded"} (--shed-mode 503), or a 200 with a constant
                               fallback answer, tier "fallback" (--shed-mode fallback); answered at once
    more than --degrade-above  the cheap model answers (digits: ~72 % instead of ~97 % accuracy)
    otherwise                  the primary model answers
  Primary and cheap answers both wait --service-time-ms (asyncio.sleep), so with N users in a closed loop about N
  requests are in flight: --degrade-above 8 degrades once more than 8 users are busy at the same time.

streaming model ("stream": true on the OpenAI endpoints; server-sent events as OpenAI sends them):
  A streamed reply is in flight until its last event. Its first token waits
  --ttft-ms + --ttft-per-inflight-ms x (in flight at arrival - 1), each later token
  --tpot-ms + --tpot-per-inflight-ms x (in flight now - 1); --service-time-ms does not apply.
  More than --cut-above in flight at arrival: the reply is cut short, each such stream in turn
    1. after 2 tokens, before the answer, with finish_reason "length"
    2. empty: no text, finish_reason "stop"
    3. after 2 tokens with no finish_reason and no [DONE]
  Shedding and the cheap model apply to streams as to any request.

endpoints (MODEL is digits or diabetes):
  GET /health  GET /stats
  POST /predict[?model=diabetes]                          flask-predict
  POST /v1/models/MODEL/predict                           generic
  POST /v2/models/MODEL[/versions/1]/infer                open-inference-v2 (+ GET /v2/health/ready, /v2/models/MODEL)
  POST /v1/models/MODEL[/versions/1]:predict              tf-serving
  POST /predictions/MODEL[/1.0]                           torchserve (+ GET /ping)
  POST /v1/chat/completions, /v1/completions              openai-chat, openai-completions ("model": MODEL; the
                                                          prompt holds the features as a JSON list; max_tokens
                                                          and "stream": true are honoured)

Prints "LISTENING http://HOST:PORT" on stdout once it accepts connections; stops on SIGTERM or SIGINT."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION, formatter_class=_HelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; loopback only unless --allow-remote")
    parser.add_argument("--port", type=_non_negative(int), default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--allow-remote", action="store_true", help="allow a --host that is not a loopback address")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split and the models")
    parser.add_argument(
        "--service-time-ms",
        type=_non_negative(float),
        default=0.0,
        metavar="MS",
        help="time each primary or cheap non-streamed answer takes",
    )
    parser.add_argument(
        "--degrade-above",
        type=_non_negative(int),
        default=None,
        metavar="K",
        help="in-flight count above which the cheap model answers (default: never degrade)",
    )
    parser.add_argument(
        "--shed-above",
        type=_non_negative(int),
        default=None,
        metavar="M",
        help="in-flight count above which requests are shed (default: never shed)",
    )
    parser.add_argument("--shed-mode", choices=["503", "fallback"], default="503", help="how to shed a request")
    defaults = ServerConfig()
    streaming = parser.add_argument_group(
        "streamed replies", '("stream": true on /v1/chat/completions and /v1/completions; see "streaming model" above)'
    )
    for option, default, text in (
        ("--ttft-ms", defaults.ttft_ms, "time to a streamed reply's first token, with 1 request in flight"),
        ("--ttft-per-inflight-ms", defaults.ttft_per_inflight_ms, "time to first token added per other request"),
        ("--tpot-ms", defaults.tpot_ms, "time between two tokens of a streamed reply, with 1 request in flight"),
        ("--tpot-per-inflight-ms", defaults.tpot_per_inflight_ms, "time between tokens added per other request"),
    ):
        streaming.add_argument(option, type=_non_negative(float), default=default, metavar="MS", help=text)
    streaming.add_argument(
        "--cut-above",
        type=_non_negative(int),
        default=defaults.cut_above,
        metavar="C",
        help="in-flight count above which streamed replies are cut short; 0 never cuts",
    )
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        default="warning",
        help="uvicorn's log level (logs go to stderr; there is no access log)",
    )
    return parser


def _config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        seed=args.seed,
        service_time_ms=args.service_time_ms,
        degrade_above=args.degrade_above,
        shed_above=args.shed_above,
        shed_mode=args.shed_mode,
        ttft_ms=args.ttft_ms,
        ttft_per_inflight_ms=args.ttft_per_inflight_ms,
        tpot_ms=args.tpot_ms,
        tpot_per_inflight_ms=args.tpot_per_inflight_ms,
        cut_above=args.cut_above or None,  # on the command line 0 means never: there is no "None" to type
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m loadgrade.servers.reference") -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit status (``loadgrade serve-reference`` too)."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if not args.allow_remote and not _is_loopback(args.host):
        parser.error(
            f"refusing to listen on {args.host!r}: it is not a loopback address and the server has no "
            "authentication; pass --allow-remote to listen on it anyway"
        )
    config = _config(args)
    # uvicorn handles these signals while it serves, then restores these handlers and re-raises the signal; exiting
    # with status 0 from here makes a requested stop a clean one, during training as well as after serving.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    models = train_models(config.seed)
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    uvicorn_config = uvicorn.Config(
        create_app(config, models),
        log_level=args.log_level,
        access_log=False,
        loop="asyncio",
        http="h11",
        lifespan="off",
        # load tests pause between requests; a short keep-alive would make clients race the server's close
        timeout_keep_alive=60,
        timeout_graceful_shutdown=5,
    )
    _AnnouncingServer(uvicorn_config, _url(sock)).run(sockets=[sock])
    return 0


class _OutputPump:
    """Reads the server's output in a thread, so its pipe never fills up; keeps the last lines for error messages."""

    def __init__(self, stream: Any) -> None:
        self.tail: deque[str] = deque(maxlen=40)
        self.early_lines: queue.Queue[str | None] = queue.Queue()
        self._announced = False
        self._stream = stream
        self.thread = threading.Thread(target=self._run, name="reference-server-output", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for line in self._stream:
                self.tail.append(line)
                if not self._announced:
                    self._announced = line.startswith(_LISTENING)
                    self.early_lines.put(line)
        except (OSError, ValueError):  # the pipe was closed under us: the server is gone either way
            pass
        finally:
            self.early_lines.put(None)

    def wait_for_url(self, proc: subprocess.Popen[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.early_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(
                    f"reference server did not print {_LISTENING.strip()} within {timeout} s; output:\n{self.output()}"
                ) from None
            if line is None:
                raise RuntimeError(
                    f"reference server exited with status {proc.wait()} before listening; output:\n{self.output()}"
                )
            if line.startswith(_LISTENING):
                return line[len(_LISTENING) :].strip()

    def output(self) -> str:
        return "".join(self.tail).rstrip() or "(none)"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM to this PID only: the server has no children
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 30) -> Iterator[str]:
    """Run ``python -m loadgrade.servers.reference --port 0 ARGS`` in a subprocess; yield its URL; stop it at the end.

    The server runs in its own process group (a Ctrl-C in the terminal reaches only the caller) and is stopped by
    its PID: SIGTERM, then SIGKILL if it has not exited 5 s later. Its stdout and stderr are drained in a thread.

    Parameters
    ----------
    *args : str
        More command-line options, e.g. ``"--service-time-ms", "50"``; a later ``--port`` overrides the 0.
    timeout : float, default=30
        Seconds to wait for the ``LISTENING`` line.

    Yields
    ------
    str
        The base URL, e.g. ``http://127.0.0.1:40123``.

    Raises
    ------
    RuntimeError
        The server exited before listening (the message holds its output, e.g. a refused option).
    TimeoutError
        It did not listen within ``timeout`` seconds.

    Examples
    --------
    >>> import urllib.request
    >>> with running_server("--service-time-ms", "1") as url:
    ...     urllib.request.urlopen(f"{url}/health").status
    200
    """
    env = dict(os.environ)
    # the child must import this package wherever the caller runs from
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_IMPORT_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgrade.servers.reference", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        process_group=0,  # its own process group
    )
    pump: _OutputPump | None = None
    try:
        assert proc.stdout is not None
        pump = _OutputPump(proc.stdout)
        yield pump.wait_for_url(proc, timeout)
    finally:
        _stop(proc)
        if pump is not None:
            # the pipe reaches EOF once the server is gone, which ends the pump
            pump.thread.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
