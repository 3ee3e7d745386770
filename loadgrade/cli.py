"""The ``loadgrade`` command (also ``python -m loadgrade``): run a load test, check scenarios, analyse runs.

Thin, like every command line here: parse, hand over, return the exit status. ``report``, ``check`` and
``compare`` are :mod:`loadgrade.analysis.cli`'s, ``serve-reference`` is :mod:`loadgrade.servers.reference`'s (each
with its own options and help); ``run`` starts Locust with the locustfile shipped in the package. Heavy imports
wait for the command that needs them, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import loadgrade

__all__ = ["build_parser", "locustfile_path", "main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
How much load can a model endpoint take before its answers get worse, not just slower?

loadgrade replays a labelled dataset against a model endpoint under Locust load, records every response
(records.csv in a run directory), and turns the run into per-level accuracy, latency, throughput and
errors, charts, a self-contained report.html and a pass/fail gate for CI. A scenario YAML file names
the endpoint, its protocol, the dataset, the load and the SLO rules.
"""

EPILOG = """\
Run "%(prog)s COMMAND --help" for a command's options and examples.

try it on the reference server (two terminals; README.md's Install section has a scenario for it):
  %(prog)s serve-reference --port 8000 --service-time-ms 20 --degrade-above 6 --shed-above 14
  %(prog)s validate digits.yaml
  %(prog)s run digits.yaml
  %(prog)s report runs/digits-20261203T120000Z
  %(prog)s check runs/digits-20261203T120000Z --rule 'accuracy_drop<=0.01'

exit status: 0 success; 1 an SLO rule failed (run, check); 2 unusable input: an invalid scenario, a failed
preflight (the endpoint is down or answers wrongly), a run directory that cannot be analysed, a bad option.
"""

RUN_DESCRIPTION = """\
Replay SCENARIO's labelled dataset against its endpoint under the load its load: section describes.
Headless by default: a few samples check the endpoint first (the preflight), the stages run, and the
run ends with the verdict of the scenario's slo.rules. This starts

  locust -f LOCUSTFILE --scenario SCENARIO --headless [--processes N] [LOCUST OPTION ...]

with the locustfile shipped in loadgrade (%(locustfile)s).

the run directory:
  records.csv (one row per request), run.json (the scenario, its stages, counts, versions) and, if the
  scenario samples resources, resources.csv go to runs/<scenario name>-<UTC time> under the current
  directory, or to the scenario's output.dir, or to --run-dir DIR. Its path is printed at the end;
  analyse it with: loadgrade report RUN_DIR

the web UI:
  --web starts Locust's web UI instead of running headless: open http://localhost:8089 (Locust's
  --web-host and --web-port change it) and press Start; the scenario's stages drive the users. With
  --manual you set the users, ramp and run time yourself (in the form, or -u/-r/-t headless).

loadgrade's own options (Locust's "custom arguments"; each also an environment variable):
  --run-dir DIR     where the run directory goes (LOADGRADE_RUN_DIR)
  --run-id ID       the run's name; a worker started with another one is refused (LOADGRADE_RUN_ID)
  --skip-preflight  send no samples to check the endpoint first (LOADGRADE_SKIP_PREFLIGHT)
  --no-gate         print the verdict of slo.rules, but exit 0 when one fails (LOADGRADE_NO_GATE)
  --quality-every S a headless quality line every S seconds within a stage (default 30; 0: at stage
                    ends only) (LOADGRADE_QUALITY_EVERY)

Locust's options go after SCENARIO too and are passed on as they are, e.g. -H/--host URL (instead of
the scenario's base_url), --only-summary, --loglevel LEVEL, --html FILE; "locust --help" lists them.
"""

RUN_EPILOG = """\
examples:
  %(prog)s scenarios/digits.yaml
  %(prog)s scenarios/digits.yaml --processes 2 --run-dir runs/digits-v2
  %(prog)s scenarios/digits.yaml -H http://127.0.0.1:9000 --no-gate
  %(prog)s scenarios/digits.yaml --web
  %(prog)s scenarios/digits.yaml --manual -u 8 -r 2 -t 60s

exit status (headless):
  0  the run ended and every slo rule passed (a scenario without rules: and no request failed)
  1  an slo rule failed (--no-gate reports it and exits 0); a scenario without rules: a request
     failed (Locust's --exit-code-on-error)
  2  an invalid scenario, a failed preflight (the endpoint is down, or answers wrongly), or a run
     that could not be judged
"""

VALIDATE_DESCRIPTION = """\
Load each scenario as a run would, reading its dataset, and report every problem with its file, line
and key; a valid one gets one line: its endpoint, sample count, stages and duration. Sends no load.

exit status: 0 every scenario is valid, 2 otherwise.
"""


def locustfile_path(*, manual: bool = False) -> Path:
    """The locustfile shipped in the package: the scenario's load shape, or (``manual``) users set by hand."""
    return Path(__file__).with_name("locustfile_manual.py" if manual else "locustfile.py")


def _version() -> str:
    try:
        locust = metadata.version("locust")
    except metadata.PackageNotFoundError:
        locust = "not installed"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"loadgrade {loadgrade.__version__} (locust {locust}, Python {python})"


def _processes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes, or -1, got {text!r}")
    return value


def build_parser(*, prog: str = "loadgrade") -> argparse.ArgumentParser:
    """The top-level parser; the delegated commands are listed here, their options are their own parsers'."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    run = commands.add_parser(
        "run",
        help="replay a scenario under load with Locust (headless unless --web); writes a run directory",
        description=RUN_DESCRIPTION % {"locustfile": locustfile_path()},
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [-h] [--web] [--manual] [--processes N] SCENARIO [LOCUST OPTION ...]",
        # a Locust option is never taken for an abbreviation of ours (--web-port is not --web)
        allow_abbrev=False,
    )
    run.set_defaults(subparser=run)
    run.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")
    run.add_argument("--web", action="store_true", help="start Locust's web UI instead of running headless")
    run.add_argument(
        "--manual",
        action="store_true",
        help="ignore the scenario's load: section; set users by hand (the web UI's form, or -u/-r/-t)",
    )
    run.add_argument(
        "--processes",
        metavar="N",
        type=_processes,
        help="generate the load from N worker processes on this machine (-1: one per core); default: one",
    )
    validate = commands.add_parser(
        "validate",
        help="check scenario files and their datasets without sending any load; exit 2 if one is invalid",
        description=VALIDATE_DESCRIPTION,
        epilog=f"example:\n  {prog} validate scenarios/*.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files")
    # listed for the help; main() hands their arguments to their own parsers before this one sees them
    for name, summary in _DELEGATED_HELP.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


_DELEGATED_HELP = {
    "report": "analyse a run: levels.csv, summary.json, charts and report.html; print the per-level table",
    "check": "the CI gate: evaluate pass/fail rules on a run; exit 0 pass, 1 fail, 2 unusable input",
    "compare": "compare two runs level by level (e.g. model v1 against v2): compare.csv, .json, .png",
    "serve-reference": "start the reference model server, whose answers get worse under load (to try loadgrade)",
}


def _analysis(argv: list[str], prog: str) -> int:
    from loadgrade.analysis.cli import main as analysis_main

    return analysis_main(argv, prog=prog)


def _serve_reference(argv: list[str], prog: str) -> int:
    from loadgrade.servers.reference import main as reference_main

    return reference_main(argv[1:], prog=f"{prog} {argv[0]}")


_DELEGATED: dict[str, Callable[[list[str], str], int]] = {
    "report": _analysis,
    "check": _analysis,
    "compare": _analysis,
    "serve-reference": _serve_reference,
}


def _validate(paths: Sequence[str]) -> int:
    from loadgrade.errors import ScenarioError
    from loadgrade.scenario import load_scenario
    from loadgrade.shapes import stage_plan, total_duration

    status = EXIT_OK
    for path in paths:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            print(exc, file=sys.stderr)
            status = EXIT_USAGE
            continue
        plan = stage_plan(scenario.load)
        duration = total_duration(plan)
        # the URL as the file writes it: ${NAME} may hold a credential, and this line ends up in CI logs
        print(
            f"{path}: ok: {scenario.name}: {scenario.protocol.kind} at {scenario.base_url_as_written}"
            f"{scenario.request_path}, {len(scenario.data())} samples, {len(plan)} stage(s), "
            + (f"{duration:g} s" if duration is not None else "until stopped")
            + (f", {scenario.dataset.passes} pass(es)" if scenario.dataset.passes else "")
            + (f", graded {scenario.grading.mode}" if scenario.grading is not None else "")
        )
    return status


def locust_command(
    scenario: str, *, web: bool = False, manual: bool = False, processes: int | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """The Locust command line ``loadgrade run`` starts, with this interpreter (no need for ``locust`` on PATH)."""
    command = [sys.executable, "-m", "locust", "-f", str(locustfile_path(manual=manual)), "--scenario", scenario]
    if not web:
        command.append("--headless")
    if processes is not None:
        command += ["--processes", str(processes)]
    return [*command, *extra]


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    if not Path(args.scenario).is_file():
        # most often a Locust option put before SCENARIO took it for its value (-H URL SCENARIO)
        args.subparser.error(f"SCENARIO {args.scenario!r} is not a file (Locust's options go after SCENARIO)")
    command = locust_command(args.scenario, web=args.web, manual=args.manual, processes=args.processes, extra=extra)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":  # no exec there: wait for Locust and pass on its exit status
        return subprocess.call(command)
    # Locust takes this process over: Ctrl-C, SIGTERM and the exit status are its own, the PID stays the same
    os.execv(command[0], command)
    return EXIT_FAIL  # not reached


def main(argv: Sequence[str] | None = None, *, prog: str = "loadgrade") -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _DELEGATED:
        return _DELEGATED[args[0]](args, prog)
    parser = build_parser(prog=prog)
    options, extra = parser.parse_known_args(args)
    if options.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if options.command == "run":
        return _run(options, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _validate(options.scenarios)
