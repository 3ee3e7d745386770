"""The ``loadgrade`` command in-process: what each subcommand hands over to, and its usage errors (fast; the real
installed command is test_install.py's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import loadgrade
from loadgrade import cli

ROOT = Path(__file__).resolve().parents[2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"loadgrade {loadgrade.__version__} (locust 2.")


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: loadgrade [-h] [--version] COMMAND")
    assert "exit status" in err


@pytest.mark.parametrize("command", ["report", "check", "compare"])
def test_analysis_commands_are_the_analysis_cli_under_loadgrade(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: loadgrade {command} ")


def test_analysis_errors_keep_their_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path / "no-such-run")]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_serve_reference_is_the_reference_server_under_loadgrade(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve-reference", "--help"], prog="python -m loadgrade")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m loadgrade serve-reference ")
    assert "LISTENING" in out


def test_serve_reference_refuses_a_remote_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve-reference", "--host", "0.0.0.0"])
    assert exited.value.code == 2
    assert "loadgrade serve-reference: error: refusing to listen on '0.0.0.0'" in capsys.readouterr().err


def test_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["validate", str(ROOT / "scenarios" / "digits.yaml")]) == 0
    assert ": ok: digits: flask-predict at http://127.0.0.1:8000/predict, 540 samples" in capsys.readouterr().out
    assert cli.main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_validate_refuses_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["validate", "s.yaml", "--headless"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --headless" in capsys.readouterr().err


def test_the_locust_command_of_run() -> None:
    packaged = Path(loadgrade.__file__).parent
    assert cli.locust_command("s.yaml") == [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(packaged / "locustfile.py"),
        "--scenario",
        "s.yaml",
        "--headless",
    ]
    command = cli.locust_command("s.yaml", web=True, manual=True, processes=2, extra=["-H", "http://127.0.0.1:1"])
    manual = str(packaged / "locustfile_manual.py")
    assert command[3:] == ["-f", manual, "--scenario", "s.yaml", "--processes", "2", "-H", "http://127.0.0.1:1"]
    assert cli.locustfile_path().is_file()
    assert cli.locustfile_path(manual=True).is_file()


def test_run_hands_locust_options_over_and_execs_locust(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = str(ROOT / "scenarios" / "digits.yaml")
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, args: calls.append((path, args)))
    cli.main(["run", scenario, "--processes", "2", "-H", "http://127.0.0.1:1", "--web-port", "9", "--no-gate"])
    ((path, args),) = calls
    assert path == sys.executable
    assert args == cli.locust_command(
        scenario, processes=2, extra=["-H", "http://127.0.0.1:1", "--web-port", "9", "--no-gate"]
    )


def test_run_says_when_a_locust_option_took_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "-H", "http://127.0.0.1:1", "scenarios/digits.yaml"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "loadgrade run: error: SCENARIO 'http://127.0.0.1:1' is not a file (Locust's options go after" in err


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_run_refuses_a_bad_process_count(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "s.yaml", "--processes", bad])
    assert exited.value.code == 2
    assert "argument --processes" in capsys.readouterr().err
