"""The per-request record schema and the one writer of ``records.csv``.

Workers build rows (:func:`worker_row`) and ship them to the master in batches; the master stamps each row with the
load that was offered when it was sent (:class:`LoadTimeline`) and appends it with :class:`RecordWriter`. In a
standalone run the local process plays both parts. One writer means no lost and no duplicated rows.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from loadgrade.responses import LLMFigures

RECORD_COLUMNS: tuple[str, ...] = (
    "request_id",  # unique in the run: "<worker_index>-<sequence>"
    "sample_id",  # the dataset id of the sample sent
    "worker_index",  # Locust's index of the worker process (0 when standalone)
    "user_id",  # the simulated user within that worker
    "t_sent",  # epoch seconds when the request was sent, microsecond precision
    "latency_ms",  # Locust's response time: from send to the last byte of the reply
    "status_code",  # HTTP status, 0 when no response arrived
    "ok",  # True when transport and format were fine (a wrong prediction is still ok)
    "error_kind",  # http, timeout, connection, decode, extract, or empty
    "error",  # the error message, empty when ok
    "prediction",  # the extracted prediction as JSON text, empty when not ok
    "response_bytes",  # size of the reply body
    "pass",  # 1-based pass over the dataset
    "t_scheduled",  # open model (load kind "rate"): when the arrival was due; t_sent - t_scheduled is the lag
    "prompt_tokens",  # LLM servers: token counts from the reply's usage, when it reports them
    "completion_tokens",
    "ttft_ms",  # streamed LLM replies: from the send to the first chunk carrying output text (client clock)
    "itl_mean_ms",  # streamed: mean gap between successive chunks carrying text (inter-token latency)
    "itl_max_ms",  # streamed: the longest such gap
    "tpot_ms",  # streamed: (latency_ms - ttft_ms) / (output_tokens - 1), time per output token after the first
    "output_tokens",  # LLM replies: completion_tokens from usage, else the number of text chunks streamed
    "finish_reason",  # LLM replies: why the server stopped ("stop", "length", ...), empty when it said nothing
    "reply",  # LLM replies: the reply text before answer_regex, shortened to the protocol's reply_chars
    "users_active",  # users running across all workers when the request was sent (stamped by the master)
    "stage",  # 0-based load stage when the load has stages, else empty (stamped by the master)
    "target_users",  # the stage's target user count (stamped by the master)
    "target_rps",  # open model: the stage's target arrival rate across all workers (stamped by the master)
)
"""Columns of ``records.csv``, in order. Documented in the README's record reference."""

WORKER_COLUMNS = RECORD_COLUMNS[: RECORD_COLUMNS.index("users_active")]
"""The part of a row a worker knows; the master appends the rest."""


def worker_row(
    *,
    request_id: str,
    sample_id: str,
    worker_index: int,
    user_id: int,
    t_sent: float,
    latency_ms: float,
    status_code: int,
    ok: bool,
    error_kind: str,
    error: str,
    prediction: str,
    response_bytes: int,
    pass_number: int,
    t_scheduled: float | None = None,
    usage: tuple[int, int] | None = None,
    llm: LLMFigures | None = None,
) -> list[Any]:
    """One request as shipped from a worker: plain values in :data:`WORKER_COLUMNS` order.

    Times are rounded to the microsecond; the CSV writer prints the shortest text that reads back the same float.

    >>> worker_row(request_id="0-1", sample_id="a", worker_index=0, user_id=3, t_sent=1.5000004, latency_ms=2.25,
    ...            status_code=200, ok=True, error_kind="", error="", prediction="7", response_bytes=10,
    ...            pass_number=1)
    ['0-1', 'a', 0, 3, 1.5, 2.25, 200, True, '', '', '7', 10, 1, '', '', '', '', '', '', '', '', '', '']
    """
    return [
        request_id,
        sample_id,
        worker_index,
        user_id,
        _micro(t_sent),
        _milli(latency_ms),
        status_code,
        ok,
        error_kind,
        error,
        prediction,
        response_bytes,
        pass_number,
        "" if t_scheduled is None else _micro(t_scheduled),
        *(("", "") if usage is None else (_count(usage[0]), _count(usage[1]))),
        *(_NO_LLM if llm is None else _llm_cells(llm)),
    ]


_NO_LLM = ("",) * 7


def _llm_cells(llm: LLMFigures) -> tuple[Any, ...]:
    ttft, itl_mean, itl_max, tpot, tokens, reason, reply = llm
    return (
        "" if ttft is None else _milli(ttft),
        "" if itl_mean is None else _milli(itl_mean),
        "" if itl_max is None else _milli(itl_max),
        "" if tpot is None else _milli(tpot),
        "" if tokens is None else tokens,
        reason,
        reply,
    )


def _micro(seconds: float) -> float:
    """Rounded to the microsecond (half up): integer arithmetic, four times cheaper than ``round(x, 6)``."""
    return int(seconds * 1e6 + 0.5) / 1e6


def _milli(ms: float) -> float:
    """Rounded to the microsecond, in milliseconds."""
    return int(ms * 1e3 + 0.5) / 1e3


def _count(n: int) -> int | str:
    return n if n >= 0 else ""


@dataclass
class Stage:
    """One stage of the offered load, on the master's clock."""

    index: int
    target_users: int
    spawn_rate: float
    t_start: float
    t_end: float | None = None
    target_rps: float | None = None


@dataclass
class LoadTimeline:
    """What load was offered when, as seen by the master; stamps each row by its ``t_sent``.

    ``users_active`` comes from the runner's user count sampled a few times a second; stages come from the load
    shape as it moves from one to the next.

    >>> timeline = LoadTimeline()
    >>> timeline.note_users(10.0, 2); timeline.note_users(11.0, 4)
    >>> timeline.start_stage(10.0, target_users=2, spawn_rate=1.0)
    >>> timeline.start_stage(20.0, target_users=4, spawn_rate=1.0, target_rps=50.0)
    >>> timeline.stamp_many([10.5, 25.0, 9.0])
    [(2, 0, 2, ''), (4, 1, 4, 50.0), (2, 0, 2, '')]
    """

    _user_times: list[float] = field(default_factory=list)
    _user_counts: list[int] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    _stage_starts: list[float] = field(default_factory=list)

    def note_users(self, t: float, users: int) -> None:
        if not self._user_counts or self._user_counts[-1] != users:
            self._user_times.append(t)
            self._user_counts.append(users)

    def start_stage(self, t: float, target_users: int, spawn_rate: float, target_rps: float | None = None) -> None:
        if self.stages:
            self.stages[-1].t_end = t
        self.stages.append(Stage(len(self.stages), target_users, spawn_rate, t, target_rps=target_rps))
        self._stage_starts.append(t)

    def close(self, t: float) -> None:
        if self.stages and self.stages[-1].t_end is None:
            self.stages[-1].t_end = t

    def stamp_many(self, t_sent: list[float]) -> list[tuple[int | str, int | str, int | str, float | str]]:
        """``(users_active, stage, target_users, target_rps)`` for each send time; empty strings where unknown.

        Vectorised: the master stamps every row of a run.
        """
        times = np.asarray(t_sent, dtype=np.float64)
        if self._user_counts:
            at = np.maximum(np.searchsorted(self._user_times, times, side="right") - 1, 0)
            users: list[int | str] = np.asarray(self._user_counts)[at].tolist()
        else:
            users = [""] * len(t_sent)
        if not self.stages:
            return [(u, "", "", "") for u in users]
        index = np.maximum(np.searchsorted(self._stage_starts, times, side="right") - 1, 0).tolist()
        targets = [(stage.target_users, "" if stage.target_rps is None else stage.target_rps) for stage in self.stages]
        return [(u, i, *targets[i]) for u, i in zip(users, index, strict=True)]


class RecordWriter:
    """Appends rows to ``records.csv`` (header first), stamping each with the offered load."""

    def __init__(self, path: Path, timeline: LoadTimeline) -> None:
        self.path = path
        self.timeline = timeline
        self.rows_written = 0
        self.rows_per_stage: Counter[int | str] = Counter()
        self._file: IO[str] = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(RECORD_COLUMNS)
        self._t_sent = WORKER_COLUMNS.index("t_sent")

    def write_rows(self, rows: list[list[Any]]) -> list[tuple[int | str, int | str, int | str, float | str]]:
        """Append rows with their stamps; returns the stamps (the live figures level rows by them too)."""
        t_sent = self._t_sent
        stamps = self.timeline.stamp_many([row[t_sent] for row in rows])
        self._csv.writerows([*row, *stamp] for row, stamp in zip(rows, stamps, strict=True))
        self.rows_written += len(rows)
        self._file.flush()  # whole batches reach the file: a killed master never leaves half a row
        for stamp in stamps:
            if stamp[1] != "":
                self.rows_per_stage[stamp[1]] += 1
        return stamps

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed
