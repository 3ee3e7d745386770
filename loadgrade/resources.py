"""What the load costs the served model: its Prometheus metrics and its process's CPU and memory, over time.

The master samples at a fixed interval into ``resources.csv`` (tidy: one row per time, source and metric), so the
analysis can join resources with load levels by time. Counters become per-second rates. A source that cannot be
read (an unreachable ``/metrics``, a body that is not Prometheus text, a process that does not exist or exits)
gives a warning and an empty column; it never fails the load test.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import psutil
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

logger = logging.getLogger("loadgrade")

RESOURCE_COLUMNS = ("t", "source", "metric", "value")
"""Columns of ``resources.csv``: epoch seconds, ``metrics`` or ``process``, the metric, its value."""


class ResourcesSpec(BaseModel):
    """The scenario's ``resources:`` section: where to read the served model's consumption from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: PositiveFloat = Field(1.0, description="Sampling interval")
    metrics_url: str | None = Field(None, description="The server's Prometheus endpoint, e.g. http://host:8082/metrics")
    metrics: list[str] = Field(default_factory=list, description="Metric families to keep (default: all)")
    pid: PositiveInt | None = Field(None, description="The server's process id, on the master's machine")
    process: str | None = Field(None, min_length=1, description="... or a text in its command line")
    port: PositiveInt | None = Field(None, description="... or the TCP port it listens on")

    @field_validator("metrics_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _something_to_sample(self) -> ResourcesSpec:
        finders = [x for x in (self.pid, self.process, self.port) if x is not None]
        if self.metrics_url is None and not finders:
            raise ValueError("expected 'metrics_url' and/or one of 'pid', 'process', 'port'")
        if len(finders) > 1:
            raise ValueError("expected at most one of 'pid', 'process' and 'port'")
        return self


def parse_prometheus(text: str, keep: Iterable[str] = ()) -> list[tuple[str, float, bool]]:
    """``(metric with labels, value, is_counter)`` for every sample of the kept families (all when ``keep`` is empty).

    >>> parse_prometheus('# TYPE r_total counter\\nr_total{tier="a"} 3\\n# TYPE q gauge\\nq 1.5\\n')
    [('r_total{tier="a"}', 3.0, True), ('q', 1.5, False)]
    """
    wanted = set(keep)
    samples = []
    for family in text_string_to_metric_families(text):
        if wanted and family.name not in wanted and not any(s.name in wanted for s in family.samples):
            continue
        counter = family.type == "counter"
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # when a counter was created: a timestamp, not consumption
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples.append((f"{sample.name}{{{labels}}}" if labels else sample.name, float(sample.value), counter))
    return samples


def find_process(spec: ResourcesSpec) -> psutil.Process | None:
    """The server process named by ``pid``, ``process`` (command-line text) or ``port``; None when absent."""
    if spec.pid is not None:
        return psutil.Process(spec.pid) if psutil.pid_exists(spec.pid) else None
    if spec.port is not None:
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == spec.port:
                return psutil.Process(connection.pid) if connection.pid else None
        return None
    if spec.process is not None:
        me = psutil.Process().pid
        for candidate in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(candidate.info.get("cmdline") or [])
            if candidate.info["pid"] != me and spec.process in cmdline:
                return candidate
    return None


class ResourceSampler:
    """Appends samples to ``resources.csv``; every failure is a warning (once per kind) and a missing value."""

    def __init__(self, spec: ResourcesSpec, path: Path, *, fetch: Callable[[str], str] | None = None) -> None:
        self.spec = spec
        self.path = path
        self._fetch = fetch or _fetch_text
        self._file: IO[str] = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(RESOURCE_COLUMNS)
        self._previous: dict[str, tuple[float, float]] = {}  # counter → (t, value), for rates
        self._warned: set[str] = set()
        self._processes: dict[int, psutil.Process] = {}
        self._root: psutil.Process | None = None
        self._looked_for_process = False
        self.rows_written = 0

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(f"resources: {message} (sampling goes on without it)")

    def _write(self, t: float, source: str, metric: str, value: float) -> None:
        if math.isfinite(value):
            self._csv.writerow([round(t, 3), source, metric, value])
            self.rows_written += 1

    def sample(self, t: float | None = None) -> None:
        """Take one sample of every source now."""
        t = time.time() if t is None else t
        if self.spec.metrics_url is not None:
            self._sample_metrics(t, self.spec.metrics_url)
        if self.spec.pid is not None or self.spec.process is not None or self.spec.port is not None:
            self._sample_process(t)
        self._file.flush()

    def _sample_metrics(self, t: float, url: str) -> None:
        try:
            text = self._fetch(url)
        except Exception as exc:  # unreachable, refused, time-out, HTTP error
            self._warn("metrics-unreachable", f"cannot read {url}: {exc}")
            return
        try:
            samples = parse_prometheus(text, self.spec.metrics)
        except Exception as exc:
            self._warn("metrics-format", f"{url} did not answer Prometheus text: {exc}")
            return
        if not samples:
            self._warn("metrics-empty", f"{url} has none of the metrics {self.spec.metrics}")
        for metric, value, counter in samples:
            self._write(t, "metrics", metric, value)
            if counter:
                before = self._previous.get(metric)
                self._previous[metric] = (t, value)
                if before is not None and t > before[0] and value >= before[1]:
                    self._write(t, "metrics", f"{metric}:rate", (value - before[1]) / (t - before[0]))

    def _sample_process(self, t: float) -> None:
        if self._root is None:
            if self._looked_for_process:
                return
            self._looked_for_process = True
            try:
                self._root = find_process(self.spec)
            except psutil.Error as exc:
                self._warn("process-missing", f"cannot look for the server process: {exc}")
                return
            if self._root is None:
                self._warn("process-missing", "found no server process for " + _describe_finder(self.spec))
                return
        try:
            family = [self._root, *self._root.children(recursive=True)]
            cpu, rss = 0.0, 0
            for process in family:
                known = self._processes.setdefault(process.pid, process)
                cpu += known.cpu_percent(interval=None)  # since the previous sample; the first call says 0
                rss += known.memory_info().rss
        except psutil.Error:
            self._warn("process-gone", f"the server process {self._root.pid} exited")
            self._root = None
            return
        self._write(t, "process", "cpu_percent", cpu)
        self._write(t, "process", "rss_bytes", float(rss))
        self._write(t, "process", "processes", float(len(family)))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _describe_finder(spec: ResourcesSpec) -> str:
    if spec.pid is not None:
        return f"pid {spec.pid}"
    if spec.port is not None:
        return f"port {spec.port}"
    return f"command line containing {spec.process!r}"


def _fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2.0) as response:
        return str(response.read().decode("utf-8", errors="replace"))
