"""A distributed run across several hosts on one machine: network namespaces joined by veth pairs and a bridge.

Hosts (each a network namespace with its own address on 10.231.0.0/24): the reference model server, the master
and two workers. The bridge sits in a fifth namespace of its own, so nothing here touches the machine's own
network: no address is added outside the namespaces and only the namespaces' addresses are targeted. The run
must keep the spine's invariants across real hosts: rows in records.csv == Locust's count == run.json, no duplicate
request ids, every sample once in the pass; and the requests must really have left each worker's interface.

Needs root and iproute2 (``ip``); skipped with the reason when network namespaces cannot be created.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.test_spine import DIGITS, assert_each_sample_once_per_pass, digits_ids
from tests.support.locust_run import LOCUSTFILE, ROOT, LocustRun, assert_spine_invariants, write_scenario

SUBNET = "10.231.0"
ADDRESSES = {"server": f"{SUBNET}.10", "master": f"{SUBNET}.11", "worker1": f"{SUBNET}.21", "worker2": f"{SUBNET}.22"}
SERVER_PORT = 8000  # every host has its own network stack: a fixed port cannot collide with anything
MASTER_PORT = 5557
MIN_REQUEST_BYTES = 200  # a digits request is more than this on the wire (headers and 64 numbers)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


@dataclass
class Hosts:
    """Namespaces named after this process, so concurrent test runs cannot clash; removed by :meth:`teardown`."""

    prefix: str = field(default_factory=lambda: f"lg{os.getpid()}")
    created: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        switch = self.ns("switch")
        self.add_namespace(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for index, (host, address) in enumerate(ADDRESSES.items()):
            ns = self.ns(host)
            self.add_namespace(ns)
            port = f"p{index}"  # the switch's end of this host's cable; eth0 is the host's end
            _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def teardown(self) -> None:
        """Deleting a namespace deletes its interfaces, and a veth's peer with it: nothing is left behind."""
        for name in reversed(self.created):
            _ip("netns", "del", name, check=False)
        self.created.clear()

    def eth0_bytes(self, host: str, direction: str) -> int:
        """Bytes sent ("tx") or received ("rx") on the host's only interface to the others."""
        links = json.loads(_ip("-n", self.ns(host), "-j", "-s", "link", "show", "eth0").stdout)
        return int(links[0]["stats64"][direction]["bytes"])

    def exec(self, host: str, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *command]


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install -y iproute2)"
    probe = f"lg{os.getpid()}-probe"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    net = Hosts()
    try:
        net.build()
        yield net
    finally:
        net.teardown()


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("LOADGRADE_SCENARIO", None)
    env.pop("LOADGRADE_RUN_DIR", None)
    return env


def _start(command: list[str], **kwargs: object) -> subprocess.Popen[str]:
    # `ip netns exec` execs the command in place, so the PID is the Python process's; its own group makes
    # stopping it by that PID reach nothing else
    return subprocess.Popen(command, cwd=ROOT, env=_environment(), text=True, start_new_session=True, **kwargs)  # type: ignore[call-overload]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def _wait_for_listening(process: subprocess.Popen[str], timeout: float) -> str:
    """The server's URL from its ``LISTENING`` line; a thread keeps draining its output (and closes it at EOF)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith("LISTENING "):
            return line.split()[1]
    raise RuntimeError(f"the reference server did not listen: {''.join(seen)[-2000:]}")


@pytest.mark.timeout(120)
def test_master_and_two_workers_on_separate_hosts(hosts: Hosts, tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        DIGITS,
        dataset={"passes": 1},
        load={"kind": "users", "users": 4, "run_time_s": 60, "_replace": True},
    )
    run_dir = tmp_path / "run"
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--exit-code-on-error", "0", "--loglevel", "INFO"]
    processes: list[subprocess.Popen[str]] = []
    try:
        server = _start(
            hosts.exec(
                "server",
                sys.executable,
                "-m",
                "loadgrade.servers.reference",
                "--host",
                ADDRESSES["server"],
                "--allow-remote",
                "--port",
                str(SERVER_PORT),
                "--service-time-ms",
                "2",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        processes.append(server)
        url = _wait_for_listening(server, timeout=30)
        assert url == f"http://{ADDRESSES['server']}:{SERVER_PORT}"
        master = _start(
            hosts.exec(
                "master",
                *common,
                "--headless",
                "--scenario",
                str(scenario),
                "--run-dir",
                str(run_dir),
                "--json-file",
                str(run_dir / "locust"),
                "--only-summary",
                "--host",
                url,
                "--master",
                "--master-bind-host",
                ADDRESSES["master"],
                "--master-bind-port",
                str(MASTER_PORT),
                "--expect-workers",
                "2",
                "--expect-workers-max-wait",
                "30",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        processes.append(master)
        for worker in ("worker1", "worker2"):
            command = [*common, "--worker", "--master-host", ADDRESSES["master"], "--master-port", str(MASTER_PORT)]
            processes.append(_start(hosts.exec(worker, *command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        output, _ = master.communicate(timeout=90)
        for worker_process in processes[2:]:
            worker_process.wait(timeout=30)  # the master's quit reaches the workers across the bridge
        run = LocustRun(run_dir, master.returncode, output)
        records = assert_spine_invariants(run)
        assert_each_sample_once_per_pass(records, digits_ids(), passes=1)
        assert sorted(records["worker_index"].unique().tolist()) == [0, 1]
        assert run.info["worker_count"] == 2
        assert records["ok"].all(), records.loc[~records["ok"], "error"].head().tolist()
        # the requests really crossed the bridge: from each worker's interface (requests and shipped rows) into
        # the server's
        per_worker = records["worker_index"].value_counts()
        for index, worker in enumerate(("worker1", "worker2")):
            assert hosts.eth0_bytes(worker, "tx") > per_worker[index] * MIN_REQUEST_BYTES, worker
        assert hosts.eth0_bytes("server", "rx") > len(records) * MIN_REQUEST_BYTES
    finally:
        for process in processes:
            _stop(process)
