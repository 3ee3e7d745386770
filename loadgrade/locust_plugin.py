"""The glue between Locust and loadgrade: options, events, messages and the per-request path.

Importing this module registers loadgrade's listeners on Locust's global ``events``; a locustfile then only needs
a user class that calls :meth:`Controller.replay_one` (see ``locustfiles/replay.py``).

Roles. The *master* (or the single process of a standalone run) owns the run: the run directory, the one
``records.csv`` writer, the load timeline and ``run.json``. *Workers* (or the same standalone process) own the
requests: each replays its share of every dataset pass and ships its rows to the master in batches over Locust's
messaging. When the test stops, the master asks every worker to stop its users and ship its last rows before it
closes the run ("drain"), so the tail of a run is never lost, and Locust's request count and ours agree.
"""

from __future__ import annotations

from locust import events
from locust.env import Environment
from locust.exception import CatchResponseError
from locust.runners import STATE_MISSING, LocalRunner, MasterRunner, WorkerRunner
from locust.shape import LoadTestShape

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.queue

from loadgrade import __version__
from loadgrade.client import EndpointClient
from loadgrade.dataset import Dataset, SampleFeeder
from loadgrade.errors import ScenarioError
from loadgrade.ledger import WorkerLedger
from loadgrade.protocols import ProtocolBase
from loadgrade.recording import LoadTimeline, RecordWriter, worker_row
from loadgrade.resources import ResourceSampler
from loadgrade.responses import interpret_batch, interpret_response
from loadgrade.runinfo import default_run_dir, run_info, write_run_info
from loadgrade.scenario import Scenario, load_scenario
from loadgrade.shapes import (
    ArrivalProcess,
    CapacitySearch,
    RateLoad,
    SearchLoad,
    StageClock,
    StagePlan,
    search_stage,
    stage_plan,
)

logger = logging.getLogger("loadgrade")

MSG_PLAN = "loadgrade_plan"  # master → worker: your slot among the workers of this test
MSG_ROWS = "loadgrade_rows"  # worker → master: a batch of records
MSG_EXHAUSTED = "loadgrade_exhausted"  # worker → master: my share of every pass has been sent
MSG_DRAIN = "loadgrade_drain"  # master → worker: stop your users and ship everything now
MSG_DRAINED = "loadgrade_drained"  # worker → master: done, nothing more will come
MSG_LEAVING = "loadgrade_leaving"  # worker → master: I am shutting down and have shipped everything
MSG_RATE = "loadgrade_rate"  # master → worker: open model, your share of the arrival rate from now on

SHIP_INTERVAL_S = 0.5  # rows reach the master at least this often ...
SHIP_BATCH_ROWS = 2000  # ... or as soon as this many are buffered
RUN_INFO_INTERVAL_S = 5.0  # the master rewrites run.json (records so far) this often (records.csv: every batch)
USERS_SAMPLE_INTERVAL_S = 0.2
DRAIN_TIMEOUT_S = 15.0
REQUEST_NAME = "predict"
USER_AGENT = f"loadgrade/{__version__}"
RATE_SHORTFALL = 0.9  # warn when a stage achieved less than this share of its target arrival rate


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    # Locust's own parser (not an argument group) knows include_in_web_ui
    parser.add_argument(
        "--scenario",
        type=str,
        default="",
        env_var="LOADGRADE_SCENARIO",
        include_in_web_ui=True,
        help="Scenario YAML file (endpoint, protocol, dataset, load, SLOs)",
    )
    parser.add_argument(
        "--run-dir",
        type=str,
        default="",
        env_var="LOADGRADE_RUN_DIR",
        include_in_web_ui=False,
        help="Directory for records.csv and run.json (default: the scenario's output.dir, else "
        "runs/<scenario>-<UTC timestamp>; later tests in the same process get -2, -3, ...)",
    )


class RunSession:
    """One test's output on the master (or standalone process): the run directory and its one writer."""

    def __init__(
        self, controller: Controller, scenario: Scenario, run_dir: Path, timeline: LoadTimeline, worker_count: int
    ) -> None:
        self.controller = controller
        self.scenario = scenario
        self.run_dir = run_dir
        self.timeline = timeline
        self.worker_count = worker_count
        self.t_start = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = RecordWriter(run_dir / "records.csv", timeline)
        self.exhausted: set[str] = set()
        self.drained: set[str] = set()
        self.ledger = WorkerLedger(SHIP_INTERVAL_S)
        self.stopping = False
        self.extra: dict[str, Any] = {}  # more for run.json (e.g. a capacity search's outcome)
        self.requests_recorded = 0  # equals writer.rows_written unless requests carry several samples
        self._write_info(t_end=None, locust_requests=None, locust_failures=None)
        self._info_updater = gevent.spawn(self._update_info_forever)
        self._resources: gevent.Greenlet | None = None
        if scenario.resources is not None:
            sampler = ResourceSampler(scenario.resources, run_dir / "resources.csv")
            self._resources = gevent.spawn(self._sample_resources, sampler)

    def _sample_resources(self, sampler: ResourceSampler) -> None:
        try:
            while not self.writer.closed:
                sampler.sample()
                gevent.sleep(sampler.spec.interval_s)
        finally:
            sampler.close()

    @property
    def workers(self) -> set[str]:
        """Workers that took part in this run and are still in it."""
        return self.ledger.active()

    def _update_info_forever(self) -> None:
        """So a run cut short (the master killed) still says how far it got."""
        while not self.writer.closed:
            gevent.sleep(RUN_INFO_INTERVAL_S)
            self._write_info(t_end=None, locust_requests=None, locust_failures=None)

    def _write_info(self, *, t_end: float | None, locust_requests: int | None, locust_failures: int | None) -> None:
        write_run_info(
            self.run_dir / "run.json",
            run_info(
                self.scenario,
                t_start=self.t_start,
                t_end=t_end,
                worker_count=self.worker_count,
                locust_requests=locust_requests,
                locust_failures=locust_failures,
                records_written=self.writer.rows_written,
                stages=self.timeline.stages,
                extra={
                    "requests_recorded": self.requests_recorded,
                    "workers_left": self.ledger.departures(),
                    **self.extra,
                },
            ),
        )

    def finish(self, environment: Environment) -> None:
        t_end = time.time()
        self.timeline.close(t_end)
        self.writer.close()
        self._info_updater.kill(block=False)
        if self._resources is not None:
            self._resources.kill(block=True)
        total = environment.stats.total
        self._write_info(t_end=t_end, locust_requests=total.num_requests, locust_failures=total.num_failures)
        mismatch = (
            ""
            if total.num_requests == self.requests_recorded
            else (f" MISMATCH: Locust counted {total.num_requests} requests, the records {self.requests_recorded}")
        )
        logger.info(f"loadgrade: {self.writer.rows_written} records written to {self.run_dir}{mismatch}")


class Controller:
    """loadgrade's state in one Locust process, hung off the environment as ``environment.loadgrade``."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self._fire_request = environment.events.request.fire
        self.scenario: Scenario | None = None
        self._scenario_arg = ""
        # master / standalone side
        self.session: RunSession | None = None
        self.timeline = LoadTimeline()
        self._last_stage: int | None = None
        self._stage_clock: StageClock | None = None
        self._search: CapacitySearch | None = None
        self._search_began = self._level_began = 0.0
        self._rate = 0.0  # open model: current target arrivals/s across all workers
        self._sampler: gevent.Greenlet | None = None
        self._watcher: gevent.Greenlet | None = None
        self.quality = QualityMonitor(self)  # live quality figures (loadgrade.live): web UI and console
        # worker / standalone side
        self.plan: tuple[int, int] | None = None  # (slot, slots)
        self.dataset: Dataset | None = None
        self.feeder: SampleFeeder | None = None
        self.protocol: ProtocolBase | None = None
        self._bodies: list[bytes | None] = []
        self._rows: list[list[Any]] = []
        self._arrivals: gevent.queue.Queue[float] | None = None  # open model: due times waiting for a free user
        self._scheduler: gevent.Greenlet | None = None
        self._share_of_rate = 0.0
        self._sequence = 0
        self._requests = 0  # requests whose rows are in self._rows (a batched request has several rows)
        self._worker = 0
        self._users_created = 0
        self._exhausted_sent = False
        self._in_flight = 0
        self._shipper: gevent.Greenlet | None = None

    # ------------------------------------------------------------------------------------------ roles

    @property
    def runner(self) -> Any:
        return self.environment.runner

    @property
    def is_master(self) -> bool:
        return isinstance(self.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.runner, WorkerRunner)

    def _worker_index(self) -> int:
        return max(int(getattr(self.runner, "worker_index", 0)), 0)

    # ------------------------------------------------------------------------------------------ scenario

    def scenario_arg(self) -> str:
        options = self.environment.parsed_options
        return str(getattr(options, "scenario", "") or "") if options is not None else ""

    def ensure_scenario(self) -> Scenario:
        """The scenario named by ``--scenario`` (re-read if the web UI changed it); raises ScenarioError."""
        arg = self.scenario_arg()
        if not arg:
            raise ScenarioError(
                "<no scenario>", "--scenario", "no scenario given: pass --scenario FILE or set LOADGRADE_SCENARIO"
            )
        if self.scenario is None or arg != self._scenario_arg:
            self.scenario = load_scenario(arg)
            self._scenario_arg = arg
        return self.scenario

    def stage_plan(self) -> list[StagePlan]:
        return stage_plan(self.ensure_scenario().load)

    # ------------------------------------------------------------------------------------------ master side

    def current_stage(self) -> tuple[int, StagePlan] | None:
        """The stage the load shape should hold now; every stage lasts its full duration (see StageClock)."""
        load = self.ensure_scenario().load
        if isinstance(load, SearchLoad):
            return self._search_stage(load)
        if self._stage_clock is None:
            self._stage_clock = StageClock(self.stage_plan())
        index = self._stage_clock.stage(time.monotonic())
        if index is None:
            return None
        plan = self._stage_clock.plan[index]
        self._enter_stage(index, plan)
        return index, plan

    def _enter_stage(self, index: int, plan: StagePlan) -> None:
        if index != self._last_stage:
            self._last_stage = index
            self.timeline.start_stage(time.time(), plan.users, plan.spawn_rate, plan.target_rps)
            self._warn_if_rate_missed()
            self._rate = plan.target_rps or 0.0
            if self.session is not None:
                self._send_rates(self.session)

    def _search_stage(self, load: SearchLoad) -> tuple[int, StagePlan] | None:
        """Capacity search: hold each level ``stage_s``, judge it on the records so far, then pick the next."""
        now = time.monotonic()
        if self._search is None:
            self._search, self._search_began, self._level_began = CapacitySearch(load), now, now
            self._enter_stage(0, search_stage(load, load.start))
        search = self._search
        index = self._last_stage or 0
        if now - self._level_began >= load.stage_s:
            passed, reasons = self._judge_level(index)
            value = search.current
            logger.info(
                f"loadgrade: search: {load.variable} {value:g}: "
                + ("meets every SLO" if passed else "breaks: " + "; ".join(reasons))
            )
            following = search.next(passed)
            outcome = search.result()
            if self.session is not None:
                self.session.extra["capacity"] = outcome
            if following is None or now - self._search_began > load.max_duration_s:
                best = outcome["highest_passing"]
                print(
                    f"loadgrade: capacity: the highest {load.variable} meeting every SLO is "
                    + (f"{best:g}" if isinstance(best, float) else "none (the first level already broke one)")
                    + (f"; {outcome['lowest_failing']:g} breaks" if outcome["lowest_failing"] is not None else ""),
                    file=sys.stderr,
                )
                return None
            index += 1
            self._level_began = now
            self._enter_stage(index, search_stage(load, following))
        return index, search_stage(load, search.current)

    def _judge_level(self, index: int) -> tuple[bool, list[str]]:
        """The analysis package's verdict on one level so far: degraded against the first level, or a rule broken.

        The very same code as ``python -m analysis check``, run on the records written so far.
        """
        from analysis import AnalysisInputError, analyse_run, check_rules  # heavy; only a search needs it

        session, scenario = self.session, self.ensure_scenario()
        if session is None:
            return False, ["the run has not started"]
        session.writer.flush()
        self.timeline.close(time.time())
        session._write_info(t_end=None, locust_requests=None, locust_failures=None)
        try:
            analysis = analyse_run(session.run_dir, progress=False)
        except AnalysisInputError as exc:
            return False, [f"cannot be judged: {exc}"]
        finally:
            if self.timeline.stages:
                self.timeline.stages[-1].t_end = None
        levels = analysis.levels
        row = levels[levels["level"] == index]
        if row.empty:
            return False, ["no answers at this level"]
        reasons = []
        if bool(row["degraded"].iloc[0]):
            reasons.append("quality significantly below the first level by more than the tolerance")
        rules = scenario.slo.rules if scenario.slo is not None else []
        if rules:
            checked = check_rules(levels[levels["level"].isin([0, index])], rules)
            reasons += [f"{r.rule} (measured {r.measured:.4g})" for r in checked.itertuples() if not r.passed]
        return not reasons, reasons

    def _send_rates(self, session: RunSession) -> None:
        """Give each worker its share of the target arrival rate (open model)."""
        workers = sorted(session.workers, key=lambda cid: session.ledger.accounts[cid].worker_index)
        for client_id in workers:
            if self.is_master:
                self.runner.send_message(MSG_RATE, {"rate": self._rate / len(workers)}, client_id=client_id)
            else:
                self._share_of_rate = self._rate

    def _warn_if_rate_missed(self) -> None:
        """At the end of an open-model stage, say so when the offered rate was not achieved, and why it may be."""
        session, stages = self.session, self.timeline.stages
        if session is None or len(stages) < 2:
            return
        stage = stages[-2]
        if not stage.target_rps or stage.t_end is None or stage.t_end <= stage.t_start:
            return
        achieved = session.writer.rows_per_stage[stage.index] / (stage.t_end - stage.t_start)
        if achieved < RATE_SHORTFALL * stage.target_rps:
            cpu = getattr(self.runner, "cpu_warning_emitted", False) or getattr(
                self.runner, "worker_cpu_warning_emitted", False
            )
            logger.warning(
                f"loadgrade: stage {stage.index} offered {stage.target_rps:g} arrivals/s but achieved {achieved:.1f}/s:"
                f" {'the load generator ran out of CPU (Locust cpu_warning); add workers' if cpu else ''}"
                f"{' and ' if cpu else ''}the cap of {stage.target_users} users may be too low (see t_scheduled lag)"
            )

    def _next_run_dir(self, scenario: Scenario) -> Path:
        arg = getattr(self.environment.parsed_options, "run_dir", "") if self.environment.parsed_options else ""
        base = Path(arg) if arg else default_run_dir(scenario)
        candidate, n = base, 1
        while (candidate / "records.csv").exists():
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        return candidate

    def begin_run(self) -> None:
        scenario = self.ensure_scenario()
        workers = self._live_workers() if self.is_master else ["local"]
        self.session = RunSession(self, scenario, self._next_run_dir(scenario), self.timeline, len(workers))
        for client_id in workers:
            index = self.runner.get_worker_index(client_id) if self.is_master else 0
            self.session.ledger.join(client_id, index)
        self._sampler = gevent.spawn(self._sample_users)
        if self.is_master:
            self._watcher = gevent.spawn(self._watch_workers, self.session)
            for slot, client_id in enumerate(workers):
                self.runner.send_message(MSG_PLAN, {"slot": slot, "slots": len(workers)}, client_id=client_id)
        self._send_rates(self.session)
        self.quality.begin(self.session)
        logger.info(f"loadgrade: run directory {self.session.run_dir}")

    def _live_workers(self) -> list[str]:
        clients = [c for c in self.runner.clients.all if c.state != STATE_MISSING]
        return [c.id for c in sorted(clients, key=lambda c: self.runner.get_worker_index(c.id))]

    def _watch_workers(self, session: RunSession) -> None:
        """Notice workers that vanished (killed, or lost on the network) and carry on without them."""
        while not session.writer.closed:
            gevent.sleep(1.0)
            live = set(self._live_workers())
            for client_id in session.workers - live:
                session.ledger.mark_lost(client_id, t=time.time())
                if self._rate:  # the survivors take over its share of the arrival rate
                    self._send_rates(session)
                logger.warning(
                    f"loadgrade: worker {client_id} left without shipping its last rows; the run goes on without it "
                    "(run.json lists it under workers_left with an estimate of the requests it did not report)"
                )
            self._stop_if_exhausted(session)

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if self.session is not None and "stats_total" in data:
            self.session.ledger.stats_reported(client_id, int(data["stats_total"].get("num_requests", 0)))

    def on_leaving(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.session is not None:
            self.session.ledger.mark_graceful(msg.node_id, t=time.time())
            logger.info(f"loadgrade: worker {msg.node_id} shipped its last rows and left")
            self._stop_if_exhausted(self.session)

    def _sample_users(self) -> None:
        while True:
            self.timeline.note_users(time.time(), int(self.runner.user_count))
            gevent.sleep(USERS_SAMPLE_INTERVAL_S)

    def on_rows(self, environment: Environment, msg: Any, **_: Any) -> None:
        rows = msg.data["rows"]
        if self.session is None or self.session.writer.closed:
            logger.error(f"loadgrade: {len(rows)} rows from {msg.node_id} arrived after the run ended")
            return
        if msg.node_id not in self.session.ledger.accounts:  # e.g. a stray worker of an earlier master
            logger.error(f"loadgrade: ignored {len(rows)} rows from {msg.node_id}, which is not a worker of this run")
            return
        requests = int(msg.data.get("requests", len(rows)))
        stamps = self.session.writer.write_rows(rows)
        self.quality.add(rows, stamps)
        self.session.requests_recorded += requests
        self.session.ledger.rows_arrived(msg.node_id, len(rows), t=time.time(), requests=requests)

    def on_exhausted(self, environment: Environment, msg: Any, **_: Any) -> None:
        session = self.session
        if session is None:
            return
        session.exhausted.add(msg.node_id)
        self._stop_if_exhausted(session)

    def _stop_if_exhausted(self, session: RunSession) -> None:
        """Stop once every worker still in the run has sent its share of every pass."""
        if session.exhausted and session.workers <= session.exhausted and not session.stopping:
            session.stopping = True
            logger.info("loadgrade: every pass over the dataset has been sent; stopping the test")
            gevent.spawn(self._stop_test)

    def _stop_test(self) -> None:
        options = self.environment.parsed_options
        if options is not None and options.headless:
            self.runner.quit()
        else:
            self.runner.stop()

    def on_drained(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.session is not None:
            self.session.drained.add(msg.node_id)

    def drain_workers(self) -> None:
        """Ask every worker for its last rows and stats, and wait (bounded) until all have answered."""
        session = self.session
        if session is None:
            return
        targets = set(self._live_workers()) & session.workers
        for client_id in targets:
            self.runner.send_message(MSG_DRAIN, None, client_id=client_id)
        stop_timeout = float(self.environment.stop_timeout or 0)
        deadline = time.time() + DRAIN_TIMEOUT_S + stop_timeout
        while not targets <= session.drained and time.time() < deadline:
            gevent.sleep(0.02)
        missing = targets - session.drained
        if missing:
            logger.error(f"loadgrade: {len(missing)} worker(s) did not ship their last rows in time: {missing}")

    def end_run(self) -> None:
        for greenlet in (self._sampler, self._watcher):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._sampler = self._watcher = None
        if self.session is not None:
            self.session.finish(self.environment)
            self.quality.end()
            print(f"loadgrade: run directory {self.session.run_dir}", file=sys.stderr)
        self.session = None
        self.timeline = LoadTimeline()
        self._last_stage = None
        self._stage_clock = None
        self._search = None

    # ------------------------------------------------------------------------------------------ worker side

    def on_plan(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.plan = (int(msg.data["slot"]), int(msg.data["slots"]))

    def on_rate(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._share_of_rate = float(msg.data["rate"])

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

    def begin_replay(self) -> None:
        """Prepare this process's share of the dataset; on workers the scenario option arrives with the spawn."""
        scenario = self.ensure_scenario()
        self.dataset = scenario.data()
        self.protocol = scenario.protocol
        if self.is_worker and self.plan is None:
            logger.error(
                "loadgrade: this worker joined after the test started and has no share of the dataset; "
                "its users will stay idle"
            )
        slot, slots = self.plan if self.is_worker and self.plan else (0, 1)
        self.feeder = (
            SampleFeeder(
                len(self.dataset),
                slot=slot,
                slots=slots,
                passes=scenario.dataset.passes,
                order=scenario.dataset.order,
                seed=scenario.dataset.seed,
            )
            if not (self.is_worker and self.plan is None)
            else None
        )
        self._bodies = [None] * len(self.dataset)
        self._rows = []
        self._requests = 0
        self._sequence = 0
        self._worker = self._worker_index()
        self._exhausted_sent = False
        self._shipper = gevent.spawn(self._ship_forever)
        load = scenario.load
        if isinstance(load, RateLoad) or (isinstance(load, SearchLoad) and load.variable == "rate"):
            self._arrivals = gevent.queue.Queue()
            seed = None if load.seed is None else load.seed * 1000 + slot
            self._scheduler = gevent.spawn(self._schedule_arrivals, ArrivalProcess(load.arrival, seed=seed))

    def end_replay(self) -> None:
        for greenlet in (self._shipper, self._scheduler):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._shipper = self._scheduler = None
        if self._arrivals is not None and self._arrivals.qsize():
            logger.info(f"loadgrade: {self._arrivals.qsize()} arrivals were still waiting for a user at the end")
        self._arrivals = None
        self._share_of_rate = 0.0
        self.ship()
        self.plan = None
        self.feeder = None

    def configure_user(self, user: Any) -> None:
        """Give a new user its id and its own connection to the endpoint (the web UI's host, else the scenario's)."""
        scenario = self.ensure_scenario()
        user.host = self.environment.host or scenario.endpoint.base_url
        self._users_created += 1
        user.loadgrade_user_id = self._users_created
        user.endpoint = EndpointClient(
            user.host.rstrip("/") + scenario.request_path,
            method=scenario.endpoint.method,
            headers={
                "Content-Type": scenario.protocol.content_type,
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                **scenario.endpoint.headers,
            },
            timeout_s=scenario.endpoint.timeout_s,
            verify_tls=scenario.endpoint.verify_tls,
        )

    def replay_one(self, user: Any) -> None:
        """Send the next sample of this process's share, classify the reply, record it and report it to Locust.

        The rows are appended and Locust's ``request`` event fired with no switch to another greenlet in between,
        so there is exactly one row for each request Locust counts, with the same send time and response time.
        """
        t_scheduled = None
        if self._arrivals is not None:  # open model: wait for the next due arrival (or take a late one at once)
            t_scheduled = self._arrivals.get()
            wait = t_scheduled - time.time()
            if wait > 0:
                gevent.sleep(wait)
        item = self.feeder.next() if self.feeder is not None else None
        if item is None:
            self._report_exhausted()
            gevent.sleep(1.0)
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
            items = [item, *self._take(batch - 1)]
            body = protocol.build_batch([dataset.sample(index) for index, _ in items])
        endpoint: EndpointClient = user.endpoint
        self._in_flight += 1
        try:
            exchange = endpoint.send(body)
        finally:
            self._in_flight -= 1
        status, content = exchange.status_code, exchange.content
        outcomes = (
            [interpret_response(protocol, status_code=status, content=content, exception=exchange.exception)]
            if batch == 1
            else interpret_batch(
                protocol, n=len(items), status_code=status, content=content, exception=exchange.exception
            )
        )
        self._sequence += 1
        self._requests += 1
        request_id = f"{self._worker}-{self._sequence}"
        response_bytes = len(content) if content else 0
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

    def _take(self, n: int) -> list[tuple[int, int]]:
        """Up to ``n`` more samples of this process's share, without crossing into the next pass."""
        assert self.feeder is not None
        items: list[tuple[int, int]] = []
        while len(items) < n and not self.feeder.at_pass_end:
            item = self.feeder.next()
            if item is None:
                break
            items.append(item)
        return items

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

    def _report_exhausted(self) -> None:
        if not self._exhausted_sent:
            self._exhausted_sent = True
            gevent.spawn(self._announce_exhausted)

    def _announce_exhausted(self) -> None:
        """Once the last requests of this process's share have been answered, ship them and say so."""
        timeout = self.scenario.endpoint.timeout_s if self.scenario is not None else 30.0
        deadline = time.time() + timeout + 5.0
        while self._in_flight > 0 and time.time() < deadline:
            gevent.sleep(0.02)
        self.ship()
        self.runner.send_message(MSG_EXHAUSTED, None)

    def leave(self, **_: Any) -> None:
        """A worker shutting down (SIGTERM, Ctrl-C) stops its users and ships everything before it says goodbye."""
        if self.feeder is None and not self._rows:
            return
        self.runner.stop()  # stops the users; our test_stop listener ships the last rows
        self.ship()
        self.runner._send_stats()
        self.runner.send_message(MSG_LEAVING, None)

    def on_sigterm(self) -> None:
        """SIGTERM on a headless master while the shape runs (Locust installs its own handler only afterwards)."""
        if self.session is None:
            os._exit(128 + signal.SIGTERM)  # nothing recorded yet: die as SIGTERM would
        logger.info("loadgrade: SIGTERM: stopping the test; the workers ship their last rows first")
        gevent.spawn(self._stop_test)

    def on_drain(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.runner.stop()  # stops the users; our test_stop listener ships the last rows
        self.ship()
        self.runner._send_stats()  # Locust's own final report, before we say we're done (same socket, in order)
        self.runner.send_message(MSG_DRAINED, None)


# ---------------------------------------------------------------------------------------------------- events


def _failure_name(error_kind: str, status_code: int) -> str:
    """How a failed request shows in Locust's failure table: one line per kind (and HTTP status), not per message."""
    return f"{error_kind} {status_code}" if error_kind == "http" else error_kind


def controller_of(environment: Environment) -> Controller:
    controller = getattr(environment, "loadgrade", None)
    if controller is None:
        controller = Controller(environment)
        environment.loadgrade = controller  # type: ignore[attr-defined]
    return controller


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    runner = environment.runner
    if isinstance(runner, MasterRunner | LocalRunner):
        options = environment.parsed_options
        headless = bool(options is not None and getattr(options, "headless", False))
        if controller.scenario_arg() or headless:
            try:
                controller.ensure_scenario()
            except ScenarioError as exc:  # before any load starts: one clear message, exit status 2
                print(f"loadgrade: invalid scenario\n{exc}", file=sys.stderr)
                sys.exit(2)
        runner.register_message(MSG_ROWS, controller.on_rows)
        if headless and environment.shape_class is not None:
            # Locust blocks on the shape before it installs its SIGTERM handler: without ours, a SIGTERM during the
            # test (a pod deleted, a CI job cancelled) would kill the master with the run left open
            gevent.signal_handler(signal.SIGTERM, controller.on_sigterm)
        runner.register_message(MSG_EXHAUSTED, controller.on_exhausted)
        runner.register_message(MSG_DRAINED, controller.on_drained)
        controller.quality.setup(environment.web_ui)
    if isinstance(runner, MasterRunner):
        runner.register_message(MSG_LEAVING, controller.on_leaving)
        environment.events.worker_report.add_listener(controller.on_worker_report)
    if isinstance(runner, WorkerRunner):
        runner.register_message(MSG_PLAN, controller.on_plan)
        runner.register_message(MSG_RATE, controller.on_rate)
        runner.register_message(MSG_DRAIN, controller.on_drain)
        # Added after the runner's own quitting listener, and quitting fires in reverse order: our rows and
        # stats reach the master before the worker's "quit" message does.
        environment.events.quitting.add_listener(controller.leave)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    try:
        if isinstance(environment.runner, MasterRunner | LocalRunner):
            controller.begin_run()
        if isinstance(environment.runner, WorkerRunner | LocalRunner):
            controller.begin_replay()
    except ScenarioError as exc:
        logger.error(f"loadgrade: invalid scenario, stopping the test\n{exc}")
        gevent.spawn(controller._stop_test)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        controller_of(environment).drain_workers()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    if isinstance(environment.runner, WorkerRunner | LocalRunner):
        controller.end_replay()
    if isinstance(environment.runner, MasterRunner | LocalRunner):
        controller.end_run()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    if controller.session is not None and isinstance(environment.runner, MasterRunner | LocalRunner):
        # shut down mid-test (SIGTERM, Ctrl-C): stop properly first, so workers ship their last rows
        environment.runner.stop()
        if controller.session is not None:
            controller.end_run()


# ---------------------------------------------------------------------------------------------------- live quality


class QualityMonitor:
    """Live quality on the master (or standalone process): every batch of rows is scored as it arrives.

    One :class:`loadgrade.live.LiveQuality` per test, fed in :meth:`Controller.on_rows` with the same stamps the
    writer gives the rows; shown in the web UI (:mod:`loadgrade.webui`) and, once a level has ended and its rows
    have had time to arrive, as one console line per level, with a summary when the test ends.
    """

    REPORT_AFTER_S = 2.0  # a level's line waits this long after its end for the rows still in flight or in transit

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.live: Any = None  # LiveQuality of the current (or last) test; the module is imported on the master only
        self.records_path: Path | None = None
        self._stages_seen = 0
        self._users: int | None = None
        self._printed: set[int] = set()
        self._reporter: gevent.Greenlet | None = None

    def setup(self, web_ui: Any) -> None:
        """In ``init``: load the scoring code now rather than at test start; add the Quality tab if there is a UI."""
        import loadgrade.live  # noqa: F401  (imports the analysis package: seconds, better before any load)

        if web_ui is None:  # headless, or a worker
            return
        from loadgrade.webui import install

        options = self.controller.environment.parsed_options
        install(
            web_ui,
            live=lambda: self.live,
            records=lambda: self.records_path,
            flush=self._flush,
            base_path=str(getattr(options, "web_base_path", "") or ""),
        )

    def _flush(self) -> None:
        session = self.controller.session
        if session is not None:
            session.writer.flush()

    def begin(self, session: RunSession) -> None:
        """A fresh aggregator for each test; the labels come from the scenario's dataset (read once)."""
        from loadgrade.live import LiveQuality

        self.records_path = session.writer.path
        self._stages_seen, self._users, self._printed = 0, None, set()
        scenario = session.scenario
        try:
            dataset = scenario.data()
            self.live = LiveQuality(
                dataset.ids,
                dataset.labels,
                task=scenario.dataset.task,
                slo_latency_ms=scenario.slo.latency_ms if scenario.slo is not None else None,
                t_start=session.t_start,
            )
        except Exception as exc:  # live figures are a view: never let them stop a test
            logger.error(f"loadgrade: no live quality figures for this test: {exc}")
            self.live = None
            return
        self._reporter = gevent.spawn(self._report_forever)

    def _sync_levels(self) -> None:
        """Stages of the shape begin on the master's timeline; without a shape, a new user count is a new level."""
        live, controller = self.live, self.controller
        stages = controller.timeline.stages
        for stage in stages[self._stages_seen :]:
            if not live.has_level(stage.index):
                live.start_level(stage.t_start, users=stage.target_users, rate=stage.target_rps, index=stage.index)
        self._stages_seen = len(stages)
        if controller.environment.shape_class is None:
            users = int(getattr(controller.runner, "target_user_count", 0) or 0)
            if users and users != self._users:  # 0: stopping; its last rows belong to the level they were sent in
                live.start_level(live.t_start if live.level_count == 0 else time.time(), users=users)
                self._users = users

    def add(self, rows: list[list[Any]], stamps: list[tuple[Any, ...]]) -> None:
        """Feed the live figures with a batch and the stamps the writer gave it."""
        if self.live is None:
            return
        try:
            self._sync_levels()
            self.live.add(rows, stamps)
        except Exception:
            logger.exception("loadgrade: live quality figures stopped (the records are not affected)")
            self.live = None

    def _report_forever(self) -> None:
        while self.live is not None:
            gevent.sleep(0.5)
            try:
                self._sync_levels()
                self._report(final=False)
            except Exception:
                logger.exception("loadgrade: live quality report failed")
                return

    def _report(self, *, final: bool) -> None:
        live, now = self.live, time.time()
        for bounds in live.level_bounds():
            index, t_end = bounds["level"], bounds["t_end"]
            if index in self._printed or t_end is None or (not final and now < t_end + self.REPORT_AFTER_S):
                continue
            self._printed.add(index)
            self._say(format_level_line(live.stage_summary(index)))

    def end(self) -> None:
        """After the last rows have arrived: the levels not yet reported, then the whole test in one line."""
        if self._reporter is not None:
            self._reporter.kill(block=False)
            self._reporter = None
        live = self.live
        if live is None:
            return
        stages = self.controller.timeline.stages
        live.finish(stages[-1].t_end if stages and stages[-1].t_end is not None else time.time())
        try:
            self._report(final=True)
            self._say(format_run_line(live))
        except Exception:
            logger.exception("loadgrade: live quality summary failed")

    def _say(self, line: str) -> None:
        options = self.controller.environment.parsed_options
        if options is not None and getattr(options, "headless", False):
            print(line, file=sys.stderr, flush=True)
        else:  # the web UI's log tab shows it
            logger.info(line)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _quality_figures(figures: dict[str, Any]) -> str:
    interval = (
        f" [{100 * figures['accuracy_low']:.1f}, {100 * figures['accuracy_high']:.1f}]"
        if figures["accuracy_low"] is not None
        else ""
    )
    errors = ", ".join(f"{kind} {count}" for kind, count in figures["errors"].items())
    p95 = "n/a" if figures["p95_ms"] is None else f"{figures['p95_ms']:.1f} ms"
    return (
        f"n={figures['n']}, accuracy {_pct(figures['accuracy'])}{interval}, "
        f"effective {_pct(figures['effective_accuracy'])}, p95 {p95}, "
        f"errors {_pct(figures['error_rate'])}{f' ({errors})' if errors else ''}"
    )


def format_level_line(level: dict[str, Any]) -> str:
    """One console line for a level that has ended (see :meth:`loadgrade.live.LiveQuality.stage_summary`)."""
    load = f"{level['rate']:g} req/s" if level.get("rate") is not None else f"{level['users']} users"
    name = "stage" if level["kind"] == "stage" else "level"
    return f"loadgrade: quality {name} {level['level']} ({load}): {_quality_figures(level)}"


def format_run_line(live: Any) -> str:
    """The console summary of a test: every level together, and the level with the lowest accuracy."""
    total = live.run_summary()
    levels = [level for level in live.levels() if level["accuracy"] is not None and level["n_scored"]]
    worst = min(levels, key=lambda level: level["accuracy"], default=None)
    count = total["levels"]
    line = f"loadgrade: quality over the test ({count} level{'' if count == 1 else 's'}): {_quality_figures(total)}"
    if worst is not None and len(levels) > 1:
        load = f"{worst['rate']:g} req/s" if worst.get("rate") is not None else f"{worst['users']} users"
        name = "stage" if worst["kind"] == "stage" else "level"
        line += f"; lowest accuracy {_pct(worst['accuracy'])} at {name} {worst['level']} ({load})"
    if live.problems:
        line += f"; {len(live.problems)} answer(s) could not be scored, e.g. {live.problems[0]}"
    return line


class ScenarioShape(LoadTestShape):
    """Follows the stages of the scenario's ``load:`` section and tells loadgrade when each one begins."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        controller = controller_of(self.runner.environment)
        try:
            current = controller.current_stage()
        except ScenarioError as exc:
            logger.error(f"loadgrade: invalid scenario\n{exc}")
            return None
        if current is None:
            return None
        _, plan = current
        return plan.users, plan.spawn_rate
