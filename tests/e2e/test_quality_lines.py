"""The quality lines of a real headless run: time, load, all-request accuracy, change from the baseline, DEGRADED.

They must say what ``python -m analysis report`` later says about the same records, appear while a long stage
runs (every ``--quality-every`` seconds), and carry one ``loadgrade:`` prefix, like every other line loadgrade logs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadgrade.analysis import analyse_run
from loadgrade.servers.reference import running_server
from tests.support.locust_run import ROOT, assert_spine_invariants, free_port, run_locust, write_scenario

LINE = re.compile(
    r"^loadgrade: \[(?P<min>\d\d):(?P<sec>\d\d)\] stage (?P<stage>\d+) \((?P<users>\d+) users\)(?P<so_far>, so far)?: "
    r"all requests (?P<accuracy>[\d.]+)% \[(?P<low>[\d.]+), (?P<high>[\d.]+)\]"
    r"(?:, baseline|, (?P<diff>[-+][\d.]+) pts vs stage (?P<baseline>\d+)(?P<verdict>.*?)); "
    r"n=(?P<n>\d+), p95 [\d.]+ ms, failed [\d.]+%$"
)


def test_headless_quality_lines_compare_each_stage_with_the_baseline(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        ROOT / "scenarios" / "digits.yaml",
        load={
            "kind": "steps",
            "steps": [{"users": 2, "duration_s": 7}, {"users": 4, "duration_s": 3}, {"users": 10, "duration_s": 4}],
            "_replace": True,
        },
        # nothing listens there: the sampler's warning is a logged line, for the prefix
        resources={"metrics_url": f"http://127.0.0.1:{free_port()}/metrics", "interval_s": 1},
    )
    with running_server("--service-time-ms", "20", "--degrade-above", "6", "--shed-above", "14") as url:
        run = run_locust(scenario, tmp_path / "run", host=url, extra=("--quality-every", "3"))
    assert_spine_invariants(run)

    assert "loadgrade: loadgrade:" not in run.output
    assert re.search(r"/WARNING/loadgrade: resources: cannot read http://127\.0\.0\.1:\d+/metrics", run.output)

    quality = [line for line in run.output.splitlines() if line.startswith("loadgrade: [")]
    parsed = [LINE.match(line) for line in quality if "over the test" not in line]
    assert all(parsed), "\n".join(quality)
    lines = [match.groupdict() for match in parsed if match is not None]
    assert all(len(line) <= 150 for line in quality if "over the test" not in line), quality

    # while stage 0 runs (7 s), a line every 3 s; then one line per stage once it has ended, in order
    running = [line for line in lines if line["so_far"]]
    assert [line["stage"] for line in running[:2]] == ["0", "0"]
    assert [int(line["min"]) * 60 + int(line["sec"]) for line in running[:2]] == pytest.approx([3, 6], abs=1)
    ended = [line for line in lines if not line["so_far"]]
    assert [(line["stage"], line["users"]) for line in ended] == [("0", "2"), ("1", "4"), ("2", "10")]
    assert [int(line["min"]) * 60 + int(line["sec"]) for line in ended] == pytest.approx([7, 10, 14], abs=1.5)
    assert ended[0]["diff"] is None  # the baseline
    assert ended[1]["verdict"] == ""
    assert ended[2]["verdict"] == " DEGRADED"

    # the same figures and verdicts as the analysis of the records
    levels = analyse_run(run.run_dir, progress=False).levels.set_index("level")
    for line in ended:
        level = levels.loc[int(line["stage"])]
        assert float(line["accuracy"]) == pytest.approx(100 * level["effective_accuracy"], abs=0.05)
        assert int(line["n"]) == level["n"]
        if line["diff"] is not None:
            assert line["baseline"] == "0"
            assert float(line["diff"]) == pytest.approx(100 * level["vs_baseline_diff"], abs=0.05)
            assert (line["verdict"] == " DEGRADED") == bool(level["degraded"])
    summary = next(line for line in quality if "] over the test (3 levels): " in line)
    assert summary.endswith("; lowest at stage 2 (10 users): " + ended[2]["accuracy"] + "%; DEGRADED: stage 2")
