"""The worker's replay (or a standalone process's): samples from the master, requests, rows shipped back.

A worker holds no share of the dataset of its own: its users take samples from a small buffer that the master's
:class:`~loadgrade.dispenser.SampleDispenser` fills on demand, so whichever workers have users send the whole of
every pass. Each request becomes one row per sample, buffered and shipped to the master in batches.
"""

from __future__ import annotations

from locust.env import Environment
from locust.exception import CatchResponseError
from locust.runners import WorkerRunner

import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.queue

from loadgrade import __version__
from loadgrade.client import EndpointClient, Exchange, endpoint_client
from loadgrade.dataset import Dataset
from loadgrade.messages import (
    MSG_CHUNK,
    MSG_DRAIN,
    MSG_DRAINED,
    MSG_HELLO,
    MSG_LEAVING,
    MSG_NEED,
    MSG_RATE,
    MSG_REFUSE,
    MSG_RESET,
    MSG_RETURN,
    MSG_ROWS,
    SHIP_BATCH_ROWS,
    SHIP_INTERVAL_S,
)
from loadgrade.protocols import ProtocolBase
from loadgrade.recording import worker_row
from loadgrade.responses import interpret_batch, interpret_response, interpret_stream
from loadgrade.shapes import ArrivalProcess, RateLoad, SearchLoad
from loadgrade.streaming import StreamExchange

if TYPE_CHECKING:
    from loadgrade.locust_plugin import Controller

logger = logging.getLogger("loadgrade")

REQUEST_NAME = "predict"
WAIT_FOR_SAMPLES_S = 1.0  # a user with nothing to send asks again after this long


def _failure_name(error_kind: str, status_code: int) -> str:
    """How a failed request shows in Locust's failure table: one line per kind (and HTTP status), not per message."""
    return f"{error_kind} {status_code}" if error_kind == "http" else error_kind


class SampleBuffer:
    """The samples a worker holds for its users: refilled from the master before it runs dry.

    ``ask(n)`` sends the master a request for about ``n`` more; :meth:`fill` receives the answer. In a standalone
    run the answer arrives within the ``ask`` call itself.
    """

    def __init__(self, ask: Callable[[int], None]) -> None:
        self._ask = ask
        self._items: deque[tuple[int, int]] = deque()
        self.epoch = 0
        self._pending = False
        self._stage_done = False  # the master said this stage has nothing more to hand out
        self._arrived = gevent.event.Event()
        self.want = 8

    def __len__(self) -> int:
        return len(self._items)

    def _refill(self) -> None:
        if not self._pending and not self._stage_done and len(self._items) <= self.want // 2:
            self._pending = True
            self._arrived.clear()
            self._ask(self.want)

    def next(self) -> tuple[int, int] | None:
        """The next sample and its pass, waiting (bounded) for the master's answer; None when there is none."""
        self._refill()
        if not self._items and self._pending and not self._arrived.wait(WAIT_FOR_SAMPLES_S):
            self._pending = False  # no answer (lost, or the master is busy): ask again next time
        if not self._items:
            return None
        item = self._items.popleft()
        self._refill()
        return item

    def take_same_pass(self, n: int, pass_number: int) -> list[tuple[int, int]]:
        """Up to ``n`` more samples of the same pass, from what is here (a batched request never waits)."""
        items: list[tuple[int, int]] = []
        while self._items and len(items) < n and self._items[0][1] == pass_number:
            items.append(self._items.popleft())
        return items

    def fill(self, items: list[tuple[int, int]], *, epoch: int, done: bool) -> list[tuple[int, int]]:
        """The master's answer; returns the items that belong to an earlier stage (to be handed back)."""
        self._pending = False
        stale: list[tuple[int, int]] = []
        if epoch < self.epoch:
            stale = items
        else:
            self.epoch = epoch
            self._items.extend(items)
            self._stage_done = done and not items
        self._arrived.set()
        return stale

    def reset(self, epoch: int) -> list[tuple[int, int]]:
        """A new stage began: hand back everything held; the next ask starts the new stage's order."""
        held = list(self._items)
        self._items.clear()
        self.epoch = max(self.epoch, epoch)
        self._stage_done = False
        self._pending = False
        self._arrived.set()
        return held

    def release(self) -> list[tuple[int, int]]:
        """Everything held, for a worker that has no users left (or is leaving)."""
        held = list(self._items)
        self._items.clear()
        return held


class WorkerReplay:
    """The requests of one process: its users, their samples, their rows."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.environment: Environment = controller.environment
        self._fire_request = self.environment.events.request.fire
        self.dataset: Dataset | None = None
        self.protocol: ProtocolBase | None = None
        self.buffer: SampleBuffer | None = None
        self.refused = False
        self._bodies: list[bytes | None] = []
        self._rows: list[list[Any]] = []
        self._arrivals: gevent.queue.Queue[float] | None = None  # open model: due times waiting for a free user
        self._scheduler: gevent.Greenlet | None = None
        self._share_of_rate = 0.0
        self._sequence = 0
        self._requests = 0  # requests whose rows are in self._rows (a batched request has several rows)
        self._worker = 0
        self._users_created = 0
        self._in_flight = 0
        self._shipper: gevent.Greenlet | None = None

    @property
    def runner(self) -> Any:
        return self.environment.runner

    # ------------------------------------------------------------------------------------------ identity

    def say_hello(self) -> None:
        """Tell the master who this worker is, so that a worker of another run is refused before it sends.

        Said at start-up and again when a test starts (a master still starting up may not have heard the first),
        always before the first ask for samples, on the same socket.
        """
        options = self.environment.parsed_options
        self.runner.send_message(
            MSG_HELLO,
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "ppid": os.getppid(),
                # a --processes child: its master is its parent process
                "processes_child": self._is_processes_child(),
                "scenario_name": self._scenario_name(),
                "run_id": str(getattr(options, "run_id", "") or "") if options is not None else "",
                "loadgrade_version": __version__,
            },
        )

    def _is_processes_child(self) -> bool:
        """A ``--processes`` child of a master (its parent process is its master), not of ``--worker --processes``."""
        options = self.environment.parsed_options
        forked = bool(options is not None and getattr(options, "processes", None))
        started_as_worker = "--worker" in sys.argv or os.environ.get("LOCUST_MODE_WORKER", "").lower() in ("1", "true")
        return forked and not started_as_worker

    def _scenario_name(self) -> str:
        """The name of the scenario this worker was started with, if any (a master's is sent with the spawn)."""
        try:
            return self.controller.ensure_scenario().name if self.controller.scenario_arg() else ""
        except Exception:  # a broken scenario is reported when the test starts
            return ""

    def on_refuse(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.refused = True
        logger.error(f"the master at {self._master_address()} refused this worker: {msg.data['reason']}")
        gevent.spawn(self.runner.quit)

    def _master_address(self) -> str:
        options = self.environment.parsed_options
        host = getattr(options, "master_host", "?") if options is not None else "?"
        port = getattr(options, "master_port", "?") if options is not None else "?"
        return f"{host}:{port}"

    # ------------------------------------------------------------------------------------------ samples

    def _ask(self, n: int) -> None:
        self.runner.send_message(MSG_NEED, {"n": n})

    def on_chunk(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.buffer is None:
            items = [tuple(item) for item in msg.data["items"]]
            if items:  # the replay already ended here: back to the master
                self.runner.send_message(MSG_RETURN, {"items": items, "epoch": int(msg.data["epoch"])})
            return
        stale = self.buffer.fill(
            [(int(i), int(p)) for i, p in msg.data["items"]], epoch=int(msg.data["epoch"]), done=bool(msg.data["done"])
        )
        if stale:
            self.runner.send_message(MSG_RETURN, {"items": stale, "epoch": int(msg.data["epoch"])})

    def on_reset(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.buffer is None:
            return
        epoch = self.buffer.epoch
        held = self.buffer.reset(int(msg.data["epoch"]))
        if held:
            self.runner.send_message(MSG_RETURN, {"items": held, "epoch": epoch})

    def _hand_back(self) -> None:
        if self.buffer is not None and len(self.buffer):
            self.runner.send_message(MSG_RETURN, {"items": self.buffer.release(), "epoch": self.buffer.epoch})

    # ------------------------------------------------------------------------------------------ the replay

    def on_rate(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._share_of_rate = float(msg.data["rate"])

    def set_rate(self, rate: float) -> None:
        self._share_of_rate = rate

    def _schedule_arrivals(self, process: ArrivalProcess) -> None:
        """Open model: put due times into the queue at this process's share of the rate, whatever the replies do."""
        assert self._arrivals is not None
        due = time.time()
        while True:
            rate = self._share_of_rate
            if rate <= 0:
                gevent.sleep(0.05)
                due = time.time()
                continue
            due += process.gap(rate)
            delay = due - time.time()
            if delay > 0:
                gevent.sleep(delay)
            self._arrivals.put(due)

    def begin(self) -> None:
        """Prepare this process's replay; on workers the scenario option arrives with the spawn."""
        if self.buffer is not None:  # this test's replay has begun already (see the init listener)
            return
        scenario = self.controller.ensure_scenario()
        if isinstance(self.runner, WorkerRunner):
            self.register(self.runner, distributed=True)
            self.say_hello()
        self.dataset = scenario.data()
        self.protocol = scenario.protocol
        self.buffer = SampleBuffer(self._ask)
        self._bodies = [None] * len(self.dataset)
        self._rows = []
        self._requests = 0
        self._sequence = 0
        self._worker = max(int(getattr(self.runner, "worker_index", 0)), 0)
        self._shipper = gevent.spawn(self._ship_forever)
        load = scenario.load
        if isinstance(load, RateLoad) or (isinstance(load, SearchLoad) and load.variable == "rate"):
            self._arrivals = gevent.queue.Queue()
            seed = None if load.seed is None else load.seed * 1000 + self._worker
            self._scheduler = gevent.spawn(self._schedule_arrivals, ArrivalProcess(load.arrival, seed=seed))

    def end(self) -> None:
        for greenlet in (self._shipper, self._scheduler):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._shipper = self._scheduler = None
        if self._arrivals is not None and self._arrivals.qsize():
            logger.info(f"{self._arrivals.qsize()} arrivals were still waiting for a user at the end")
        self._arrivals = None
        self._share_of_rate = 0.0
        self._hand_back()
        self.ship()
        self.buffer = None

    def configure_user(self, user: Any) -> None:
        """Give a new user its id and its own connection to the endpoint (the web UI's host, else the scenario's)."""
        scenario = self.controller.ensure_scenario()
        user.host = self.environment.host or scenario.endpoint.base_url
        self._users_created += 1
        user.loadgrade_user_id = self._users_created
        user.endpoint = endpoint_client(scenario, host=user.host)

    def replay_one(self, user: Any) -> None:
        """Send the next sample, classify the reply, record it and report it to Locust.

        The rows are appended and Locust's ``request`` event fired with no switch to another greenlet in between,
        so there is exactly one row for each request Locust counts, with the same send time and response time.
        """
        buffer = self.buffer
        if buffer is None or self.refused:
            gevent.sleep(WAIT_FOR_SAMPLES_S)
            return
        t_scheduled = None
        if self._arrivals is not None:  # open model: wait for the next due arrival (or take a late one at once)
            t_scheduled = self._arrivals.get()
            wait = t_scheduled - time.time()
            if wait > 0:
                gevent.sleep(wait)
        buffer.want = min(max(4 * int(self.runner.user_count or 1), 8), 512)
        item = buffer.next()
        if item is None:  # nothing to send now (the stage has sent its passes): wait for the next stage
            gevent.sleep(WAIT_FOR_SAMPLES_S)
            return
        dataset, protocol = self.dataset, self.protocol
        assert dataset is not None
        assert protocol is not None
        batch = protocol.samples_per_request
        if batch == 1:
            items = [item]
            body = self._bodies[item[0]]
            if body is None:
                body = self._bodies[item[0]] = protocol.build_body(dataset.sample(item[0]))
        else:  # several samples in one request (the last one of a pass may carry fewer), one record each
            items = [item, *buffer.take_same_pass(batch - 1, item[1])]
            body = protocol.build_batch([dataset.sample(index) for index, _ in items])
        endpoint: EndpointClient = user.endpoint
        self._in_flight += 1
        try:
            exchange: Exchange | StreamExchange = (
                endpoint.send_stream(body) if protocol.streams else endpoint.send(body)
            )
        finally:
            self._in_flight -= 1
        status, content = exchange.status_code, exchange.content
        if isinstance(exchange, StreamExchange):
            outcomes = [interpret_stream(protocol, exchange)]
            response_bytes = exchange.response_bytes
        else:
            outcomes = (
                [interpret_response(protocol, status_code=status, content=content, exception=exchange.exception)]
                if batch == 1
                else interpret_batch(
                    protocol, n=len(items), status_code=status, content=content, exception=exchange.exception
                )
            )
            response_bytes = len(content) if content else 0
        self._sequence += 1
        self._requests += 1
        request_id = f"{self._worker}-{self._sequence}"
        for position, ((index, pass_number), outcome) in enumerate(zip(items, outcomes, strict=True)):
            self._rows.append(
                worker_row(
                    request_id=request_id if batch == 1 else f"{request_id}.{position}",
                    sample_id=dataset.ids[index],
                    worker_index=self._worker,
                    user_id=user.loadgrade_user_id,
                    t_sent=exchange.start_time,
                    latency_ms=exchange.response_time_ms,
                    status_code=status,
                    ok=outcome.ok,
                    error_kind=outcome.error_kind,
                    error=outcome.error,
                    prediction=outcome.prediction,
                    response_bytes=response_bytes,
                    pass_number=pass_number,
                    t_scheduled=t_scheduled,
                    usage=outcome.usage,
                    llm=outcome.llm,
                )
            )
        failed = outcomes[0] if batch == 1 else next((o for o in outcomes if not o.ok), outcomes[0])
        self._fire_request(
            request_type=endpoint.method,
            name=REQUEST_NAME,
            response_time=exchange.response_time_ms,
            response_length=response_bytes,
            exception=None if failed.ok else CatchResponseError(_failure_name(failed.error_kind, status)),
            context=user.context(),
            response=None,
            start_time=exchange.start_time,
            url=endpoint.url,
        )
        if len(self._rows) >= SHIP_BATCH_ROWS:
            self.ship()

    # ------------------------------------------------------------------------------------------ shipping

    def ship(self) -> None:
        """Send buffered rows to the master (a direct call when standalone)."""
        if self._rows:
            rows, self._rows = self._rows, []
            requests, self._requests = self._requests, 0
            self.runner.send_message(MSG_ROWS, {"rows": rows, "requests": requests})

    def _ship_forever(self) -> None:
        while True:
            gevent.sleep(SHIP_INTERVAL_S)
            self.ship()
            if not self.runner.user_count and self._in_flight == 0:
                self._hand_back()  # no users left here: the samples held go to the workers that have some

    def leave(self, **_: Any) -> None:
        """A worker shutting down (SIGTERM, Ctrl-C) stops its users and ships everything before it says goodbye."""
        if self.buffer is None and not self._rows:
            return
        self.runner.stop()  # stops the users; our test_stop listener ships the last rows
        self._hand_back()
        self.ship()
        self.runner._send_stats()
        self.runner.send_message(MSG_LEAVING, None)

    def on_drain(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.runner.stop()  # stops the users; our test_stop listener ships the last rows
        self._hand_back()
        self.ship()
        self.runner._send_stats()  # Locust's own final report, before we say we're done (same socket, in order)
        self.runner.send_message(MSG_DRAINED, None)

    def register(self, runner: Any, *, distributed: bool) -> None:
        """Listen to the master's messages (a standalone process talks to itself through the same calls).

        Called in ``init`` and again when a test starts: a worker that joins a running test gets its spawn (and
        so its ``test_start``) while it is still connecting, before ``init``.
        """
        handlers = {MSG_CHUNK: self.on_chunk, MSG_RESET: self.on_reset}
        if distributed:
            handlers |= {MSG_RATE: self.on_rate, MSG_DRAIN: self.on_drain, MSG_REFUSE: self.on_refuse}
        for kind, handler in handlers.items():
            if kind not in runner.custom_messages:
                runner.register_message(kind, handler)
