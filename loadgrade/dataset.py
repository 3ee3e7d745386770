"""Labelled datasets: read them (CSV, JSONL, Parquet), and the order in which a pass visits them.

Every process computes a pass's order identically from the seed; the master hands the samples out in that order
(:mod:`loadgrade.dispenser`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from loadgrade.errors import ScenarioError

DatasetFormat = Literal["csv", "jsonl", "parquet"]
Order = Literal["sequential", "shuffle"]

FORMAT_BY_SUFFIX: dict[str, DatasetFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_table(path: Path, fmt: DatasetFormat, *, id_column: str | None = None) -> pd.DataFrame:
    """Read a dataset file; the id column is read as text so ``007`` stays ``007``."""
    if fmt == "csv":
        return pd.read_csv(path, dtype={id_column: str} if id_column else None, keep_default_na=False, na_values=[""])
    if fmt == "jsonl":
        frame = pd.read_json(path, lines=True, dtype=False)
    else:
        frame = pd.read_parquet(path)
    if id_column and id_column in frame.columns:
        frame[id_column] = frame[id_column].astype(str)
    return frame


def _python_value(value: Any) -> Any:
    """JSON-safe Python value: numpy scalars unwrapped, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class Sample:
    """One labelled example as the protocols see it: its id, its model input and the whole row."""

    sample_id: str
    input: Any
    fields: Mapping[str, Any]


class Dataset:
    """A validated labelled dataset held in memory: ids, model inputs and labels, in file order."""

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        id_column: str,
        label_column: str,
        input_columns: Sequence[str] | None,
        input_field: str | None,
    ) -> None:
        self.frame = frame
        self.id_column = id_column
        self.label_column = label_column
        self.ids: list[str] = frame[id_column].astype(str).tolist()
        self.labels: list[Any] = [_python_value(v) for v in frame[label_column].tolist()]
        if input_columns is not None:
            block = frame[list(input_columns)]
            values = (
                block.to_numpy().tolist()
                if all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes)
                else block.to_numpy(dtype=object).tolist()
            )
            self.inputs: list[Any] = [[_python_value(v) for v in row] for row in values]
        else:
            assert input_field is not None
            self.inputs = [_python_value(v) for v in frame[input_field].tolist()]

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, index: int) -> Sample:
        """The sample at ``index`` (file order), with its row for request templates."""
        row = {
            str(k): _python_value(v) for k, v in zip(self.frame.columns, self.frame.iloc[index].tolist(), strict=True)
        }
        return Sample(sample_id=self.ids[index], input=self.inputs[index], fields=row)


def resolve_input_columns(patterns: Sequence[str], columns: Sequence[str]) -> list[str]:
    """Expand names and glob patterns (``px*``) against the dataset's columns, keeping the file's order.

    >>> resolve_input_columns(["b", "x*"], ["id", "x2", "b", "x1"])
    ['b', 'x2', 'x1']
    """
    chosen: list[str] = []
    for pattern in patterns:
        matches = (
            [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
            if any(ch in pattern for ch in "*?[")
            else [pattern]
            if pattern in columns
            else []
        )
        if not matches:
            raise KeyError(pattern)
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def _check_label_not_input(
    label_column: str, input_columns: Sequence[str] | None, input_field: str | None, *, scenario_path: object
) -> None:
    """The label must never reach the model: a model shown the answer scores perfectly at any load."""
    if input_field is not None and input_field == label_column:
        raise ScenarioError(
            scenario_path,
            "dataset.input_field",
            f"the label column {label_column!r} is sent to the model as its input (input_field is the label "
            "column): point input_field at the column holding the model's input",
        )
    for pattern in input_columns or ():
        globbed = any(ch in pattern for ch in "*?[")
        if fnmatch.fnmatchcase(label_column, pattern) if globbed else pattern == label_column:
            how = f"matched by {pattern!r}" if globbed else "listed"
            raise ScenarioError(
                scenario_path,
                "dataset.input_columns",
                f"the label column {label_column!r} is sent to the model as an input ({how} in input_columns): "
                "leave it out, e.g. with a narrower pattern or by listing the input columns",
            )


def load_dataset(
    path: Path,
    *,
    fmt: DatasetFormat,
    id_column: str,
    label_column: str,
    input_columns: Sequence[str] | None,
    input_field: str | None,
    scenario_path: object = "<scenario>",
) -> Dataset:
    """Read and validate a labelled dataset; every problem is a :class:`ScenarioError` naming the key."""
    if not path.is_file():
        raise ScenarioError(scenario_path, "dataset.path", f"dataset file not found: {path}")
    try:
        frame = read_table(path, fmt, id_column=id_column)
    except Exception as exc:  # any parser failure becomes one clear line
        raise ScenarioError(scenario_path, "dataset.path", f"cannot read {path} as {fmt}: {exc}") from exc
    columns = [str(c) for c in frame.columns]
    listing = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    for key, column in (("dataset.id_column", id_column), ("dataset.label_column", label_column)):
        if column not in columns:
            raise ScenarioError(
                scenario_path, key, f"expected a column of {path.name} named {column!r}; columns are: {listing}"
            )
    _check_label_not_input(label_column, input_columns, input_field, scenario_path=scenario_path)
    resolved: list[str] | None = None
    if input_columns is not None:
        try:
            resolved = resolve_input_columns(input_columns, columns)
        except KeyError as exc:
            raise ScenarioError(
                scenario_path,
                "dataset.input_columns",
                f"no column of {path.name} matches {exc.args[0]!r}; columns are: {listing}",
            ) from None
    elif input_field is not None and input_field not in columns:
        raise ScenarioError(
            scenario_path,
            "dataset.input_field",
            f"expected a column of {path.name} named {input_field!r}; columns are: {listing}",
        )
    if len(frame) == 0:
        raise ScenarioError(scenario_path, "dataset.path", f"dataset {path.name} has no rows")
    ids = frame[id_column].astype(str)
    duplicated = ids[ids.duplicated(keep=False)]
    if len(duplicated):
        examples = ", ".join(repr(v) for v in duplicated.unique()[:5])
        raise ScenarioError(
            scenario_path,
            "dataset.id_column",
            f"sample ids must be unique; {duplicated.nunique()} ids repeat, e.g. {examples}",
        )
    if frame[label_column].isna().any():
        missing = ids[frame[label_column].isna()].head(5).tolist()
        raise ScenarioError(scenario_path, "dataset.label_column", f"every sample needs a label; missing for {missing}")
    return Dataset(
        frame, id_column=id_column, label_column=label_column, input_columns=resolved, input_field=input_field
    )


def pass_order(n: int, *, pass_number: int, order: Order, seed: int) -> np.ndarray:
    """The order in which a pass visits the dataset; identical in every process for the same arguments.

    >>> pass_order(5, pass_number=1, order="sequential", seed=0).tolist()
    [0, 1, 2, 3, 4]
    >>> sorted(pass_order(5, pass_number=2, order="shuffle", seed=7).tolist())
    [0, 1, 2, 3, 4]
    """
    if order == "sequential":
        return np.arange(n)
    return np.random.default_rng([seed, pass_number]).permutation(n)
