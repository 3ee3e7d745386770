"""Read a run directory: ``records.csv``, ``run.json`` and the ground truth.

The record schema is the data contract written by ``loadgrade.recording``. Later
versions may append columns, so extra columns are kept and never an error;
``stage``, ``target_users``, ``t_scheduled`` and ``target_rps`` are optional.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from tqdm.auto import tqdm

from loadgrade.analysis.errors import AnalysisInputError
from loadgrade.analysis.grading import GradingSpec, grading_spec

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "Progress",
    "RunData",
    "load_run",
    "read_records",
    "read_run_info",
    "read_truth",
    "wants_progress",
]

#: Columns every ``records.csv`` must have, with the Arrow type each is read as.
REQUIRED_COLUMNS: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "sample_id": pa.string(),
    "worker_index": pa.int64(),
    "user_id": pa.int64(),
    "t_sent": pa.float64(),
    "latency_ms": pa.float64(),
    "status_code": pa.int64(),
    "ok": pa.bool_(),
    "error_kind": pa.string(),
    "error": pa.string(),
    "prediction": pa.string(),
    "response_bytes": pa.int64(),
    "users_active": pa.int64(),
    "pass": pa.int64(),
}

#: Columns that may be absent (older runs, runs without stages) or empty per row.
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {
    "stage": pa.int64(),
    "target_users": pa.int64(),
    "t_scheduled": pa.float64(),  # open model: when the arrival was due (epoch seconds)
    "target_rps": pa.float64(),  # open model: the stage's target arrival rate
    "prompt_tokens": pa.int64(),  # LLM replies: token counts from usage
    "completion_tokens": pa.int64(),
    "ttft_ms": pa.float64(),  # streamed LLM replies: time to first token
    "itl_mean_ms": pa.float64(),
    "itl_max_ms": pa.float64(),
    "tpot_ms": pa.float64(),
    "output_tokens": pa.int64(),
    "finish_reason": pa.string(),
    "reply": pa.string(),
}

# Files above this size get a progress bar (when stderr is a terminal).
_PROGRESS_MIN_BYTES = 64 * 1024 * 1024

TRUTH_FORMATS = ("csv", "jsonl", "parquet")


def _check_file(path: Path, *, what: str) -> None:
    if not path.exists():
        raise AnalysisInputError(f"{what} '{path}' does not exist")
    if not path.is_file():
        raise AnalysisInputError(f"{what} '{path}' is not a file")


def _check_columns(frame_columns: list[str], required: list[str], *, what: str) -> None:
    missing = [c for c in required if c not in frame_columns]
    if missing:
        raise AnalysisInputError(
            f"{what} has no column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}; "
            f"columns are: {', '.join(frame_columns)}"
        )


def _name_column(message: str, path: Path) -> str:
    """Arrow says "CSV column #5"; say which column that is."""
    found = re.search(r"CSV column #(\d+)", message)
    if found is None:
        return message
    with path.open(encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split(",")
    index = int(found.group(1))
    if index >= len(header):
        return message
    return message.replace(found.group(0), f"column '{header[index]}'")


def wants_progress(records_path: str | os.PathLike[str]) -> bool:
    """Whether to draw progress bars by default: a records file over 64 MiB, and stderr is a terminal.

    Long work deserves a sign of life; a pipe or a CI log gets no bar characters.
    """
    path = Path(records_path)
    return sys.stderr.isatty() and path.is_file() and path.stat().st_size >= _PROGRESS_MIN_BYTES


class Progress:
    """Signs of life of a long analysis, on stderr so that stdout stays the result.

    One line per step, with the seconds since the command started, so that a
    CI log shows what the analysis is doing and where the time goes; with
    ``bars`` (a terminal and a big run, see :func:`wants_progress`) tqdm bars
    while the records are read and the levels computed as well.
    ``Progress(lines=False)`` draws only the bars: what a notebook gets.

    Parameters
    ----------
    bars : bool, default False
        Draw tqdm bars for reading the records and computing the levels.
    lines : bool, default True
        Print a line as each step starts.
    started : float or None
        :func:`time.perf_counter` when the work began (e.g. before the
        command loaded its libraries); default: now.

    Examples
    --------
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     Progress(started=time.perf_counter() - 1.21).step("joining 1,200 records with 540 labelled samples")
    >>> err.getvalue()
    '   1.2 s  joining 1,200 records with 540 labelled samples\\n'
    """

    def __init__(self, *, bars: bool = False, lines: bool = True, started: float | None = None) -> None:
        self.bars = bars
        self.lines = lines
        self.started = time.perf_counter() if started is None else started

    def step(self, text: str) -> None:
        """Say that ``text`` starts now (nothing when ``lines`` is off)."""
        if self.lines:
            # tqdm.write keeps a bar that is being drawn intact; stderr is looked up now, not at import
            tqdm.write(f"{time.perf_counter() - self.started:6.1f} s  {text}", file=sys.stderr)
            sys.stderr.flush()


def _reader_pool() -> pa.MemoryPool:
    """jemalloc when this pyarrow has it: it hands the CSV reader's scratch buffers back to the system, where
    Arrow's default (mimalloc) keeps them; on 10 M records that raised the whole report's peak from 3.0 to 3.8 GiB."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


def read_records(path: str | os.PathLike[str], *, progress: bool | None = None) -> pd.DataFrame:
    """Read a ``records.csv`` with the Arrow CSV reader and explicit types.

    Explicit types keep ids as strings (``"007"`` stays ``"007"``, ``"NA"`` is
    not a missing value) and make a malformed file fail here, naming the
    column, rather than later as a puzzling metric.

    Parameters
    ----------
    path : path-like
        The ``records.csv`` file.
    progress : bool or None, default None
        Show a byte progress bar on stderr. ``None`` shows it for files over
        64 MiB when stderr is a terminal.

    Returns
    -------
    pandas.DataFrame
        One row per request. ``error_kind``, ``error`` and ``prediction`` are
        strings (empty when absent); ``stage`` and ``target_users`` are
        nullable ``Int64`` and ``t_scheduled`` and ``target_rps`` ``float64``
        (NaN when empty) when present; extra columns are kept. A last line
        without its line end (the master was killed mid-write) is left out;
        ``frame.attrs["cut_off_bytes"]`` says how many bytes that was.

    Raises
    ------
    AnalysisInputError
        If the file is missing, has no rows, lacks a required column or holds
        a value of the wrong type.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> header = ",".join(REQUIRED_COLUMNS)
    >>> row = "r1,s1,0,1,1795000000.5,12.5,200,True,,,3,1,2,1"
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "records.csv").write_text(header + "\\n" + row + "\\n")
    >>> df = read_records(d / "records.csv")
    >>> df.loc[0, "prediction"], bool(df.loc[0, "ok"]), df.loc[0, "error_kind"]
    ('3', True, '')
    """
    path = Path(path)
    _check_file(path, what="records file")
    size = path.stat().st_size
    if progress is None:
        progress = wants_progress(path)
    # pandas keeps text as Arrow large_string: read it as such so that converting does not copy every string
    column_types = {
        name: pa.large_string() if dtype == pa.string() else dtype
        for name, dtype in {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}.items()
    }
    convert = pa_csv.ConvertOptions(
        column_types=column_types,
        # ids and free text are never missing values: an empty field is an empty string
        strings_can_be_null=False,
        true_values=["True", "true", "1"],
        false_values=["False", "false", "0"],
    )
    pool = _reader_pool()
    source: Any = path
    cut_off = _cut_off_tail(path, size)
    if cut_off:
        # a master killed mid-write leaves a last line without its end: read the whole lines only (zero-copy)
        source = pa.BufferReader(pa.memory_map(str(path)).read_buffer(size - cut_off))
    try:
        if progress and not cut_off:
            with (
                path.open("rb") as raw,
                tqdm.wrapattr(raw, "read", total=size, desc=f"reading {path.name}", unit="B", unit_scale=True) as f,
            ):
                table = pa_csv.read_csv(f, convert_options=convert, memory_pool=pool)
        else:
            table = pa_csv.read_csv(source, convert_options=convert, memory_pool=pool)
    except pa.ArrowInvalid as exc:
        message = _name_column(str(exc).splitlines()[0], path)
        raise AnalysisInputError(f"records file '{path}' cannot be read: {message}") from exc
    _check_columns(table.column_names, list(REQUIRED_COLUMNS), what=f"records file '{path}'")
    if table.num_rows == 0:
        raise AnalysisInputError(f"records file '{path}' has no rows: the run recorded no requests")
    for name, dtype in REQUIRED_COLUMNS.items():
        if dtype == pa.int64() and table.column(name).null_count:
            raise AnalysisInputError(f"records file '{path}' has empty values in integer column '{name}'")
    # self_destruct frees each Arrow column once converted, so the file is not held twice at the peak
    frame = table.to_pandas(self_destruct=True, split_blocks=True, memory_pool=pool)
    del table
    for name, dtype in OPTIONAL_COLUMNS.items():
        if name in frame.columns and dtype == pa.int64():
            frame[name] = frame[name].astype("Int64")
    for name in ("t_sent", "latency_ms"):
        if frame[name].isna().any():
            raise AnalysisInputError(f"records file '{path}' has empty values in column '{name}'")
    frame.attrs["cut_off_bytes"] = cut_off
    return frame


def _cut_off_tail(path: Path, size: int) -> int:
    """Bytes after the last line end: a line the writer never finished (0 when the file ends with a newline)."""
    if size == 0:
        return 0
    block = 1 << 16
    with path.open("rb") as f:
        end = size
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return size - (start + newline + 1)
            end = start
    return 0  # a single line without an end: let the reader judge it


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``run.json`` from a run directory.

    Parameters
    ----------
    run_dir : path-like
        The run directory.

    Returns
    -------
    dict
        The parsed document, or an empty dict when the run has no ``run.json``
        (the analysis then needs an explicit ground truth).

    Examples
    --------
    >>> import tempfile
    >>> read_run_info(tempfile.mkdtemp())
    {}
    """
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnalysisInputError(f"run metadata '{path}' is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise AnalysisInputError(f"run metadata '{path}' must hold a JSON object, got {type(info).__name__}")
    return info


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is None:
        suffix = path.suffix.lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if fmt not in TRUTH_FORMATS:
        raise AnalysisInputError(
            f"ground truth '{path}' has format {fmt!r}; expected one of: {', '.join(TRUTH_FORMATS)}"
        )
    return fmt


def _ids_as_strings(ids: pd.Series) -> pd.Series:
    # JSON and Parquet keep numeric ids numeric; the records hold them as text.
    if pd.api.types.is_integer_dtype(ids):
        return ids.astype("int64").astype(str)
    if pd.api.types.is_float_dtype(ids) and bool((ids.dropna() % 1 == 0).all()):
        return ids.astype("Int64").astype(str)
    return ids.astype(str)


def read_truth(
    path: str | os.PathLike[str],
    *,
    id_column: str = "id",
    label_column: str = "label",
    fmt: str | None = None,
) -> pd.DataFrame:
    """Read ground truth keyed by sample id from CSV, JSONL or Parquet.

    Parameters
    ----------
    path : path-like
        The labelled dataset (usually the scenario's own dataset file).
    id_column : str, default "id"
        Column holding the sample id; read as text to match ``records.csv``.
    label_column : str, default "label"
        Column holding the expected answer.
    fmt : {"csv", "jsonl", "parquet"} or None
        File format; ``None`` infers it from the suffix.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample_id`` (str) and ``label`` (as stored); rows without a
        label are dropped.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "truth.csv"
    >>> _ = p.write_text("id,x,label\\n007,0.5,3\\n008,0.1,\\n")
    >>> read_truth(p).to_dict("records")
    [{'sample_id': '007', 'label': 3.0}]
    >>> read_truth(p, label_column="y")
    Traceback (most recent call last):
    ...
    loadgrade.analysis.errors.AnalysisInputError: ground truth '...truth.csv' has no column 'y'; columns are: ...
    """
    path = Path(path)
    _check_file(path, what="ground truth")
    fmt = _format_of(path, fmt)
    try:
        if fmt == "csv":
            header = pd.read_csv(path, nrows=0).columns.tolist()
            _check_columns(header, [id_column, label_column], what=f"ground truth '{path}'")
            frame = pd.read_csv(
                path,
                usecols=[id_column, label_column],
                dtype={id_column: str},
                keep_default_na=False,
                na_values={label_column: ["", "NA", "NaN", "nan", "null"]},
            )
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, pa.ArrowException) as exc:
        if isinstance(exc, AnalysisInputError):
            raise
        raise AnalysisInputError(f"ground truth '{path}' cannot be read as {fmt}: {exc}") from exc
    _check_columns([str(c) for c in frame.columns], [id_column, label_column], what=f"ground truth '{path}'")
    truth = pd.DataFrame(
        {"sample_id": _ids_as_strings(frame[id_column]), "label": frame[label_column]},
    )
    truth = truth[truth["label"].notna()].reset_index(drop=True)
    if truth.empty:
        raise AnalysisInputError(f"ground truth '{path}' has no labelled rows in column '{label_column}'")
    return truth


def dataset_spec(info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``scenario.dataset`` section of ``run.json`` (empty when absent)."""
    scenario = info.get("scenario") or {}
    dataset = scenario.get("dataset") if isinstance(scenario, Mapping) else None
    return dict(dataset) if isinstance(dataset, Mapping) else {}


@dataclass(frozen=True)
class RunData:
    """Everything read from one run directory, before any analysis."""

    run_dir: Path
    """The run directory."""
    records: pd.DataFrame
    """One row per request (see :func:`read_records`)."""
    info: dict[str, Any]
    """``run.json`` (empty when absent)."""
    truth: pd.DataFrame
    """Ground truth: ``sample_id`` and ``label``."""
    truth_path: Path
    """Where the ground truth was read from."""
    task: str | None
    """The task named by the scenario, or ``None`` to infer it."""
    grading: GradingSpec | None = None
    """The scenario's ``grading:`` section, or ``None`` to compare as the task does."""


def _scenario_truth_path(info: Mapping[str, Any], run_dir: Path) -> Path:
    dataset = dataset_spec(info)
    raw = dataset.get("path")
    if not raw:
        raise AnalysisInputError(
            f"run '{run_dir}' names no dataset in run.json (scenario.dataset.path); pass the labels with --truth FILE"
        )
    path = Path(str(raw))
    if not path.is_absolute():
        base = Path(str(info.get("scenario_path") or run_dir / "x")).parent
        path = base / path
    if not path.exists():
        raise AnalysisInputError(
            f"the scenario's dataset '{path}' does not exist (moved since the run?); pass the labels with --truth FILE"
        )
    return path


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    truth: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    progress: bool | None = None,
) -> RunData:
    """Read a run directory: records, ``run.json`` and the ground truth.

    Parameters
    ----------
    run_dir : path-like
        Directory holding ``records.csv`` and ``run.json``. Locust's own CSVs
        may sit alongside and are ignored.
    truth : path-like or None
        Ground truth file (CSV, JSONL or Parquet by suffix). ``None`` uses the
        scenario's dataset recorded in ``run.json``.
    id_column, label_column : str or None
        Override the scenario's ``id_column`` / ``label_column`` (defaults
        ``"id"`` and ``"label"`` when the scenario names none).
    progress : bool or None
        Progress bar while reading records (see :func:`read_records`).

    Returns
    -------
    RunData

    Examples
    --------
    >>> load_run("no/such/run")
    Traceback (most recent call last):
    ...
    loadgrade.analysis.errors.AnalysisInputError: run directory 'no/such/run' does not exist
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AnalysisInputError(f"run directory '{run_dir}' does not exist")
    records_path = run_dir / "records.csv"
    if not records_path.exists():
        raise AnalysisInputError(f"run directory '{run_dir}' has no records.csv")
    info = read_run_info(run_dir)
    dataset = dataset_spec(info)
    truth_path = Path(truth) if truth is not None else _scenario_truth_path(info, run_dir)
    fmt = None if truth is not None else (dataset.get("format") or None)
    id_col = id_column or dataset.get("id_column") or "id"
    label_col = label_column or dataset.get("label_column") or "label"
    truth_frame = read_truth(truth_path, id_column=str(id_col), label_column=str(label_col), fmt=fmt)
    records = read_records(records_path, progress=progress)
    task = dataset.get("task")
    scenario = info.get("scenario")
    section = scenario.get("grading") if isinstance(scenario, Mapping) else None
    grading = None if section is None else grading_spec(section, where=f"'{run_dir / 'run.json'}': scenario.grading")
    return RunData(
        run_dir=run_dir,
        records=records,
        info=info,
        truth=truth_frame,
        truth_path=truth_path,
        task=str(task) if task else None,
        grading=grading,
    )


def output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create an output directory (and its parents) if needed; a clear error when it cannot be."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalysisInputError(f"cannot create output directory '{out}': {exc.strerror}") from exc
    return out
