"""The glue between Locust and loadgrade: options, events and messages, wired to the two roles.

Importing this module registers loadgrade's listeners on Locust's global ``events``; a locustfile then only needs
a user class that calls :meth:`Controller.replay_one` (see ``locustfiles/replay.py``).

Roles. The *master* (or the single process of a standalone run) owns the run (:mod:`loadgrade.master`): the run
directory, the one ``records.csv`` writer, the load timeline, the hand-out of samples and ``run.json``. *Workers*
(or the same standalone process) own the requests (:mod:`loadgrade.worker`): their users take samples from the
master as they need them and ship their rows back in batches over Locust's messaging. When the test stops, the
master asks every worker to stop its users and ship its last rows before it closes the run ("drain"), so the tail
of a run is never lost, and Locust's request count and ours agree.
"""

from __future__ import annotations

import locust.runners
import locust.stats
from locust import events
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, LocalRunner, MasterRunner, WorkerRunner
from locust.shape import LoadTestShape

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gevent

from loadgrade.errors import ScenarioError
from loadgrade.master import MasterRun, RunSession
from loadgrade.messages import (
    MASTER_SILENCE_S,
    MSG_DRAINED,
    MSG_HELLO,
    MSG_LEAVING,
    MSG_NEED,
    MSG_RETURN,
    MSG_ROWS,
)
from loadgrade.scenario import Scenario, load_scenario
from loadgrade.worker import WorkerReplay

logger = logging.getLogger("loadgrade")

# Locust's worker quits after 60 s without a heartbeat from its master; an orphaned worker would go on loading the
# endpoint, unrecorded, all that time. The module global is read at every check.
locust.runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_SILENCE_S

# Locust 2.47 closes its --csv files at shutdown while the greenlet that rewrites them every second still runs: when
# the exit yields past that second, the greenlet writes to a closed file and prints a traceback after the verdict.
# Each writer greenlet is remembered and stopped on `quit`, which fires just before the files are closed.
_csv_writers: list[gevent.Greenlet] = []
_locust_stats_writer = locust.stats.StatsCSVFileWriter.stats_writer


def _remembered_stats_writer(self: locust.stats.StatsCSVFileWriter) -> None:
    _csv_writers.append(gevent.getcurrent())
    _locust_stats_writer(self)


locust.stats.StatsCSVFileWriter.stats_writer = _remembered_stats_writer  # type: ignore[method-assign]


@events.quit.add_listener
def _stop_csv_writers(**_: Any) -> None:
    while _csv_writers:
        _csv_writers.pop().kill(block=True)


QUALITY_EVERY_S = 30.0  # default of --quality-every


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
    parser.add_argument(
        "--run-id",
        type=str,
        default="",
        env_var="LOADGRADE_RUN_ID",
        include_in_web_ui=False,
        help="Name of this run; a worker started with another --run-id is refused (default: a fresh id per run)",
    )
    parser.add_argument(
        "--skip-preflight",
        action="store_true",
        default=False,
        env_var="LOADGRADE_SKIP_PREFLIGHT",
        include_in_web_ui=False,
        help="Do not send the few samples that check the endpoint before the load starts",
    )
    parser.add_argument(
        "--no-gate",
        action="store_true",
        default=False,
        env_var="LOADGRADE_NO_GATE",
        include_in_web_ui=False,
        help="Headless: print the verdict of the scenario's slo.rules but do not exit 1 when one fails",
    )
    parser.add_argument(
        "--quality-every",
        type=float,
        default=QUALITY_EVERY_S,
        env_var="LOADGRADE_QUALITY_EVERY",
        include_in_web_ui=False,
        help="Seconds between the quality lines of a stage still running (a long stage, a soak, a run without "
        f"stages); each stage also gets a line when it ends; 0: only then (default: {QUALITY_EVERY_S:g})",
    )


class Controller:
    """loadgrade's state in one Locust process, hung off the environment as ``environment.loadgrade``.

    It holds the scenario and the two roles: ``run`` (the master's, :class:`~loadgrade.master.MasterRun`) and
    ``replay`` (the worker's, :class:`~loadgrade.worker.WorkerReplay`); a standalone process plays both.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.scenario: Scenario | None = None
        self._scenario_arg = ""
        self.quality = QualityMonitor(self)  # live quality figures (loadgrade.live): web UI and console
        self.run = MasterRun(self)
        self.replay = WorkerReplay(self)

    @property
    def runner(self) -> Any:
        return self.environment.runner

    @property
    def session(self) -> RunSession | None:
        return self.run.session

    @property
    def timeline(self) -> Any:
        return self.run.timeline

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

    def use_scenario(self, arg: str, scenario: Scenario) -> None:
        """Take a scenario just read from ``arg`` (the web UI's start form) as the one :meth:`ensure_scenario` gives."""
        self.scenario, self._scenario_arg = scenario, arg

    def configure_user(self, user: Any) -> None:
        self.replay.configure_user(user)

    def replay_one(self, user: Any) -> None:
        self.replay.replay_one(user)

    def current_stage(self) -> Any:
        return self.run.current_stage()

    def stop_test(self) -> None:
        self.run._stop_test()


# ---------------------------------------------------------------------------------------------------- events


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
    run, replay = controller.run, controller.replay
    if isinstance(runner, MasterRunner):  # first: --processes children say hello as soon as they are up
        runner.register_message(MSG_HELLO, run.on_hello)
    if isinstance(runner, MasterRunner | LocalRunner):
        options = environment.parsed_options
        headless = bool(options is not None and getattr(options, "headless", False))
        if controller.scenario_arg() or headless:
            try:
                controller.ensure_scenario()
            except ScenarioError as exc:  # before any load starts: one clear message, exit status 2
                print(f"loadgrade: invalid scenario\n{exc}", file=sys.stderr)
                sys.exit(2)
        if headless:
            run.preflight_or_exit()  # before the shape starts: a dead endpoint or a wrong path sends no load
        runner.register_message(MSG_ROWS, run.on_rows)
        runner.register_message(MSG_NEED, run.on_need)
        runner.register_message(MSG_RETURN, run.on_return)
        if headless and environment.shape_class is not None:
            # Locust blocks on the shape before it installs its SIGTERM handler: without ours, a SIGTERM during the
            # test (a pod deleted, a CI job cancelled) would kill the master with the run left open
            gevent.signal_handler(signal.SIGTERM, run.on_sigterm)
        runner.register_message(MSG_DRAINED, run.on_drained)
        controller.quality.setup(environment.web_ui)
    if isinstance(runner, MasterRunner):
        runner.register_message(MSG_LEAVING, run.on_leaving)
        environment.events.worker_report.add_listener(run.on_worker_report)
    if isinstance(runner, WorkerRunner | LocalRunner):
        replay.register(runner, distributed=isinstance(runner, WorkerRunner))
    if isinstance(runner, WorkerRunner):
        replay.say_hello()
        if runner.worker_state in (STATE_SPAWNING, STATE_RUNNING):
            # joined a running test: its spawn (and test_start) came while the runner was still connecting, before
            # environment.runner was set, so our test_start listener could not tell it was a worker
            _on_test_start(environment)
        # Added after the runner's own quitting listener, and quitting fires in reverse order: our rows and
        # stats reach the master before the worker's "quit" message does.
        environment.events.quitting.add_listener(replay.leave)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    try:
        if isinstance(environment.runner, MasterRunner | LocalRunner):
            controller.run.begin_run()
        if isinstance(environment.runner, WorkerRunner | LocalRunner):
            controller.replay.begin()
    except ScenarioError as exc:
        logger.error(f"invalid scenario, stopping the test\n{exc}")
        gevent.spawn(controller.stop_test)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        controller_of(environment).run.drain_workers()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    if isinstance(environment.runner, WorkerRunner | LocalRunner):
        controller.replay.end()
    if isinstance(environment.runner, MasterRunner | LocalRunner):
        controller.run.end_run()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    controller = controller_of(environment)
    if controller.session is not None and isinstance(environment.runner, MasterRunner | LocalRunner):
        # shut down mid-test (SIGTERM, Ctrl-C): stop properly first, so workers ship their last rows
        environment.runner.stop()
        if controller.session is not None:
            controller.run.end_run()


# ---------------------------------------------------------------------------------------------------- live quality


class QualityMonitor:
    """Live quality on the master (or standalone process): every batch of rows is scored as it arrives.

    One :class:`loadgrade.live.LiveQuality` per test, fed in :meth:`Controller.on_rows` with the same stamps the
    writer gives the rows; shown in the web UI (:mod:`loadgrade.webui`) and as console lines: one per level once
    it has ended and its rows have had time to arrive, one every ``--quality-every`` seconds for the level still
    running, and a summary when the test ends. Each line compares its level with the baseline as the analysis
    does (:meth:`loadgrade.live.LiveQuality.baseline_comparison`) and marks it DEGRADED on the same decision.
    """

    REPORT_AFTER_S = 2.0  # a level's line waits this long after its end for the rows still in flight or in transit

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.live: Any = None  # LiveQuality of the current (or last) test; the module is imported on the master only
        self.records_path: Path | None = None
        self._stages_seen = 0
        self._printed: set[int] = set()
        self._last_line: dict[int, float] = {}  # per level still running: when its last line was printed
        self._tolerance = 0.01
        self._reporter: gevent.Greenlet | None = None

    def setup(self, web_ui: Any) -> None:
        """In ``init``: load the scoring code now rather than at test start; add the Quality tab if there is a UI."""
        # the analysis package takes seconds to import, better before any load; so does scipy.stats, which the
        # paired comparison's t-interval needs (samples sent several times): mid-test, it would stall a standalone
        # run's users and the master's heartbeats for a second
        import scipy.stats  # noqa: F401

        import loadgrade.live  # noqa: F401

        if web_ui is None:  # headless, or a worker
            return
        from loadgrade.webui import install

        options = self.controller.environment.parsed_options
        install(
            web_ui,
            live=lambda: self.live,
            records=lambda: self.records_path,
            flush=self._flush,
            check_start=self.controller.run.check_web_start,
            base_path=str(getattr(options, "web_base_path", "") or ""),
        )

    def _flush(self) -> None:
        session = self.controller.session
        if session is not None:
            session.writer.flush()

    def begin(self, session: RunSession) -> None:
        """A fresh aggregator for each test; the labels come from the scenario's dataset (read once)."""
        from loadgrade.live import DEFAULT_TOLERANCE, LiveQuality

        self.records_path = session.writer.path
        self._stages_seen, self._printed, self._last_line = 0, set(), {}
        scenario = session.scenario
        self._tolerance = scenario.slo.tolerance if scenario.slo is not None else DEFAULT_TOLERANCE
        try:
            dataset = scenario.data()
            self.live = LiveQuality(
                dataset.ids,
                dataset.labels,
                task=scenario.dataset.task,
                grading=scenario.grading.model_dump() if scenario.grading is not None else None,
                slo_latency_ms=scenario.slo.latency_ms if scenario.slo is not None else None,
                tolerance=self._tolerance,
                t_start=session.t_start,
            )
        except Exception as exc:  # live figures are a view: never let them stop a test
            logger.error(f"no live quality figures for this test: {exc}")
            self.live = None
            return
        self._reporter = gevent.spawn(self._report_forever)

    def _sync_levels(self) -> None:
        """Every level is a stage of the master's timeline (a shape's, or a user count set by hand), as offline."""
        live, controller = self.live, self.controller
        stages = controller.timeline.stages
        for stage in stages[self._stages_seen :]:
            if not live.has_level(stage.index):
                live.start_level(stage.t_start, users=stage.target_users, rate=stage.target_rps, index=stage.index)
        self._stages_seen = len(stages)

    def add(self, rows: list[list[Any]], stamps: list[tuple[Any, ...]]) -> None:
        """Feed the live figures with a batch and the stamps the writer gave it."""
        if self.live is None:
            return
        try:
            self._sync_levels()
            self.live.add(rows, stamps)
        except Exception:
            logger.exception("live quality figures stopped (the records are not affected)")
            self.live = None

    def _report_forever(self) -> None:
        while self.live is not None:
            gevent.sleep(0.5)
            try:
                self._sync_levels()
                self._report(final=False)
            except Exception:
                logger.exception("live quality report failed")
                return

    def _every_s(self) -> float:
        options = self.controller.environment.parsed_options
        every = getattr(options, "quality_every", QUALITY_EVERY_S) if options is not None else QUALITY_EVERY_S
        return max(float(every or 0.0), 0.0)

    def _report(self, *, final: bool) -> None:
        """The lines now due: each level that has ended (once), and the running level every ``_every_s``."""
        live, now, every = self.live, time.time(), self._every_s()
        due: list[tuple[int, float, bool]] = []  # (level, time of its figures, ended)
        for bounds in live.level_bounds():
            index, t_end = bounds["level"], bounds["t_end"]
            if index in self._printed:
                continue
            if t_end is not None and (final or now >= t_end + self.REPORT_AFTER_S):
                self._printed.add(index)
                due.append((index, t_end, True))
            elif t_end is None and not final and every and now - self._last_line.get(index, bounds["t_start"]) >= every:
                self._last_line[index] = now
                due.append((index, now, False))
        if not due:
            return
        comparison = live.baseline_comparison(tolerance=self._tolerance)
        for index, t, ended in due:
            level = live.stage_summary(index, now=now)
            self._say(format_level_line(level, comparison.get(index), elapsed_s=t - live.t_start, ended=ended))

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
            self._say(format_run_line(live, live.baseline_comparison(tolerance=self._tolerance)))
        except Exception:
            logger.exception("live quality summary failed")

    def _say(self, line: str) -> None:
        options = self.controller.environment.parsed_options
        if options is not None and getattr(options, "headless", False):
            print(f"loadgrade: {line}", file=sys.stderr, flush=True)
        else:  # the web UI's log tab shows it, after the logger's name
            logger.info(line)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _clock(seconds: float) -> str:
    """``[mm:ss]`` (``[h:mm:ss]`` from an hour) since the start of the test."""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"[{hours}:{minutes:02d}:{secs:02d}]" if hours else f"[{minutes:02d}:{secs:02d}]"


def _load(level: dict[str, Any]) -> str:
    name = "stage" if level["kind"] == "stage" else "level"
    load = f"{level['rate']:g} req/s" if level.get("rate") is not None else f"{level['users']} users"
    return f"{name} {level['level']} ({load})"


def _quality_figures(figures: dict[str, Any], versus: str = "") -> str:
    """All-request accuracy (a failed request counts as wrong) with its interval, ``versus`` the baseline, then
    answered accuracy when some requests failed, the count, p95 latency and the failures."""
    accuracy = f"all requests {_pct(figures['effective_accuracy'])}"
    if figures["effective_accuracy_low"] is not None:
        low, high = figures["effective_accuracy_low"], figures["effective_accuracy_high"]
        accuracy += f" [{100 * low:.1f}, {100 * high:.1f}]"
    answered = (
        f"answered {_pct(figures['accuracy'])}, "
        if figures["accuracy"] is not None and figures["n_ok"] < figures["n"]
        else ""
    )
    errors = ", ".join(f"{kind} {count}" for kind, count in figures["errors"].items())
    p95 = "n/a" if figures["p95_ms"] is None else f"{figures['p95_ms']:.1f} ms"
    return (
        f"{accuracy}{versus}; {answered}n={figures['n']}, p95 {p95}, "
        f"failed {_pct(figures['error_rate'])}{f' ({errors})' if errors else ''}"
    )


def _versus(comparison: dict[str, Any] | None) -> str:
    """``, -19.7 pts vs stage 0 DEGRADED``: the paired change from the baseline and the analysis's verdict."""
    if comparison is None:
        return ""
    baseline = comparison["baseline"]
    if comparison["is_baseline"]:
        return ", baseline"
    if comparison["diff"] != comparison["diff"]:  # NaN: no sample answered at both levels yet
        return f", no sample shared with stage {baseline} yet"
    verdict = (
        " DEGRADED"
        if comparison["degraded"]
        else " (worse, within tolerance)"
        if comparison["significantly_worse"]
        else ""
    )
    return f", {100 * comparison['diff']:+.1f} pts vs stage {baseline}{verdict}"


def format_level_line(
    level: dict[str, Any], comparison: dict[str, Any] | None = None, *, elapsed_s: float, ended: bool = True
) -> str:
    """One console line (without the ``loadgrade:`` prefix) for a level: ended, or so far while it runs.

    ``level`` from :meth:`loadgrade.live.LiveQuality.stage_summary`, ``comparison`` its entry of
    :meth:`loadgrade.live.LiveQuality.baseline_comparison`, ``elapsed_s`` the time of its figures since the start.

    Examples
    --------
    >>> level = {"level": 1, "kind": "stage", "users": 10, "rate": None, "n": 1468, "n_ok": 1468,
    ...          "accuracy": 0.767, "effective_accuracy": 0.767, "effective_accuracy_low": 0.732,
    ...          "effective_accuracy_high": 0.799, "p95_ms": 32.7, "error_rate": 0.0, "errors": {}}
    >>> comparison = {"baseline": 0, "is_baseline": False, "diff": -0.197, "significantly_worse": True,
    ...               "degraded": True}
    >>> print(format_level_line(level, comparison, elapsed_s=24.2).replace("; ", ";\\n"))
    [00:24] stage 1 (10 users): all requests 76.7% [73.2, 79.9], -19.7 pts vs stage 0 DEGRADED;
    n=1468, p95 32.7 ms, failed 0.0%
    """
    so_far = "" if ended else ", so far"
    return f"{_clock(elapsed_s)} {_load(level)}{so_far}: {_quality_figures(level, _versus(comparison))}"


def format_run_line(live: Any, comparison: dict[int, dict[str, Any]] | None = None) -> str:
    """The console summary of a test (without the prefix): every level together, the level with the lowest
    all-request accuracy, and the levels marked DEGRADED."""
    total = live.run_summary()
    levels = [level for level in live.levels() if level["effective_accuracy"] is not None and level["n_truth"]]
    worst = min(levels, key=lambda level: level["effective_accuracy"], default=None)
    count = total["levels"]
    end = live.t_end if live.t_end is not None else time.time()
    line = (
        f"{_clock(end - live.t_start)} over the test ({count} level{'' if count == 1 else 's'}): "
        f"{_quality_figures(total)}"
    )
    if worst is not None and len(levels) > 1:
        line += f"; lowest at {_load(worst)}: {_pct(worst['effective_accuracy'])}"
    degraded = [index for index, row in sorted((comparison or {}).items()) if row["degraded"]]
    if degraded:
        line += f"; DEGRADED: {'stage' if len(degraded) == 1 else 'stages'} {', '.join(map(str, degraded))}"
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
            logger.error(f"invalid scenario\n{exc}")
            return None
        if current is None:
            return None
        _, plan = current
        return plan.users, plan.spawn_rate
