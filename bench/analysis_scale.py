"""Does ``python -m analysis report`` scale to 10 M records within 60 s and 4 GiB, and linearly in rows?

Writes seeded synthetic run directories (records.csv in the recorder's column order, run.json with 5 stages, a
truth CSV of 10 000 labelled samples) of 1 M, 3 M and 10 M rows into a temporary folder, then runs
``python -m analysis report RUN --no-charts`` on each as a subprocess (and once with charts on the largest) and
measures wall time and peak RSS of that process (``os.wait4``). The baseline, measured in the same run on the same
file, is the bare Arrow read of records.csv in a subprocess; the table prints report time over that baseline, and
seconds per million rows to show linearity.

    .venv/bin/python bench/analysis_scale.py [--rows 1e6 3e6 1e7] [--keep DIR] [--no-charts-run]

The synthetic run is a 10-class classifier replayed in 5 stages of rising users: accuracy falls from 97 % to
72 % and errors (http, timeout, connection, decode, extract) rise from 1 % to 12 % (about 6 % overall); latency
is log-normal and grows with load; each sample is sent many times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadgrade.recording import RECORD_COLUMNS  # noqa: E402

N_SAMPLES = 10_000
N_CLASSES = 10
T0 = 1_795_000_000.0
CHUNK_ROWS = 1_000_000
# (users, share of rows, accuracy of successful answers, error rate, median latency ms)
STAGES = (
    (4, 0.10, 0.97, 0.01, 20.0),
    (8, 0.15, 0.97, 0.02, 22.0),
    (16, 0.20, 0.93, 0.03, 30.0),
    (32, 0.25, 0.82, 0.05, 45.0),
    (64, 0.30, 0.72, 0.12, 80.0),
)
ERROR_KINDS = np.array(["http", "timeout", "connection", "decode", "extract"])
ERROR_KIND_P = np.array([0.35, 0.30, 0.15, 0.10, 0.10])
ERROR_TEXT = np.array(
    [
        "HTTP 503: overloaded",
        "timed out after 5 s",
        "connection refused",
        "reply is not JSON: Expecting value: line 1 column 1 (char 0)",
        "no field 'prediction' in reply",
    ]
)
LATENCY_SIGMA = 0.4
TIMEOUT_MS = 5000.0
STATUS = np.array([503, 0, 0, 200, 200])
TARGET = {"seconds": 60.0, "rss_gib": 4.0, "rows": 10_000_000}


def _stage_rows(n: int) -> list[int]:
    counts = [int(n * share) for _, share, *_ in STAGES]
    counts[-1] += n - sum(counts)
    return counts


def _stage_seconds(n: int) -> list[float]:
    """Each stage lasts as long as its users need for its rows (Little's law: in flight = rate x mean latency)."""
    seconds = []
    for rows, (users, _, _, error_rate, median_ms) in zip(_stage_rows(n), STAGES, strict=True):
        timeouts = error_rate * ERROR_KIND_P[1]
        mean_ms = (1 - timeouts) * median_ms * np.exp(LATENCY_SIGMA**2 / 2) + timeouts * TIMEOUT_MS
        seconds.append(rows * mean_ms / 1000 / users)
    return seconds


def _chunk(
    rng: np.random.Generator, labels: np.ndarray, stage: int, n: int, t_lo: float, t_hi: float, first_seq: int
) -> pa.Table:
    users, _, accuracy, error_rate, latency_ms = STAGES[stage]
    sample = rng.integers(0, N_SAMPLES, size=n)
    truth = labels[sample]
    right = rng.random(n) < accuracy
    wrong = (truth + rng.integers(1, N_CLASSES, size=n)) % N_CLASSES
    prediction = np.where(right, truth, wrong)
    failed = rng.random(n) < error_rate
    kind = rng.choice(len(ERROR_KINDS), size=n, p=ERROR_KIND_P)
    latency = np.round(rng.lognormal(np.log(latency_ms), LATENCY_SIGMA, size=n), 3)
    latency = np.where(failed & (kind == 1), TIMEOUT_MS, latency)  # timeouts take the whole timeout
    t_sent = np.round(np.sort(rng.uniform(t_lo, t_hi, size=n)), 6)
    worker = rng.integers(0, 2, size=n)
    seq = np.arange(first_seq, first_seq + n)

    def text(values: np.ndarray, table: np.ndarray) -> pa.Array:
        return pc.take(pa.array(table), pa.array(values))

    ok = ~failed
    # an empty string marks "no error" / "no prediction", as the recorder writes it
    kinds_text = np.append(ERROR_KINDS, "")
    errors_text = np.append(ERROR_TEXT, "")
    no_error = len(ERROR_KINDS)
    columns = {
        "request_id": pc.binary_join_element_wise(
            pa.array(worker).cast(pa.string()), pa.array(seq).cast(pa.string()), "-"
        ),
        "sample_id": text(sample, np.array([f"s{i:05d}" for i in range(N_SAMPLES)])),
        "worker_index": pa.array(worker),
        "user_id": pa.array(rng.integers(0, users // 2, size=n)),
        "t_sent": pa.array(t_sent),
        "latency_ms": pa.array(latency),
        "status_code": pa.array(np.where(ok, 200, STATUS[kind])),
        "ok": text(ok.astype(np.int64), np.array(["False", "True"])),
        "error_kind": text(np.where(ok, no_error, kind), kinds_text),
        "error": text(np.where(ok, no_error, kind), errors_text),
        "prediction": text(np.where(ok, prediction, N_CLASSES), np.array([*map(str, range(N_CLASSES)), ""])),
        "response_bytes": pa.array(np.where(ok, 18, 0)),
        "pass": pa.array(1 + seq // N_SAMPLES),
        "users_active": pa.array(np.full(n, users)),
        "stage": pa.array(np.full(n, stage)),
        "target_users": pa.array(np.full(n, users)),
    }
    # columns this closed-model run has no value for (e.g. open-model timing) are written empty, as the recorder does
    empty = pa.nulls(n, pa.string())
    return pa.table({name: columns.get(name, empty) for name in RECORD_COLUMNS})


def make_run(run_dir: Path, n: int, *, seed: int = 0) -> Path:
    """Write records.csv, run.json and truth.csv for ``n`` synthetic records."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    labels = rng.integers(0, N_CLASSES, size=N_SAMPLES)
    truth_path = run_dir / "truth.csv"
    pixels = rng.integers(0, 17, size=(N_SAMPLES, 4))
    truth = {"id": [f"s{i:05d}" for i in range(N_SAMPLES)], **{f"px{j}": pixels[:, j] for j in range(4)}}
    pa_csv.write_csv(pa.table({**truth, "label": labels}), truth_path)
    stages = [
        {"index": i, "users": STAGES[i][0], "spawn_rate": None, "t_start": lo, "t_end": hi}
        for i, (lo, hi) in enumerate(itertools.pairwise(T0 + np.cumsum([0.0, *_stage_seconds(n)])))
    ]

    def chunks() -> Iterator[pa.Table]:
        seq = 0
        for stage, rows in zip(stages, _stage_rows(n), strict=True):
            edges = np.linspace(stage["t_start"], stage["t_end"], -(-rows // CHUNK_ROWS) + 1)
            sizes = np.diff(np.linspace(0, rows, len(edges)).astype(np.int64))
            for size, lo, hi in zip(sizes, edges[:-1], edges[1:], strict=True):
                yield _chunk(rng, labels, stage["index"], int(size), float(lo), float(hi), seq)
                seq += int(size)

    tables = chunks()
    first = next(tables)
    options = pa_csv.WriteOptions(quoting_style="needed")
    with pa_csv.CSVWriter(run_dir / "records.csv", first.schema, write_options=options) as writer:
        writer.write_table(first)
        for table in tables:
            writer.write_table(table)
    info = {
        "loadgrade_version": "0.1.0",
        "scenario_path": str(run_dir / "scenario.yaml"),
        "scenario": {
            "name": "synthetic-scale",
            "dataset": {"path": "truth.csv", "id_column": "id", "label_column": "label", "task": "classification"},
            "slo": {"latency_ms": 100, "tolerance": 0.01},
        },
        "t_start": T0,
        "t_end": stages[-1]["t_end"],
        "worker_count": 2,
        "records_written": n,
        "stages": stages,
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=1))
    return run_dir


@dataclass
class Measured:
    seconds: float
    rss_gib: float


def measure(command: list[str]) -> Measured:
    """Wall time and peak RSS of one child process (its own rusage, via os.wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()  # one pipe, read to the end before waiting: it can never fill up
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output.decode()}")
    return Measured(seconds, usage.ru_maxrss * 1024 / 2**30)  # ru_maxrss is in KiB on Linux


READ_ONLY = "import sys, pyarrow.csv as c; c.read_csv(sys.argv[1])"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, nargs="+", default=[1e6, 3e6, 1e7], help="record counts to test")
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them (default: a temp folder)")
    parser.add_argument("--no-charts-run", action="store_true", help="skip the extra run with charts")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows]
    base = args.keep or Path(tempfile.mkdtemp(prefix="analysis-scale-"))
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    rows = []
    try:
        for n in sizes:
            run_dir = base / f"run-{n}"
            t = time.perf_counter()
            if not (run_dir / "records.csv").exists():
                make_run(run_dir, n)
            made = time.perf_counter() - t
            size_mib = (run_dir / "records.csv").stat().st_size / 2**20
            print(f"{n:>11,} rows: records.csv {size_mib:,.0f} MiB (generated in {made:.1f} s)", flush=True)
            read = measure([sys.executable, "-c", READ_ONLY, str(run_dir / "records.csv")])
            report = measure([sys.executable, "-m", "analysis", "report", str(run_dir), "--no-charts"])
            rows.append(("report --no-charts", n, read, report))
            print(f"{'':>13}report --no-charts {report.seconds:.1f} s, {report.rss_gib:.2f} GiB", flush=True)
        if not args.no_charts_run:
            n = sizes[-1]
            report = measure([sys.executable, "-m", "analysis", "report", str(base / f"run-{n}")])
            rows.append(("report (charts)", n, rows[-1][2], report))
        print()
        header = ("command", "rows", "read s", "report s", "x read", "s/M rows", "peak GiB")
        print("{:<19} {:>11} {:>7} {:>9} {:>7} {:>9} {:>9}".format(*header))
        for name, n, read, report in rows:
            print(
                f"{name:<19} {n:>11,} {read.seconds:>7.1f} {report.seconds:>9.1f} {report.seconds / read.seconds:>7.1f}"
                f" {report.seconds / (n / 1e6):>9.2f} {report.rss_gib:>9.2f}"
            )
        worst = [r for _, n, _, r in rows if n >= TARGET["rows"]]
        if worst:
            ok = all(r.seconds <= TARGET["seconds"] and r.rss_gib <= TARGET["rss_gib"] for r in worst)
            verdict = "met" if ok else "MISSED"
            print(f"\ntarget at 10 M rows: <= {TARGET['seconds']:g} s and <= {TARGET['rss_gib']:g} GiB: {verdict}")
        print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
