"""The Quality tab and ``/quality`` in real headless Chromium: what the pages show is what ``records.csv`` holds.

Locust's web UI runs a swarm against the reference server; the browser reads the Quality tab (Locust's own React
page, refreshed by its ``/stats/requests`` poll) and the ``/quality`` page, and the test recomputes the shown figures
from the first ``n`` rows of ``records.csv`` with the analysis package (rows are tallied in the order they are
written, so the figures for ``n`` rows are exact). Screenshots are kept as test artifacts.

The browser is driven from a child process (this file run as a script): Playwright's sync API must not share a
process with gevent's monkey-patching, which the load tests' import of Locust brings into the pytest process.
Debian's ``chromium`` is used through its executable (``scripts/ci-system-deps.sh`` installs it); nothing is
downloaded. Without it the test skips and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.locust_run import ROOT, _environment, web_ui, write_scenario

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000  # generous: a busy 2-core CI machine runs Locust, its workers, the server and Chromium at once
BROWSE_TIMEOUT_S = 90


def _wait_or_explain(page: Any, ui: str, wait: Any) -> Any:
    """``wait()``, or on a time-out an error that says what the page and the live figures showed instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return wait()
    except PlaywrightTimeout as exc:
        body = page.evaluate("() => document.body.innerText")[:1500]
        with urllib.request.urlopen(f"{ui}/quality/data.json", timeout=10) as response:
            test = json.loads(response.read())["test"]
        keys = ("level", "users", "n", "t_start", "t_end")
        brief = test and [{k: level[k] for k in keys} for level in test["levels"]]
        raise AssertionError(f"{exc}\npage text: {body!r}\nlive levels: {brief}") from None


def _browse(ui: str, out_dir: Path, min_rows: int) -> dict[str, Any]:
    """In the child process: read the Quality tab and /quality once each shows at least ``min_rows`` answers."""
    from playwright.sync_api import Error, sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    result: dict[str, Any] = {}
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=20_000)
        except Error as exc:
            return {"skip": f"chromium ({chromium}) cannot be launched: {str(exc).splitlines()[0]}"}
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.goto(f"{ui}/?tab=quality")
            # the tab's table, once its first row (the level) counts at least min_rows answers
            rows = _wait_or_explain(
                page,
                ui,
                lambda: page.wait_for_function(
                    """(minRows) => {
                    const table = [...document.querySelectorAll("table")]
                        .find(t => t.querySelector("th") && t.innerText.includes("Effective accuracy"));
                    if (!table) return null;
                    const rows = [...table.querySelectorAll("tbody tr")]
                        .map(tr => [...tr.querySelectorAll("td")].map(td => td.innerText.trim()));
                    return rows.length && Number(rows[0][2]) >= minRows ? rows : null;
                }""",
                    arg=min_rows,
                    timeout=WAIT_MS,
                ).json_value(),
            )
            result["tab"] = rows
            result["tab_headers"] = page.eval_on_selector_all("th", "ths => ths.map(th => th.innerText.trim())")
            page.screenshot(path=str(out_dir / "quality-tab.png"), full_page=True)

            page.goto(f"{ui}/quality")
            first = int(page.get_attribute("#status", "data-rows") or 0)
            # the panel refreshes in place: wait for a newer one than the page was served with
            page.wait_for_function(
                "(first) => Number(document.querySelector('#status').dataset.rows) > first", arg=first, timeout=WAIT_MS
            )
            result["page"] = page.evaluate(
                """() => ({
                    rows: Number(document.querySelector("#status").dataset.rows),
                    table: [...document.querySelectorAll("#levels tbody tr")]
                        .map(tr => [...tr.querySelectorAll("td")].map(td => td.innerText.trim())),
                    polylines: [...document.querySelectorAll("svg polyline")].map(p => p.dataset.series),
                    points: document.querySelectorAll("#against-load circle").length,
                })"""
            )
            result["page_first_rows"] = first
            page.screenshot(path=str(out_dir / "quality-page.png"), full_page=True)
        finally:
            browser.close()
    return result


# ---------------------------------------------------------------------------------------------------- the test

DIGITS = ROOT / "scenarios" / "digits.yaml"
FIGURE = re.compile(r"^(?P<value>[\d.]+)(?: \[(?P<low>[\d.]+), (?P<high>[\d.]+)\])?$")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def _browser_available() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (run scripts/ci-system-deps.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")


def _rows_written(run_dir: Path) -> int:
    """Complete rows in records.csv now (0 before the test has started)."""
    path = run_dir / "records.csv"
    return max(path.read_bytes().count(b"\n") - 1, 0) if path.exists() else 0


def _records_so_far(run_dir: Path, tmp_path: Path) -> Any:
    """records.csv up to its last complete line (the master may be appending a batch right now)."""
    from loadgrade.analysis import read_records

    data = (run_dir / "records.csv").read_bytes()
    copy = tmp_path / "records-snapshot.csv"
    copy.write_bytes(data[: data.rfind(b"\n") + 1])
    return read_records(copy)


def _expected(records: Any, truth: Any) -> dict[str, float]:
    """Figures of these records computed by the analysis package (its join and its exact percentiles)."""
    from loadgrade.analysis import join_truth, latency_percentiles

    joined, _ = join_truth(records, truth)
    ok = joined["ok"].to_numpy(dtype=bool)
    has_truth = joined["has_truth"].to_numpy(dtype=bool)
    correct = joined["correct"].fillna(False).to_numpy(dtype=bool) & ok & has_truth
    return {
        "n": len(joined),
        "accuracy": 100 * correct.sum() / (ok & has_truth).sum(),
        "effective": 100 * correct.sum() / has_truth.sum(),
        "errors": 100 * (~ok).sum() / len(joined),
        "p95": latency_percentiles(joined["latency_ms"].to_numpy()[ok])["p95_ms"],
    }


def _check_row(shown: list[str], headers: list[str], expected: dict[str, float]) -> None:
    cells = dict(zip(["name", "load", "n", "accuracy", "effective", "errors", "p95", "goodput"], shown, strict=True))
    assert int(cells["n"]) == expected["n"], (headers, shown)
    for key in ("accuracy", "effective"):
        match = FIGURE.match(cells[key])
        assert match, (key, cells[key])
        assert float(match["value"]) == pytest.approx(expected[key], abs=0.051), (key, cells[key], expected[key])
    assert float(cells["errors"].split("%")[0]) == pytest.approx(expected["errors"], abs=0.051)
    assert float(cells["p95"]) == pytest.approx(expected["p95"], abs=0.051)


def _keep(artifacts: list[Path], *, suffix: str) -> None:
    """Screenshots stay in the test's tmp_path; with LOADGRADE_ARTIFACTS set, also in test-artifacts/."""
    if os.environ.get("LOADGRADE_ARTIFACTS"):
        target = ROOT / "test-artifacts"
        target.mkdir(exist_ok=True)
        for path in artifacts:
            shutil.copy2(path, target / f"{path.stem}{suffix}{path.suffix}")


@pytest.mark.parametrize("processes", [0, 2], ids=["standalone", "processes"])
def test_quality_tab_and_page_show_the_records_figures(tmp_path: Path, reference_server: str, processes: int) -> None:
    _browser_available()
    scenario = write_scenario(tmp_path / "s.yaml", DIGITS)
    run_dir = tmp_path / "run"
    with web_ui(scenario, run_dir, processes=processes) as ui:
        form = urllib.parse.urlencode(
            {"user_count": "2", "spawn_rate": "2", "host": reference_server, "scenario": str(scenario)}
        ).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{ui}/swarm", data=form), timeout=10) as response:
            assert json.loads(response.read())["success"]
        deadline = time.monotonic() + 20
        while _rows_written(run_dir) < 200:
            assert time.monotonic() < deadline, "no records arrived"
            time.sleep(0.3)
        min_rows = _rows_written(run_dir)
        child = subprocess.run(
            [sys.executable, __file__, ui, str(tmp_path), str(min_rows)],
            capture_output=True,
            text=True,
            timeout=BROWSE_TIMEOUT_S,
            cwd=ROOT,
            env=_environment(),
        )
        assert child.returncode == 0, child.stderr[-3000:]
        shown = json.loads(child.stdout.strip().splitlines()[-1])
        if "skip" in shown:
            pytest.skip(shown["skip"])
        records = _records_so_far(run_dir, tmp_path)
        downloaded = _get(f"{ui}/quality/records.csv")
        levels_csv = _get(f"{ui}/quality/stages.csv").decode()
        _post_stop = urllib.request.Request(f"{ui}/stop", data=b"")
        urllib.request.urlopen(_post_stop, timeout=10).close()
    screenshots = [tmp_path / "quality-tab.png", tmp_path / "quality-page.png"]
    _keep([p for p in screenshots if p.exists()], suffix=f"-{'processes' if processes else 'standalone'}")
    assert all(p.stat().st_size > 10_000 for p in screenshots)

    from loadgrade.analysis import read_truth

    truth = read_truth(ROOT / "scenarios" / "data" / "digits_test.csv", id_column="id", label_column="label")
    # the tab: its level row is the first n rows of records.csv, and n is at least what was there when we looked
    level_row = shown["tab"][0]
    assert level_row[0].startswith("stage 0"), level_row  # a user count set by hand is a stage, as offline
    assert level_row[1] == "2 users"
    n_tab = int(level_row[2])
    assert min_rows <= n_tab <= len(records)
    _check_row(level_row, shown["tab_headers"], _expected(records.iloc[:n_tab], truth))
    assert [row[0] for row in shown["tab"][1:]] == ["last 10 s", "last 30 s"]

    # the page: refreshed in place, its table matches the first n rows too; both charts have their lines
    page = shown["page"]
    assert page["rows"] > shown["page_first_rows"] >= min_rows
    assert int(page["table"][0][2]) == page["rows"]
    _check_row(page["table"][0], [], _expected(records.iloc[: page["rows"]], truth))
    assert {"accuracy", "effective_accuracy", "users"} <= set(page["polylines"])
    assert page["points"] == 1  # one load level so far

    # the downloads: records.csv as written so far, and the live per-level table
    assert downloaded.startswith(b"request_id,sample_id,")
    assert downloaded.count(b"\n") - 1 >= n_tab
    assert levels_csv.splitlines()[0].startswith("level,users,rate,")
    assert levels_csv.splitlines()[1].startswith("0,2,")


if __name__ == "__main__":  # the child process: URL, output folder, minimum rows
    print(json.dumps(_browse(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))))
