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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.locust_run import ROOT, _environment, free_port, web_ui, write_scenario

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
                        .find(t => t.querySelector("th") && t.innerText.includes("Accuracy over every request"));
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
                    points: document.querySelectorAll("#against-load circle[data-level]").length,
                })"""
            )
            result["page_first_rows"] = first
            page.screenshot(path=str(out_dir / "quality-page.png"), full_page=True)
        finally:
            browser.close()
    return result


def _browse_verdict(ui: str, out_dir: Path, host: str, scenario: str, missing: str) -> dict[str, Any]:
    """In the child process: the start form with a scenario that does not exist, then a real start from the form,
    a higher user count, the Quality tab once that level is marked degraded, and its link to the charts."""
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
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{ui}/")
            page.fill("input[name=userCount]", "2")
            page.fill("input[name=spawnRate]", "2")
            page.fill("input[name=host]", host)
            if not page.is_visible("input[name=scenario]"):  # loadgrade's option, under "Custom parameters"
                page.get_by_text("Custom parameters").click()
            page.fill("input[name=scenario]", missing)
            page.get_by_role("button", name="Start").click()
            alert = page.locator("[role=alert]", has_text="scenario file not found")
            alert.wait_for()
            result["form_error"] = alert.inner_text()
            page.screenshot(path=str(out_dir / "start-form-error.png"))

            page.fill("input[name=scenario]", scenario)
            page.get_by_role("button", name="Start").click()
            # stage 0 (2 users, the baseline) until it has answers enough, then 8 users: the cheap model answers
            _wait_or_explain(page, ui, lambda: _wait_for_answers(ui, level=0, n=80))
            result["edit"] = _start(ui, host=host, scenario=Path(scenario), users=8)
            page.goto(f"{ui}/?tab=quality")
            _wait_or_explain(
                page,
                ui,
                lambda: page.wait_for_function(
                    """() => [...document.querySelectorAll("tr[data-loadgrade=degraded]")].length > 0
                        && document.querySelector("#loadgrade-quality-notes")"""
                ),
            )
            result["tab"] = page.evaluate(
                """() => {
                    const table = document.querySelector("#loadgrade-quality-notes").nextElementSibling
                        .querySelector("table");
                    return {
                        headers: [...table.querySelectorAll("thead th")].map(th => th.innerText.trim()),
                        rows: [...table.querySelectorAll("tbody tr")].map(tr => ({
                            mark: tr.dataset.loadgrade || "",
                            background: getComputedStyle(tr.querySelector("td")).backgroundColor,
                            cells: [...tr.querySelectorAll("td")].map(td => td.innerText.trim()),
                        })),
                        notes: document.querySelector("#loadgrade-quality-notes").innerText,
                    };
                }"""
            )
            page.screenshot(path=str(out_dir / "quality-verdict.png"), full_page=True)
            link = page.locator("#loadgrade-quality-notes a", has_text="live quality charts")
            result["link_visible"] = link.is_visible()
            link.click()
            page.wait_for_url(f"{ui}/quality")
            page.wait_for_selector("#against-load svg")
            result["charts"] = page.evaluate(
                """() => ({
                    marks: [...document.querySelectorAll("#levels tbody tr")].map(tr => tr.className),
                    rings: [...document.querySelectorAll("#against-load circle[data-mark]")]
                        .map(c => c.dataset.mark),
                })"""
            )
        finally:
            browser.close()
    return result


def _start(ui: str, *, host: str, scenario: Path, users: int = 2) -> dict[str, Any]:
    """``POST /swarm`` as the start form sends it; Locust's JSON answer."""
    form = {"user_count": str(users), "spawn_rate": str(users), "host": host, "scenario": str(scenario)}
    request = urllib.request.Request(f"{ui}/swarm", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def _wait_for_answers(ui: str, *, level: int, n: int) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        test = json.loads(_get(f"{ui}/quality/data.json"))["test"]
        levels = {lv["level"]: lv for lv in test["levels"]} if test else {}
        if level in levels and levels[level]["n"] >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"level {level} did not reach {n} answers")


# ---------------------------------------------------------------------------------------------------- the test

DIGITS = ROOT / "scenarios" / "digits.yaml"
FIGURE = re.compile(r"^(?P<value>[\d.]+)(?: \[(?P<low>[\d.]+), (?P<high>[\d.]+)\])?$")
CHANGE = re.compile(r"^(?P<value>[+-][\d.]+) \[(?P<low>[+-][\d.]+), (?P<high>[+-][\d.]+)\]$")


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


COLUMNS = ["name", "load", "n", "effective", "change", "flag", "accuracy", "errors", "p95", "goodput"]


def _check_row(shown: list[str], headers: list[str], expected: dict[str, float]) -> None:
    cells = dict(zip(COLUMNS, shown, strict=True))
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
    assert level_row[COLUMNS.index("flag")] == "baseline"  # the only level is the baseline
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


def test_quality_tab_marks_the_degraded_level_and_the_form_shows_scenario_errors(tmp_path: Path) -> None:
    """2 users, then 8 on a server whose cheap model answers above 3 in flight: the tab marks the baseline and the
    degraded level as the report does, links to the charts; a scenario that does not exist is refused in the form."""
    _browser_available()
    from loadgrade.analysis import analyse_run
    from loadgrade.servers.reference import running_server

    scenario = write_scenario(tmp_path / "s.yaml", DIGITS)
    missing = tmp_path / "no-such-scenario.yaml"
    run_dir, log = tmp_path / "run", tmp_path / "master.log"
    with ExitStack() as stack:
        # both take seconds to start: at once (the pool's exit waits for the server, so the stack always stops it)
        with ThreadPoolExecutor(1) as pool:
            degrading = pool.submit(
                stack.enter_context, running_server("--service-time-ms", "20", "--degrade-above", "3")
            )
            ui = stack.enter_context(web_ui(scenario, run_dir, log=log))
        server = degrading.result()
        # refused by the start form's check as Locust refuses a bad user count: a broken scenario, a dead endpoint
        broken = tmp_path / "broken.yaml"
        broken.write_text(scenario.read_text().replace("dataset:", "datasett:", 1))
        refusals = [
            _start(ui, host=server, scenario=broken),
            _start(ui, host=f"http://127.0.0.1:{free_port()}", scenario=scenario),
        ]
        child = subprocess.run(
            [sys.executable, __file__, "verdict", ui, str(tmp_path), server, str(scenario), str(missing)],
            capture_output=True,
            text=True,
            timeout=BROWSE_TIMEOUT_S,
            cwd=ROOT,
            env=_environment(),
        )
        urllib.request.urlopen(urllib.request.Request(f"{ui}/stop", data=b""), timeout=10).close()
        deadline = time.monotonic() + 20
        while json.loads(_get(f"{ui}/stats/requests"))["state"] != "stopped":
            assert time.monotonic() < deadline, "the test did not stop"
            time.sleep(0.2)
    assert child.returncode == 0, child.stderr[-3000:]
    shown = json.loads(child.stdout.strip().splitlines()[-1])
    if "skip" in shown:
        pytest.skip(shown["skip"])
    _keep([p for p in tmp_path.glob("*.png")], suffix="-verdict")

    # the start form: the error in the page, one line in the terminal each, no traceback
    assert f"{missing}: <top level>: scenario file not found" in shown["form_error"]
    assert [r["success"] for r in refusals] == [False, False]
    assert "invalid scenario: " in refusals[0]["message"]
    assert "datasett: unknown key" in refusals[0]["message"]
    assert refusals[1]["message"].startswith("pre-flight failed: nothing listens at")
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    refused = [line for line in output.splitlines() if "test not started: " in line]
    assert len(refused) == 3, output[-3000:]
    expected = ["datasett: unknown key", "nothing listens", "scenario file not found"]
    assert all(message in line for message, line in zip(expected, refused, strict=True)), refused

    # the tab: a baseline column, the baseline and the degraded level marked and coloured, and the legend
    tab = shown["tab"]
    assert "vs baseline" in tab["headers"], tab["headers"]
    assert "Change vs baseline, points [95% CI]" in tab["headers"], tab["headers"]
    flag, change = tab["headers"].index("vs baseline"), tab["headers"].index("Change vs baseline, points [95% CI]")
    baseline, degraded = tab["rows"][0], tab["rows"][1]
    assert baseline["cells"][0] == "stage 0"
    assert (baseline["cells"][flag], baseline["mark"]) == ("baseline", "baseline")
    assert degraded["cells"][0].startswith("stage 1")
    assert (degraded["cells"][flag], degraded["mark"]) == ("DEGRADED", "degraded")
    assert baseline["background"] != degraded["background"] != tab["rows"][2]["background"]
    assert baseline["cells"][change] == "–"
    shown_change = CHANGE.match(degraded["cells"][change])
    assert shown_change, degraded["cells"][change]
    # percentage points, level minus baseline: the cheap model is some 25 points worse, its interval below 0
    assert float(shown_change["value"]) < -5
    assert float(shown_change["high"]) < 0
    assert "significantly worse than the baseline" in tab["notes"]
    assert shown["edit"]["success"]

    # the link from the tab opens the charts, which mark the same levels
    assert shown["link_visible"]
    assert shown["charts"]["marks"][:2] == ["baseline", "degraded"]
    assert set(shown["charts"]["rings"]) == {"baseline", "degraded"}

    # the offline report on the same run: the same baseline, the same degraded level
    levels = analyse_run(run_dir, progress=False).levels.set_index("level")
    assert bool(levels.loc[0, "is_baseline"])
    assert bool(levels.loc[1, "degraded"])


if __name__ == "__main__":  # the child process: URL, output folder, minimum rows (or "verdict" and its arguments)
    if sys.argv[1] == "verdict":
        print(json.dumps(_browse_verdict(sys.argv[2], Path(sys.argv[3]), *sys.argv[4:7])))
    else:
        print(json.dumps(_browse(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))))
