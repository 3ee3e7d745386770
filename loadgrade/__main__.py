"""``python -m loadgrade validate SCENARIO...``: check scenario files without sending any load."""

from __future__ import annotations

import argparse
import sys

from loadgrade.errors import ScenarioError
from loadgrade.scenario import load_scenario
from loadgrade.shapes import stage_plan, total_duration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadgrade",
        description="loadgrade: how much load can a model endpoint take before its answers get worse? "
        "Runs themselves start with: locust -f locustfiles/replay.py --scenario FILE",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate",
        help="check scenario files (and their datasets); exit 2 if invalid",
        description="Load each scenario as a run would, reading its dataset, and "
        "report every problem with its file, line and key. Exit status "
        "0 when all are valid, 2 otherwise.",
    )
    validate.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files")
    args = parser.parse_args(argv)

    status = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        plan = stage_plan(scenario.load)
        duration = total_duration(plan)
        # the URL as the file writes it: ${NAME} may hold a credential, and this line ends up in CI logs
        print(
            f"{path}: ok: {scenario.name}: {scenario.protocol.kind} at {scenario.base_url_as_written}"
            f"{scenario.request_path}, {len(scenario.data())} samples, {len(plan)} stage(s), "
            + (f"{duration:g} s" if duration is not None else "until stopped")
            + (f", {scenario.dataset.passes} pass(es)" if scenario.dataset.passes else "")
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
