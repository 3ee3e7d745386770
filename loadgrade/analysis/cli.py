"""Command line: ``loadgrade report|check|compare`` (also ``python -m analysis`` from the repository root).

Parse, call, print; nothing else.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loadgrade.analysis.errors import AnalysisInputError

# The rest of the analysis (pandas, scikit-learn, matplotlib: seconds to load) is imported by each command once it
# has said what it is about to do, so that `report` prints its first line at once.
if TYPE_CHECKING:
    import pandas as pd

    from loadgrade.analysis.report import RunAnalysis

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_UNUSABLE = 0, 1, 2
# An open-model level below this share of its offered rate, or with more late arrivals than this, is warned about.
RATE_MET_SHARE, LATE_SHARE_WARNING = 0.95, 0.05

DESCRIPTION = """\
Analyse a loadgrade run: how accuracy, latency, throughput and errors change as load rises.

A run directory holds records.csv (one row per request) and run.json (the scenario and its stages).
Labels come from the scenario's dataset unless --truth names another file.

  report   levels.csv, summary.json, charts (SVG and PNG) and a self-contained report.html
  check    pass/fail rules for CI
  compare  two runs level by level (e.g. model v1 against v2): compare.csv, compare.json, compare.png
"""

EPILOG = """\
examples:
  %(prog)s report runs/digits-20261123T150000Z
  %(prog)s report runs/x --truth labels.parquet --out results/x --window-s 5
  %(prog)s check runs/x --rule 'accuracy_drop<=0.01' --rule 'p95_ms<=200'
  %(prog)s compare runs/model-v1 runs/model-v2 --out results/v1-vs-v2

exit status: 0 success (check: all rules pass), 1 a check rule failed, 2 unusable input.
"""

CHECK_DESCRIPTION = """\
Evaluate rules against the per-level figures; print rule, measured value and verdict.

Rules come from --rule (repeatable) or else the scenario's slo.rules. A rule is
METRIC OP VALUE, optionally restricted to some levels with @users OP VALUE or
@level OP VALUE; OP is one of <=, >=, <, >, ==; a VALUE may end in % (95% = 0.95).
A rule must hold at every selected level (it is measured at the worst one),
except goodput, throughput, output_tokens_per_s and token_goodput_tps, which
are measured at the best level.

Quality counts every request: a request that failed, timed out or was shed
(HTTP 429/503), or an LLM reply cut short, is a lost answer and counts as
wrong, so a server cannot pass by refusing the load. Only the metrics named
answered_* (and the scikit-learn ones: balanced_accuracy, f1_macro, ...) look
at answered requests alone.

  accuracy                accuracy over every labelled request, lost answers wrong
                          (the effective_accuracy column; effective_accuracy is the same)
  answered_accuracy       accuracy among answered requests: model quality
  accuracy_drop           baseline minus level, over every request, paired per sample
                          (the samples both levels sent); effective_accuracy_drop is the same
  answered_accuracy_drop  the same among answered requests only
  lost_rate               share of requests without a right answer (wrong or failed)
  wrong_rate              share answered, but wrong
  failed_rate             share that failed, any kind, cut-short replies included (= error_rate)
  shed_rate               share the server shed: HTTP 429 and 503
  client_error_rate       other HTTP 3xx/4xx (e.g. 400, 404): the scenario asks wrongly
  server_error_rate       other HTTP errors (500, 502, 504, ...)
  cut_short_rate          LLM replies cut short: empty, stopped at max_tokens before the answer,
                          or a stream without its end (= error_rate_cut_short)
  error_rate_<kind>       per kind: http, timeout, connection, decode, extract, cut_short
  coverage                share of the dataset's samples a level sent

Latency (p95_ms, ...) is over successful responses: a level where nothing succeeded has
no latency and is left out of a latency rule, so pair one with accuracy_drop or failed_rate.

A run that never ended (run.json has ended_at null) is unusable input (exit 2) unless
--allow-incomplete is given. A run that lost a worker is judged on its rules as usual, and
the output says how many requests may be missing.

Open-model runs (load kind rate: rows with t_scheduled) also have p95_sched_ms and
p99_sched_ms (and p50/p90/max): latency measured from the scheduled time, so the wait
for a free user counts (corrected for coordinated omission), as well as lag_p99_ms
(send minus scheduled time) and late_share (sent over 10 ms late). @rate OP VALUE
selects levels by their target arrival rate.

LLM runs (streamed replies) also have, over successful replies, in ms: p50_ttft_ms ...
p99_ttft_ms and max_ttft_ms (time to first token), p50_tpot_ms ... max_tpot_ms (time per
output token after the first), p50_itl_ms ... p99_itl_ms (each reply's mean inter-token
gap), p99_itl_max_ms and max_itl_ms (the longest gap). output_tokens_per_s (output
tokens of successful replies per second) and token_goodput_tps (output tokens of the
answers goodput counts, per second) are capacities.
goodput counts correct answers within every limit of the scenario's slo: latency_ms,
ttft_ms and tpot_ms.
"""

CHECK_EPILOG = (
    "examples:\n"
    "  accuracy_drop<=0.01  accuracy>=0.9@users>=50  p95_ms<=200  goodput>=100  error_rate<=0.01\n"
    "  answered_accuracy_drop<=0.01  shed_rate<=1%  client_error_rate==0\n"
    "  p99_sched_ms<=500  p95_sched_ms<=300@rate<=100  late_share<=1%\n"
    "  p95_ttft_ms<=500  p95_tpot_ms<=50  output_tokens_per_s>=1000  cut_short_rate<=1%\n\n"
    "metrics:\n  {rule metrics}\n\n"
    "exit status: 0 all rules pass, 1 a rule fails, 2 unusable input or rule."
)


class _CheckHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills in the rule metrics when the help is shown: they come from analysis.rules, which loads pandas."""

    def add_text(self, text: str | None) -> None:
        if text and "{rule metrics}" in text:
            from loadgrade.analysis.rules import RULE_METRICS

            metrics = textwrap.fill(", ".join(RULE_METRICS), width=100, subsequent_indent="  ")
            text = text.replace("{rule metrics}", metrics)
        super().add_text(text)


COMPARE_DESCRIPTION = """\
Compare run B with run A (e.g. model v2 against v1 under the same load), level by level.

Levels are matched by offered users (the k-th visit of the same user count in A with the k-th in B).
At each level: the --metric of A and of B (default: accuracy over every request, a failed, timed-out
or shed request counted as wrong), the difference B - A paired per sample on the samples both runs
sent, with its interval and test, Holm-adjusted across levels; p95 latency and throughput of both.
Writes compare.csv, compare.json and compare.png into RUN_B/analysis/compare-vs-<RUN_A name>/ or --out,
prints the table and one concluding line.
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_run_options(parser: argparse.ArgumentParser, *, runs: int = 1) -> None:
    if runs == 1:
        parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="run directory with records.csv and run.json")
    else:
        parser.add_argument("run_a", metavar="RUN_A", type=Path, help="reference run directory (e.g. model v1)")
        parser.add_argument("run_b", metavar="RUN_B", type=Path, help="run directory compared with it (e.g. model v2)")
    parser.add_argument(
        "--truth",
        metavar="FILE",
        type=Path,
        help="labels keyed by sample id (.csv, .jsonl or .parquet); default: the scenario's dataset"
        + (" (used for both runs)" if runs > 1 else ""),
    )
    parser.add_argument(
        "--window-s",
        metavar="N",
        type=_positive_float,
        default=10.0,
        help="length of a load level in seconds when the run recorded no stages (default: 10)",
    )
    parser.add_argument(
        "--task",
        choices=("classification", "regression", "text"),
        help="how to compare predictions with labels; default: the scenario's task, else inferred from the labels",
    )
    parser.add_argument(
        "--metric",
        choices=("effective_accuracy", "accuracy"),
        default="effective_accuracy",
        help=(
            "quality compared between the runs"
            if runs > 1
            else "quality used for degradation, the knee and the headline"
        )
        + ": effective_accuracy, over every request with failed, timed-out and shed requests counted as wrong "
        "(default), or accuracy, among answered requests only (model quality)",
    )
    if runs > 1:
        parser.add_argument(
            "--tolerance",
            metavar="SHARE",
            type=float,
            default=0.0,
            help="a significant difference must also exceed this share (0.01 = 1 point) to be flagged (default: 0)",
        )
        parser.add_argument(
            "--alpha",
            metavar="P",
            type=float,
            default=0.05,
            help="family-wise error rate across levels (default: 0.05)",
        )
        return
    parser.add_argument(
        "--tolerance",
        metavar="SHARE",
        type=float,
        help="drop below baseline that counts as degraded, as a share (0.01 = 1 point); "
        "default: the scenario's slo.tolerance, else 0.01",
    )


def build_parser(*, prog: str = "python -m analysis") -> argparse.ArgumentParser:
    """The parser of the three commands; ``prog`` is the command that runs them (``loadgrade`` when installed)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    report = commands.add_parser(
        "report",
        help="write levels.csv, summary.json, charts (SVG and PNG) and report.html; print the per-level table",
        description="Analyse a run: write levels.csv (one row per load level), summary.json (headline "
        "numbers, the knee, counts, assumptions), charts (SVG and PNG) and report.html (one self-contained page with "
        "the charts embedded, opens from disk) into RUN_DIR/analysis/ or --out, and print a per-level table.",
    )
    _add_run_options(report)
    report.add_argument("--out", metavar="DIR", type=Path, help="output directory (default: RUN_DIR/analysis/)")
    report.add_argument(
        "--no-charts",
        action="store_true",
        help="skip the charts (faster); report.html is still written, without charts",
    )
    check = commands.add_parser(
        "check",
        help="evaluate pass/fail rules (CI gate): exit 0 pass, 1 fail, 2 unusable input",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_EPILOG,
        formatter_class=_CheckHelpFormatter,
    )
    _add_run_options(check)
    check.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="check a run that never ended (run.json has ended_at null: the master died, or the run is still "
        "going) on the records written so far; without it such a run is unusable input (exit 2)",
    )
    check.add_argument(
        "--rule",
        dest="rules",
        metavar="RULE",
        action="append",
        help="a rule such as 'p95_ms<=200' (repeatable; replaces the scenario's slo.rules)",
    )
    compare = commands.add_parser(
        "compare",
        help="compare two runs level by level (e.g. model v1 against v2): compare.csv, compare.json, compare.png",
        description=COMPARE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(compare, runs=2)
    compare.add_argument(
        "--out", metavar="DIR", type=Path, help="output directory (default: RUN_B/analysis/compare-vs-<RUN_A name>/)"
    )
    compare.add_argument("--no-charts", action="store_true", help="skip compare.png")
    return parser


def _rate_warnings(levels: pd.DataFrame) -> list[str]:
    """Open model: a level that did not reach its offered rate, or sent many arrivals late, says so."""
    if "target_rps" not in levels.columns:
        return []
    repeated = levels["target_rps"].duplicated(keep=False).to_numpy(dtype=bool)
    lines = []
    for row, twice in zip(levels.to_dict("records"), repeated, strict=True):
        target, achieved = row["target_rps"], row["throughput_rps"]
        late = row.get("late_share", math.nan)
        short = target == target and achieved < RATE_MET_SHARE * target
        if short or (late == late and late > LATE_SHARE_WARNING):
            which = f" (level {row['level']})" if twice else ""
            lines.append(
                f"warning: at {target:g} req/s offered{which}, {achieved:.1f} req/s were achieved"
                + (
                    f"; {100 * late:.1f} % of arrivals were sent late (p99 lag {row['lag_p99_ms']:.0f} ms)"
                    if late == late
                    else ""
                )
                + ": every user (the concurrency cap) was busy, or the load generator ran short of CPU"
            )
    return lines


def _print_report(analysis: RunAnalysis, written: dict[str, Path]) -> None:
    from loadgrade.analysis.report import describe_knee, format_levels

    summary = analysis.summary
    counts = summary.counts
    title = f"run {analysis.run.run_dir}" + (f" (scenario {summary.scenario})" if summary.scenario else "")
    print(title)
    tested = summary.tested
    labelled = {"protocol": "protocol ", "duration": "ran "}
    keys = ("endpoint", "protocol", "load", "load generator", "duration")
    parts = [labelled.get(k, "") + tested[k] for k in keys if k in tested]
    if "endpoint" in tested or "load" in tested:
        print("tested: " + "; ".join(parts))
    for warning in summary.warnings:
        print(f"WARNING: {warning}")
    print(
        f"task {summary.task}{' (inferred)' if summary.task_inferred else ''}; "
        f"{counts.n_records} records, {counts.n_with_truth} with labels from {summary.truth_path}; "
        f"{summary.n_levels} {summary.level_kind} levels"
    )
    if counts.n_without_truth:
        examples = ", ".join(counts.without_truth_examples)
        print(f"warning: {counts.n_without_truth} records have no label (e.g. {examples}); left out of quality")
    if counts.n_no_answer:
        what = "left out of MAE, RMSE and R²" if summary.task == "regression" else "counted as wrong answers"
        print(f"note: {counts.n_no_answer} successful responses held no answer (null); {what}")
    if summary.n_records_without_level:
        print(f"note: {summary.n_records_without_level} records were sent outside every stage; left out of levels")
    for line in _rate_warnings(analysis.levels):
        print(line)
    print()
    print(format_levels(analysis.levels, task=summary.task))
    if summary.task != "regression":
        print(
            "(all requests: accuracy over every request, a failed or shed one counted as wrong, with its 95% "
            "interval per sample; answered: among answered requests)"
        )
    print()
    print(summary.headline)
    if summary.capacity is not None:
        print(f"capacity search: {summary.capacity['sentence']}")
    levels = analysis.levels
    print(describe_knee("quality knee", summary.quality_knee, caveat=summary.quality_caveat, levels=levels))
    print(describe_knee("latency knee", summary.latency_knee, levels=levels))
    folder = {p.parent for p in written.values()}
    names = ", ".join(p.name for p in written.values())
    print(f"wrote {names} to {folder.pop()}" if len(folder) == 1 else "wrote " + ", ".join(map(str, written.values())))


def _announce(run_dir: Path) -> bool:
    """The first line of ``report``, on stderr before any heavy import: which run, how big (from run.json).

    Nothing, and False, when the run has no records.csv: the error then says why, alone.
    """
    records = run_dir / "records.csv"
    if not records.is_file():
        return False
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        rows = int(info["records_written"])
    except (OSError, ValueError, KeyError, TypeError):
        rows = None
    size = records.stat().st_size
    amount = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    what = f"{rows:,} records ({amount})" if rows is not None else f"records.csv ({amount})"
    print(f"analysing {run_dir}: {what}", file=sys.stderr, flush=True)
    return True


def _report(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    announced = _announce(args.run_dir)
    from loadgrade.analysis.html_report import write_html
    from loadgrade.analysis.io import Progress, wants_progress
    from loadgrade.analysis.plots import write_charts
    from loadgrade.analysis.report import analyse_run, write_outputs

    # a line per step on stderr (what a CI log shows); on a terminal, bars as well for a big run
    progress = Progress(bars=wants_progress(args.run_dir / "records.csv"), lines=announced, started=started)
    analysis = analyse_run(
        args.run_dir,
        truth=args.truth,
        window_s=args.window_s,
        task=args.task,
        metric=args.metric,
        tolerance=args.tolerance,
        progress=progress,
    )
    out_dir = args.out if args.out is not None else args.run_dir / "analysis"
    progress.step("writing levels.csv and summary.json")
    written = write_outputs(analysis, out_dir)
    if not args.no_charts:
        progress.step("charts")
    charts = {} if args.no_charts else write_charts(analysis, out_dir)
    for name, path in charts.items():
        written[name] = path
        if path.with_suffix(".svg").is_file():  # each chart's vector twin (see write_charts)
            written[Path(name).with_suffix(".svg").name] = path.with_suffix(".svg")
    progress.step("report.html")
    written["report.html"] = write_html(analysis, out_dir, charts=charts)
    progress.step("done")
    _print_report(analysis, written)
    return EXIT_OK


def _format_checks(results: pd.DataFrame, *, unit: str = "users", breaks: Sequence[str] = ()) -> str:
    """The verdict table of ``check``: each rule's measured value in its unit (% for a share, points for a drop,
    ms, req/s), where it was measured, and where a failing rule first breaks.

    >>> import pandas as pd
    >>> results = pd.DataFrame({"rule": ["accuracy_drop<=0.01", "p95_ms<=100"], "measured": [0.2561, 33.62],
    ...     "at_load": [16.0, 8.0], "passed": [False, True], "verdict": ["fail", "pass"]})
    >>> print(_format_checks(results, breaks=["8 users", ""]))
    rule                     measured  at users  first breaks at  verdict
    accuracy_drop<=0.01   25.6 points        16  8 users          FAIL
    p95_ms<=100               33.6 ms         8  -                pass
    """
    from loadgrade.analysis.report import format_measure
    from loadgrade.analysis.rules import parse_rule

    width = max(20, *(len(r) for r in results["rule"]))
    breaks = list(breaks) or [""] * len(results)
    where_width = max(15, *(len(b) for b in breaks))
    lines = [f"{'rule':<{width}}  {'measured':>11}  {'at ' + unit:>8}  {'first breaks at':<{where_width}}  verdict"]
    for row, where in zip(results.to_dict("records"), breaks, strict=True):
        measured = format_measure(parse_rule(row["rule"]).metric, float(row["measured"])).replace("–", "-")
        load = "-" if math.isnan(row["at_load"]) else f"{row['at_load']:g}"
        verdict = "pass" if row["passed"] else str(row["verdict"]).upper()
        lines.append(f"{row['rule']:<{width}}  {measured:>11}  {load:>8}  {where or '-':<{where_width}}  {verdict}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    from loadgrade.analysis.degradation import load_unit
    from loadgrade.analysis.io import read_run_info
    from loadgrade.analysis.report import analyse_run, rule_breaks
    from loadgrade.analysis.rules import check_rules, parse_rule

    rules = args.rules
    parsed = [parse_rule(r) for r in rules] if rules else None
    info = read_run_info(args.run_dir) if args.run_dir.is_dir() else {}
    if "ended_at" in info and info["ended_at"] is None and not args.allow_incomplete:
        raise AnalysisInputError(
            f"run '{args.run_dir}' is incomplete: run.json has ended_at null (the master was killed, or the run is "
            "still going); pass --allow-incomplete to check the records written so far"
        )
    analysis = analyse_run(
        args.run_dir,
        truth=args.truth,
        window_s=args.window_s,
        task=args.task,
        metric=args.metric,
        tolerance=args.tolerance,
    )
    if parsed is None:
        scenario = analysis.run.info.get("scenario") or {}
        slo = scenario.get("slo") or {}
        configured = slo.get("rules") or []
        if not configured:
            raise AnalysisInputError(
                "no rules to check: pass --rule (e.g. --rule 'p95_ms<=200') or set slo.rules in the scenario"
            )
        parsed = [parse_rule(r) for r in configured]
    results = check_rules(analysis.levels, parsed)
    for warning in analysis.summary.warnings:
        print(f"WARNING: {warning}")
    print(_format_checks(results, unit=load_unit(analysis.levels), breaks=rule_breaks(analysis.levels, parsed)))
    failed = int((~results["passed"]).sum())
    print(f"{len(results) - failed} of {len(results)} rules pass" + ("" if not failed else f"; {failed} fail"))
    return EXIT_OK if failed == 0 else EXIT_FAIL


def _compare(args: argparse.Namespace) -> int:
    from loadgrade.analysis.compare import compare_conclusion, compare_runs, format_comparison, write_comparison
    from loadgrade.analysis.report import analyse_run

    options = {"truth": args.truth, "window_s": args.window_s, "task": args.task, "metric": args.metric}
    a = analyse_run(args.run_a, **options)
    b = analyse_run(args.run_b, **options)
    table = compare_runs(a, b, metric=args.metric, alpha=args.alpha, tolerance=args.tolerance)
    out_dir = args.out if args.out is not None else args.run_b / "analysis" / f"compare-vs-{args.run_a.resolve().name}"
    written = write_comparison(
        table, out_dir, run_a=str(args.run_a), run_b=str(args.run_b), alpha=args.alpha, chart=not args.no_charts
    )
    print(f"A: {args.run_a}\nB: {args.run_b}\n")
    print(format_comparison(table))
    print()
    print(compare_conclusion(table))
    print(f"wrote {', '.join(p.name for p in written.values())} to {out_dir}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m analysis") -> int:
    """Run the command line; returns the exit status. ``prog`` names the command in usage and help."""
    parser = build_parser(prog=prog)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_UNUSABLE
    handlers = {"report": _report, "check": _check, "compare": _compare}
    try:
        return handlers[args.command](args)
    except AnalysisInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
