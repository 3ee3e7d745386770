"""The master's run (or a standalone process's): run directory, the one writer, the stages, the samples, the verdict.

The master owns everything that must exist once per run: ``records.csv`` and ``run.json``, the load timeline that
stamps each row, the :class:`~loadgrade.dispenser.SampleDispenser` that hands the dataset out to whichever workers
have users, the account of every worker (joined, refused, left, lost), the judging of a capacity search, and at
the end of a headless run the SLO verdict that sets the exit status.
"""

from __future__ import annotations

from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner

import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent

from loadgrade.dispenser import SampleDispenser
from loadgrade.errors import ScenarioError
from loadgrade.ledger import WorkerLedger
from loadgrade.messages import (
    MSG_CHUNK,
    MSG_DRAIN,
    MSG_RATE,
    MSG_REFUSE,
    MSG_RESET,
    SHIP_INTERVAL_S,
)
from loadgrade.recording import LoadTimeline, RecordWriter
from loadgrade.resources import ResourceSampler
from loadgrade.runinfo import default_run_dir, run_info, write_run_info
from loadgrade.scenario import Scenario, load_scenario
from loadgrade.shapes import CapacitySearch, SearchLoad, StageClock, StagePlan, search_stage, stage_plan

if TYPE_CHECKING:
    from loadgrade.locust_plugin import Controller

logger = logging.getLogger("loadgrade")

RUN_INFO_INTERVAL_S = 5.0  # the master rewrites run.json (records so far) this often (records.csv: every batch)
USERS_SAMPLE_INTERVAL_S = 0.2
DRAIN_TIMEOUT_S = 15.0
RATE_SHORTFALL = 0.9  # warn when a stage achieved less than this share of its target arrival rate
LOCAL = "local"  # the node id of a standalone process's own messages


class RunSession:
    """One test's output on the master (or standalone process): the run directory, its writer, its samples."""

    def __init__(
        self, scenario: Scenario, run_dir: Path, timeline: LoadTimeline, *, run_id: str, dataset_size: int
    ) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.timeline = timeline
        self.run_id = run_id
        self.t_start = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = RecordWriter(run_dir / "records.csv", timeline)
        self.dispenser = SampleDispenser(
            dataset_size, passes=scenario.dataset.passes, order=scenario.dataset.order, seed=scenario.dataset.seed
        )
        self.outstanding: dict[str, int] = {}  # per worker: samples handed out, neither sent (as rows) nor returned
        self.refused: dict[str, str] = {}  # workers of another run: client id -> why
        self.drained: set[str] = set()
        self.ledger = WorkerLedger(SHIP_INTERVAL_S)
        self.joined_at: dict[str, float] = {}
        self.stopping = False
        self.extra: dict[str, Any] = {}  # more for run.json (e.g. a capacity search's outcome)
        self.requests_recorded = 0  # equals writer.rows_written unless requests carry several samples
        self.write_info(t_end=None, locust_requests=None, locust_failures=None)
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

    def join(self, client_id: str, worker_index: int) -> bool:
        """Count a worker in (once); False for a refused one."""
        if client_id in self.refused:
            return False
        if client_id not in self.joined_at:
            self.ledger.join(client_id, worker_index)
            self.ledger.accounts[client_id].worker_index = worker_index
            self.joined_at[client_id] = time.time()
            self.outstanding.setdefault(client_id, 0)
        return True

    def worker_list(self) -> list[dict[str, Any]]:
        """Every worker of the run, for ``run.json``: when it joined, how it left, what it sent."""
        listed = []
        for client_id, account in self.ledger.accounts.items():
            listed.append(
                {
                    "client_id": client_id,
                    "worker_index": account.worker_index,
                    "joined_at": self.joined_at.get(client_id),
                    "rows_received": account.rows,
                    "left": account.left,
                    "left_at": account.left_at,
                }
            )
        listed += [{"client_id": cid, "refused": why} for cid, why in self.refused.items()]
        return listed

    def _update_info_forever(self) -> None:
        """So a run cut short (the master killed) still says how far it got."""
        while not self.writer.closed:
            gevent.sleep(RUN_INFO_INTERVAL_S)
            self.write_info(t_end=None, locust_requests=None, locust_failures=None)

    def write_info(self, *, t_end: float | None, locust_requests: int | None, locust_failures: int | None) -> None:
        write_run_info(
            self.run_dir / "run.json",
            run_info(
                self.scenario,
                t_start=self.t_start,
                t_end=t_end,
                worker_count=len(self.ledger.accounts),
                locust_requests=locust_requests,
                locust_failures=locust_failures,
                records_written=self.writer.rows_written,
                stages=self.timeline.stages,
                extra={
                    "run_id": self.run_id,
                    "requests_recorded": self.requests_recorded,
                    "workers": self.worker_list(),
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
        self.write_info(t_end=t_end, locust_requests=total.num_requests, locust_failures=total.num_failures)
        mismatch = (
            ""
            if total.num_requests == self.requests_recorded
            else (f" MISMATCH: Locust counted {total.num_requests} requests, the records {self.requests_recorded}")
        )
        logger.info(f"{self.writer.rows_written} records written to {self.run_dir}{mismatch}")


class MasterRun:
    """The master's side of loadgrade in one Locust process (the standalone process plays it too)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.environment: Environment = controller.environment
        self.session: RunSession | None = None
        self.timeline = LoadTimeline()
        self.run_id = ""
        self._last_stage: int | None = None
        self._stage_clock: StageClock | None = None
        self._search: CapacitySearch | None = None
        self._search_began = self._level_began = 0.0
        self._rate = 0.0  # open model: current target arrivals/s across all workers
        self._manual_users: int | None = None
        self._sampler: gevent.Greenlet | None = None
        self._watcher: gevent.Greenlet | None = None
        self._refused_before: dict[str, str] = {}  # client id -> why, kept across the tests of one master
        self._checked_start: tuple[str, str] | None = None  # (scenario, host) the web UI's start form pre-flighted

    @property
    def runner(self) -> Any:
        return self.environment.runner

    @property
    def is_master(self) -> bool:
        return isinstance(self.runner, MasterRunner)

    def _option(self, name: str, default: Any = None) -> Any:
        options = self.environment.parsed_options
        return getattr(options, name, default) if options is not None else default

    # ------------------------------------------------------------------------------------------ stages

    def stage_plan(self) -> list[StagePlan]:
        return stage_plan(self.controller.ensure_scenario().load)

    def current_stage(self) -> tuple[int, StagePlan] | None:
        """The stage the load shape should hold now; every stage lasts its full duration (see StageClock)."""
        load = self.controller.ensure_scenario().load
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

    def _is_last_stage(self) -> bool:
        """Whether no stage follows this one (a run without a shape has one stage at a time, the last)."""
        if self.environment.shape_class is None:
            return True
        if self._search is not None:
            return False
        clock = self._stage_clock
        return clock is None or self._last_stage is None or self._last_stage >= len(clock.plan) - 1

    def _enter_stage(self, index: int, plan: StagePlan) -> None:
        if index != self._last_stage:
            self._last_stage = index
            self._begin_stage(plan.users, plan.spawn_rate, plan.target_rps)
            self._rate = plan.target_rps or 0.0
            if self.session is not None:
                self._send_rates(self.session)

    def _begin_stage(self, users: int, spawn_rate: float, target_rps: float | None) -> None:
        """A stage begins on the timeline, and with it a fresh pass from the first sample of the stage order."""
        self.timeline.start_stage(time.time(), users, spawn_rate, target_rps)
        self._warn_if_rate_missed()
        session = self.session
        if session is not None and len(self.timeline.stages) > 1:
            session.dispenser.new_stage()
            self.runner.send_message(MSG_RESET, {"epoch": session.dispenser.epoch})

    def _follow_manual_users(self) -> None:
        """Without a load shape, each new user count (the web UI's edit, ``-u``) is a stage of its own."""
        if self.environment.shape_class is not None:
            return
        users = int(getattr(self.runner, "target_user_count", 0) or 0)
        if users and users != self._manual_users:  # 0: stopping; its last rows belong to the stage they were sent in
            self._manual_users = users
            spawn_rate = float(getattr(self.runner, "spawn_rate", 0.0) or users)
            self._begin_stage(users, spawn_rate, None)

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
            verdict = "meets every SLO" if passed else "breaks: " + "; ".join(reasons)
            logger.info(f"search: {load.variable} {value:g}: {verdict}")
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
        from loadgrade.analysis import AnalysisInputError, analyse_run, check_rules  # heavy; only a search needs it

        session, scenario = self.session, self.controller.ensure_scenario()
        if session is None:
            return False, ["the run has not started"]
        session.writer.flush()
        self.timeline.close(time.time())
        session.write_info(t_end=None, locust_requests=None, locust_failures=None)
        try:  # in a thread: the master's loop goes on meanwhile (rows, heartbeats: workers quit after 6 s of silence)
            analysis = gevent.get_hub().threadpool.apply(analyse_run, (session.run_dir,), {"progress": False})
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
                self.controller.replay.set_rate(self._rate)

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
                f"stage {stage.index} offered {stage.target_rps:g} arrivals/s but achieved {achieved:.1f}/s:"
                f" {'the load generator ran out of CPU (Locust cpu_warning); add workers' if cpu else ''}"
                f"{' and ' if cpu else ''}the cap of {stage.target_users} users may be too low (see t_scheduled lag)"
            )

    # ------------------------------------------------------------------------------------------ the run

    def _next_run_dir(self, scenario: Scenario) -> Path:
        arg = self._option("run_dir", "") or ""
        base = Path(arg) if arg else default_run_dir(scenario)
        candidate, n = base, 1
        while (candidate / "records.csv").exists():
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        return candidate

    def begin_run(self) -> None:
        scenario = self.controller.ensure_scenario()
        # headless runs checked the endpoint at start-up, before the shape's first stage began (see preflight_or_exit)
        checked = self._option("skip_preflight", False) or self._option("headless", False)
        # the web UI's start form ran it a moment ago (check_web_start), on this scenario and host
        checked = checked or self._checked_start == (self.controller.scenario_arg(), self.environment.host or "")
        self._checked_start = None
        if not checked and not self._preflight(scenario):
            return
        dataset = scenario.data()
        self.run_id = str(self._option("run_id", "") or "") or uuid.uuid4().hex[:12]
        self.session = RunSession(
            scenario, self._next_run_dir(scenario), self.timeline, run_id=self.run_id, dataset_size=len(dataset)
        )
        self.session.refused.update(self._refused_before)  # run.json lists the workers refused before it began
        workers = [w for w in self._live_workers() if w not in self._refused_before] if self.is_master else [LOCAL]
        for client_id in workers:
            index = self.runner.get_worker_index(client_id) if self.is_master else 0
            self.session.join(client_id, index)
        self._manual_users = None
        self._follow_manual_users()
        self._sampler = gevent.spawn(self._sample_users)
        if self.is_master:
            self._watcher = gevent.spawn(self._watch_workers, self.session)
        self._send_rates(self.session)
        self.controller.quality.begin(self.session)
        logger.info(f"run directory {self.session.run_dir}")

    def preflight_or_exit(self) -> None:
        """Headless: a few samples before the load shape starts; a failure ends the process with status 2."""
        if self._option("skip_preflight", False):
            return
        from loadgrade.preflight import preflight

        result = preflight(self.controller.ensure_scenario(), host=self.environment.host or None)
        print(result.line, file=sys.stderr, flush=True)
        if not result.ok:
            sys.exit(2)

    def check_web_start(self, form: Mapping[str, str]) -> str | None:
        """The web UI's start (or edit) form, before Locust acts on it: why the test must not start, or None.

        The scenario it names is read now and, before a new test, the pre-flight runs on it with the form's host:
        a path that does not exist, a broken scenario or a dead endpoint refuses the start with the message in
        the form and one log line, before any user exists (each user would otherwise fail with a traceback).
        """
        arg = str(form.get("scenario", self.controller.scenario_arg())).strip()
        if self.session is not None:  # an edit of the running test (its user count)
            if arg == self.controller.scenario_arg():
                return None
            return self._refuse(f"the running test replays {self.controller.scenario_arg()}: stop it to use {arg}")
        if not arg:
            return self._refuse("no scenario given: type the path of a scenario file into the scenario field")
        try:
            scenario = load_scenario(arg)
        except ScenarioError as exc:
            return self._refuse("invalid scenario: " + "; ".join(str(exc).splitlines()))
        self.controller.use_scenario(arg, scenario)  # the file as it is now, also when its path did not change
        if self._option("skip_preflight", False):
            return None
        from loadgrade.preflight import preflight

        # as Locust takes the form's host (environment.host), empty for the scenario's base_url
        host = str(form["host"]).replace("<", "").replace(">", "") if "host" in form else self.environment.host or ""
        result = preflight(scenario, host=host or None)
        if not result.ok:
            return self._refuse(result.line.removeprefix("loadgrade: "))
        logger.info(result.line.removeprefix("loadgrade: "))  # the web UI's log tab shows it
        self._checked_start = (arg, host)
        return None

    def _refuse(self, message: str) -> str:
        logger.error(f"test not started: {message}")
        return message

    def _preflight(self, scenario: Scenario) -> bool:
        """The web UI: a few samples when a test starts; a dead endpoint, a wrong path or key stops the test."""
        from loadgrade.preflight import preflight

        result = preflight(scenario, host=self.environment.host or None)
        if result.ok:  # the web UI's log tab shows it
            logger.info(result.line.removeprefix("loadgrade: "))
            return True
        logger.error(result.line.removeprefix("loadgrade: "))
        self.environment.process_exit_code = 2
        gevent.spawn(self._stop_test)
        return False

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
                    f"worker {client_id} left without shipping its last rows; the run goes on without it "
                    "(run.json lists it under workers_left with an estimate of the requests it did not report)"
                )
            for client_id in live - set(session.joined_at) - set(session.refused):
                self._join_late(session, client_id)
            self._stop_if_exhausted(session)

    def _join_late(self, session: RunSession, client_id: str) -> None:
        if session.join(client_id, self.runner.get_worker_index(client_id)):
            logger.info(f"worker {client_id} joined the run under way; it takes samples from now on")
            if self._rate:
                self._send_rates(session)

    def on_hello(self, environment: Environment, msg: Any, **_: Any) -> None:
        """Refuse a worker that belongs to another run, with a message on both sides."""
        data, client_id = msg.data or {}, msg.node_id
        reason = self._foreign(data)
        if reason is None:
            return
        if self.session is not None:
            self.session.refused[client_id] = reason
        self._refused_before[client_id] = reason
        logger.error(f"refused worker {client_id}: {reason}")
        self.runner.send_message(MSG_REFUSE, {"reason": reason}, client_id=client_id)

    def _foreign(self, data: dict[str, Any]) -> str | None:
        """Why a worker is not one of this run's, or None."""
        here = socket.gethostname()
        if data.get("processes_child") and data.get("host") == here and int(data.get("ppid", -1)) != os.getpid():
            return (
                f"it is a --processes child of process {data.get('ppid')}, not of this master (process {os.getpid()});"
                " its own master probably could not bind its port (another run listens there): give each run on a"
                " machine its own --master-bind-port and the same --master-port"
            )
        theirs = str(data.get("scenario_name") or "")
        scenario = self.controller.scenario
        if theirs and scenario is not None and theirs != scenario.name:
            return f"it was started with scenario {theirs!r}, this run replays {scenario.name!r}"
        their_run = str(data.get("run_id") or "")
        mine = str(self._option("run_id", "") or "")
        if their_run and mine and their_run != mine:
            return f"it was started with --run-id {their_run}, this run is {mine}"
        return None

    def is_refused(self, client_id: str) -> bool:
        return client_id in self._refused_before

    def on_need(self, environment: Environment, msg: Any, **_: Any) -> None:
        """A worker's users need samples: hand out the next of the current stage's pass."""
        session, client_id = self.session, msg.node_id
        if session is None or session.stopping or self.is_refused(client_id):
            self.runner.send_message(MSG_CHUNK, {"items": [], "epoch": -1, "done": True}, client_id=client_id)
            return
        if client_id not in session.joined_at:
            self._join_late(session, client_id)
        dispenser = session.dispenser
        items = dispenser.take(dispenser.chunk_size(int(msg.data["n"]), len(session.workers)))
        session.outstanding[client_id] = session.outstanding.get(client_id, 0) + len(items)
        self.runner.send_message(
            MSG_CHUNK, {"items": items, "epoch": dispenser.epoch, "done": not items}, client_id=client_id
        )
        if not items:
            self._stop_if_exhausted(session)

    def on_return(self, environment: Environment, msg: Any, **_: Any) -> None:
        session = self.session
        if session is None:
            return
        items = [(int(i), int(p)) for i, p in msg.data["items"]]
        session.outstanding[msg.node_id] = session.outstanding.get(msg.node_id, 0) - len(items)
        session.dispenser.give_back(items, epoch=int(msg.data["epoch"]))

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        session = self.session
        if session is None or client_id in session.refused:
            return
        if client_id not in session.joined_at:
            self._join_late(session, client_id)
        if "stats_total" in data:
            session.ledger.stats_reported(client_id, int(data["stats_total"].get("num_requests", 0)))

    def on_leaving(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.session is not None:
            self.session.ledger.mark_graceful(msg.node_id, t=time.time())
            logger.info(f"worker {msg.node_id} shipped its last rows and left")
            self._stop_if_exhausted(self.session)

    def _sample_users(self) -> None:
        while True:
            self._follow_manual_users()
            self.timeline.note_users(time.time(), self._sending_users())
            gevent.sleep(USERS_SAMPLE_INTERVAL_S)

    def _sending_users(self) -> int:
        """Users that can send: those of the workers in this run (a refused worker's users are not)."""
        if not self.is_master:
            return int(self.runner.user_count)
        session = self.session
        members = session.workers if session is not None else set()
        return sum(c.user_count for c in self.runner.clients.all if c.id in members and c.state != STATE_MISSING)

    def on_rows(self, environment: Environment, msg: Any, **_: Any) -> None:
        rows = msg.data["rows"]
        session = self.session
        if session is None or session.writer.closed:
            logger.error(f"{len(rows)} rows from {msg.node_id} arrived after the run ended")
            return
        if msg.node_id not in session.joined_at or msg.node_id in session.refused:
            logger.error(f"ignored {len(rows)} rows from {msg.node_id}, which is not a worker of this run")
            return
        requests = int(msg.data.get("requests", len(rows)))
        stamps = session.writer.write_rows(rows)
        self.controller.quality.add(rows, stamps)
        session.requests_recorded += requests
        session.outstanding[msg.node_id] = session.outstanding.get(msg.node_id, 0) - len(rows)
        session.ledger.rows_arrived(msg.node_id, len(rows), t=time.time(), requests=requests)
        if session.dispenser.exhausted:
            self._stop_if_exhausted(session)

    def _stop_if_exhausted(self, session: RunSession) -> None:
        """Stop once the last stage has handed out its passes and every sample handed out has come back as a row."""
        if session.stopping or not session.dispenser.exhausted or not self._is_last_stage():
            return
        if any(session.outstanding.get(client_id, 0) > 0 for client_id in session.workers):
            return
        session.stopping = True
        logger.info("every pass over the dataset has been sent; stopping the test")
        gevent.spawn(self._stop_test)

    def _stop_test(self) -> None:
        if self._option("headless", False):
            self.runner.quit()
        else:
            self.runner.stop()

    def on_sigterm(self) -> None:
        """SIGTERM on a headless master while the shape runs (Locust installs its own handler only afterwards)."""
        if self.session is None:
            os._exit(128 + signal.SIGTERM)  # nothing recorded yet: die as SIGTERM would
        logger.info("SIGTERM: stopping the test; the workers ship their last rows first")
        gevent.spawn(self._stop_test)

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
            logger.error(f"{len(missing)} worker(s) did not ship their last rows in time: {missing}")

    def end_run(self) -> None:
        for greenlet in (self._sampler, self._watcher):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._sampler = self._watcher = None
        session = self.session
        if session is not None:
            session.finish(self.environment)
            self.controller.quality.end()
            print(f"loadgrade: run directory {session.run_dir}", file=sys.stderr)
            self._gate(session)
        self.session = None
        self.timeline = LoadTimeline()
        self._last_stage = None
        self._stage_clock = None
        self._search = None
        self._manual_users = None

    def _gate(self, session: RunSession) -> None:
        """A headless run with ``slo.rules`` ends with their verdict, and exits 1 when one fails (``--no-gate``)."""
        scenario = session.scenario
        rules = scenario.slo.rules if scenario.slo is not None else []
        if not rules or not self._option("headless", False):
            return
        from loadgrade.gate import gate

        result = gate(session.run_dir, rules)
        print("\n".join(result.lines), file=sys.stderr, flush=True)
        if not self._option("no_gate", False):
            self.environment.process_exit_code = result.exit_code
