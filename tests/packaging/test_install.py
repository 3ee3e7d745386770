"""loadgrade as a user gets it: ``pip install`` into a fresh virtualenv, then used from a folder of the user's own.

The virtualenv has nothing but what the package declares, so a missing dependency, a file left out of the wheel
(the locustfile, ``py.typed``) or a console script that does not start fails here. The working folder holds an
``analysis.py`` and a ``servers/`` package of its own that stop the process if imported: the installed loadgrade
must claim no such top-level names and never import them, even though Locust puts the current folder on
``sys.path``. The build must leave nothing (``build/``, ``*.egg-info/``) in the checkout.

Slow by nature (pip installs Locust, pandas, scikit-learn, matplotlib, ... into the new virtualenv; about a
minute from pip's cache), so the virtualenv is made once for the module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS_CSV = ROOT / "scenarios" / "data" / "digits_test.csv"
IMPORTED_MARKER = "IMPORTED-FROM-THE-WORKING-FOLDER"

pytestmark = pytest.mark.timeout(900)


@dataclass
class Installed:
    venv: Path
    work: Path  # the user's working folder, with its own analysis.py and servers/

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        (found,) = (self.venv / "lib").glob("python3.*/site-packages")
        return found

    def env(self) -> dict[str, str]:
        """The caller's environment without anything that would let the checkout or a run's settings leak in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADGRADE_", "LOCUST_"))}
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
            env.pop(name, None)
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        return env

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command of the virtualenv's (``loadgrade``, ``python``) run in the working folder."""
        command = [str(self.bin / str(args[0])), *map(str, args[1:])]
        return subprocess.run(
            command,
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def assert_nothing_of_the_user_was_imported(self, *outputs: str) -> None:
        assert not (self.work / IMPORTED_MARKER).exists()
        for output in outputs:
            assert "user's own" not in output


def _top_level(paths: list[str]) -> set[str]:
    return {p.replace("\\", "/").split("/", 1)[0] for p in paths}


def _build_artefacts() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.name == "build" or p.name.endswith(".egg-info")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    before = _build_artefacts()
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert _build_artefacts() == before, "the build left build/ or *.egg-info/ in the checkout"

    work = base / "work"
    work.mkdir()
    # the user's own modules, named like the repository's folders: importing one leaves a mark and stops
    trap = f"open({IMPORTED_MARKER!r}, 'w').close()\nraise SystemExit('the user\\'s own {{}} was imported')\n"
    (work / "analysis.py").write_text(trap.format("analysis.py"))
    (work / "servers").mkdir()
    (work / "servers" / "__init__.py").write_text(trap.format("servers/"))
    return Installed(env_dir, work)


@pytest.fixture(scope="module")
def reference_server(installed: Installed) -> Iterator[str]:
    """``loadgrade serve-reference`` from the installed package, on a free port of 127.0.0.1; stopped by its PID."""
    log = (installed.work.parent / "server.log").open("w")
    server = subprocess.Popen(
        [str(installed.bin / "loadgrade"), "serve-reference", "--host", "127.0.0.1", "--port", "0"],
        cwd=installed.work,
        env=installed.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # EOF if it dies; pytest-timeout ends a server that says nothing
        assert line.startswith("LISTENING "), (line, (installed.work.parent / "server.log").read_text()[-2000:])
        yield line.split()[1]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)
        if server.stdout is not None:
            server.stdout.close()
        log.close()


def test_the_wheel_installs_loadgrade_alone_with_its_files(installed: Installed) -> None:
    (dist_info,) = installed.site_packages.glob("loadgrade-*.dist-info")
    record = [line.rsplit(",", 2)[0] for line in (dist_info / "RECORD").read_text().splitlines() if line]
    # the package, its metadata and the console script (bin/ is outside site-packages)
    assert _top_level(record) == {"loadgrade", dist_info.name, ".."}
    for name in ("analysis", "servers", "locustfiles", "scenarios", "tests"):
        assert not (installed.site_packages / name).exists(), name
    for needed in (
        "loadgrade/py.typed",
        "loadgrade/analysis/py.typed",
        "loadgrade/locustfile.py",
        "loadgrade/locustfile_manual.py",
        "loadgrade/servers/reference.py",
    ):
        assert needed in record, needed
    metadata = (dist_info / "METADATA").read_text()
    assert "Requires-Dist: locust" in metadata
    assert "Requires-Dist: pandas" in metadata
    entry_points = (dist_info / "entry_points.txt").read_text().split()
    assert entry_points == ["[console_scripts]", "loadgrade", "=", "loadgrade.cli:main"]


def test_version_and_help(installed: Installed) -> None:
    source_version = re.search(r'^__version__ = "(.+)"$', (ROOT / "loadgrade" / "__init__.py").read_text(), re.M)
    assert source_version is not None
    version = installed.run("loadgrade", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"loadgrade {source_version[1]} (locust ")
    as_module = installed.run("python", "-m", "loadgrade", "--version")
    assert as_module.stdout == version.stdout
    installed_version = installed.run("python", "-c", "import importlib.metadata as m; print(m.version('loadgrade'))")
    assert installed_version.stdout.strip() == source_version[1]

    top = installed.run("loadgrade", "--help")
    assert top.returncode == 0, top.stderr
    for command in ("run", "validate", "report", "check", "compare", "serve-reference", "exit status"):
        assert command in top.stdout
    run = installed.run("loadgrade", "run", "--help")
    assert "--web" in run.stdout
    assert "exit status" in run.stdout
    assert str(installed.site_packages / "loadgrade" / "locustfile.py") in run.stdout
    report = installed.run("loadgrade", "report", "--help")
    assert report.stdout.startswith("usage: loadgrade report ")
    nothing = installed.run("loadgrade")
    assert nothing.returncode == 2
    assert "usage: loadgrade" in nothing.stderr
    installed.assert_nothing_of_the_user_was_imported(top.stdout, top.stderr)


def test_validate_run_report_and_check_from_the_users_folder(installed: Installed, reference_server: str) -> None:
    work = installed.work
    rows = DIGITS_CSV.read_text().splitlines()[:41]  # the header and 40 samples
    (work / "tiny.csv").write_text("\n".join(rows) + "\n")
    (work / "tiny.yaml").write_text(
        f"""\
name: tiny
endpoint:
  base_url: {reference_server}
  timeout_s: 5
protocol:
  kind: flask-predict
dataset:
  path: tiny.csv
  id_column: id
  label_column: label
  input_columns: ["px*"]
load:
  kind: steps
  steps:
    - {{users: 1, duration_s: 2}}
    - {{users: 2, duration_s: 2}}
slo:
  rules:
    - accuracy_drop<=0.5
"""
    )
    validate = installed.run("loadgrade", "validate", "tiny.yaml")
    assert validate.returncode == 0, validate.stderr
    assert "tiny.yaml: ok: tiny: flask-predict" in validate.stdout

    run = installed.run("loadgrade", "run", "tiny.yaml", "--run-dir", "runs/tiny", "--only-summary", timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "loadgrade: pre-flight: 3 samples answered" in run.stderr
    assert "loadgrade: exit status 0 (every rule passed)" in run.stderr
    run_dir = work / "runs" / "tiny"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["records_written"] == info["locust_requests"] > 0
    assert len(info["stages"]) == 2

    report = installed.run("loadgrade", "report", "runs/tiny")
    assert report.returncode == 0, report.stderr[-4000:]
    for name in ("report.html", "levels.csv", "summary.json", "accuracy.png"):
        assert (run_dir / "analysis" / name).is_file(), name
    check = installed.run("loadgrade", "check", "runs/tiny")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 of 1 rules pass" in check.stdout

    code = "import sys; from loadgrade.analysis import load_run; print(load_run.__module__, 'analysis' in sys.modules)"
    imports = installed.run("python", "-c", code)
    assert imports.returncode == 0, imports.stderr
    assert imports.stdout.split() == ["loadgrade.analysis.io", "False"]
    installed.assert_nothing_of_the_user_was_imported(
        validate.stdout, validate.stderr, run.stdout, run.stderr, report.stdout, report.stderr, check.stdout
    )


def test_python_dash_m_loadgrade_is_the_same_command(installed: Installed) -> None:
    help_text = installed.run("python", "-m", "loadgrade", "--help")
    assert help_text.stdout.startswith("usage: python -m loadgrade [-h] [--version] COMMAND")
    assert "python -m loadgrade serve-reference --port 8000" in help_text.stdout
    bad = installed.run("python", "-m", "loadgrade", "validate", "missing.yaml")
    assert bad.returncode == 2
    assert "missing.yaml" in bad.stderr
    installed.assert_nothing_of_the_user_was_imported(help_text.stderr, bad.stderr)
