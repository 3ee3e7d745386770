"""``open-inference-v2``: the Open Inference Protocol (KServe v2) spoken by MLServer, KServe and Triton.

``POST /v2/models/{model_name}[/versions/{version}]/infer`` with the sample as one named input tensor::

    {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": [0.0, 3.0, ...]}]}

The reply holds named output tensors; the prediction is the first row of the chosen one (``data[0]`` for a
model that answers one value per row, the whole row, e.g. class probabilities, when a row holds several)::

    {"model_name": "digits", "outputs": [{"name": "predict", "shape": [1, 1], "datatype": "INT64", "data": [7]}]}

Data is sent flat, in row-major order, as the protocol's JSON form allows; the shape carries the layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from loadgrade.dataset import Sample
from loadgrade.protocols._base import (
    ExtractionError,
    ModelServerProtocol,
    describe,
    dumps,
    first_row,
    server_error,
)

Datatype = Literal["FP32", "FP64", "INT64", "BYTES"]


def tensor_layout(value: Any) -> tuple[list[int], list[Any]]:
    """The shape of a (nested) list and its values in row-major order; a scalar has shape ``[]``.

    >>> tensor_layout([[1, 2], [3, 4], [5, 6]])
    ([3, 2], [1, 2, 3, 4, 5, 6])
    >>> tensor_layout("a cat")
    ([], ['a cat'])
    """
    if not isinstance(value, list):
        return [], [value]
    if not value:
        return [0], []
    parts = [tensor_layout(item) for item in value]
    inner = parts[0][0]
    if any(shape != inner for shape, _ in parts):
        raise ValueError("the input is a ragged list (its rows differ in length); a tensor needs a regular shape")
    return [len(value), *inner], [x for _, flat in parts for x in flat]


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def _misfit(values: list[Any], fits: Any) -> tuple[bool, Any]:
    """(True, the first value that does not fit) or (False, None); a missing value (None) is a misfit too."""
    for value in values:
        if not fits(value):
            return True, value
    return False, None


def _convert(values: list[Any], datatype: Datatype) -> list[Any]:
    """The values as JSON for ``datatype``; a ValueError names the first value that does not fit."""
    if datatype == "BYTES":
        found, bad = _misfit(values, lambda v: isinstance(v, str))
        if found:
            raise ValueError(f"datatype BYTES needs text values, got {dumps(bad)}; use FP32, FP64 or INT64 for numbers")
        return values
    found, bad = _misfit(values, _number)
    if found:
        hint = "; use datatype BYTES for text" if isinstance(bad, str) else ""
        raise ValueError(f"datatype {datatype} needs finite numbers, got {dumps(bad)}{hint}")
    if datatype == "INT64":
        found, bad = _misfit(values, lambda v: v == int(v))
        if found:
            raise ValueError(f"datatype INT64 needs whole numbers, got {dumps(bad)}; use FP32 or FP64")
        return [int(v) for v in values]
    return [float(v) for v in values]


class OpenInferenceV2Protocol(ModelServerProtocol):
    """One sample per request as one input tensor with a leading batch dimension of 1."""

    kind: Literal["open-inference-v2"] = "open-inference-v2"
    input_name: str = Field("input-0", min_length=1, description="Name of the input tensor")
    datatype: Datatype = Field("FP64", description="FP32, FP64, INT64 or BYTES (text)")
    shape: list[int] | None = Field(
        None, min_length=1, description="Tensor shape; default [1, *shape of the input] (a batch of one)"
    )
    output_name: str | None = Field(None, description="Output tensor holding the prediction; default the first")
    batch_size: int = Field(1, ge=1, le=4096, description="Samples per request (one record per sample)")
    default_path: ClassVar[str] = "/v2/models/{model_name}[/versions/{version}]/infer"

    @field_validator("shape")
    @classmethod
    def _positive_dims(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(d < 1 for d in value):
            raise ValueError(f"expected a shape of positive sizes (a batch of one first, e.g. [1, 64]), got {value}")
        return value

    @model_validator(mode="after")
    def _batching_needs_the_default_shape(self) -> OpenInferenceV2Protocol:
        if self.batch_size > 1 and self.shape is not None:
            raise ValueError("'batch_size' stacks samples along a first dimension: leave 'shape' out with it")
        return self

    def model_path(self, model: str, version: str | None) -> str:
        """
        >>> OpenInferenceV2Protocol(model_name="digits", version="2").path()
        '/v2/models/digits/versions/2/infer'
        """
        return f"/v2/models/{model}" + (f"/versions/{version}" if version is not None else "") + "/infer"

    def tensor(self, value: Any) -> dict[str, Any]:
        """One sample's input as a named tensor; a ValueError says why the value does not fit the options."""
        shape, flat = tensor_layout(value)
        if self.shape is None:
            shape = [1, *shape]
        else:
            if math.prod(self.shape) != len(flat):
                raise ValueError(
                    f"protocol.shape {self.shape} holds {math.prod(self.shape)} values but the input has {len(flat)}"
                )
            shape = list(self.shape)
        return {
            "name": self.input_name,
            "shape": shape,
            "datatype": self.datatype,
            "data": _convert(flat, self.datatype),
        }

    def build_body(self, sample: Sample) -> bytes:
        """
        >>> OpenInferenceV2Protocol(model_name="m").build_body(Sample("a", [1, 2.5], {}))
        b'{"inputs":[{"name":"input-0","shape":[1,2],"datatype":"FP64","data":[1.0,2.5]}]}'
        """
        return dumps({"inputs": [self.tensor(sample.input)]}).encode()

    @property
    def samples_per_request(self) -> int:
        return self.batch_size

    def build_batch(self, samples: Sequence[Sample]) -> bytes:
        """Several samples as one tensor, stacked along the first (batch) dimension.

        >>> OpenInferenceV2Protocol(model_name="m", batch_size=2).build_batch([Sample("a", [1, 2], {}),
        ...                                                                     Sample("b", [3, 4], {})])
        b'{"inputs":[{"name":"input-0","shape":[2,2],"datatype":"FP64","data":[1.0,2.0,3.0,4.0]}]}'
        """
        shape, flat = tensor_layout([sample.input for sample in samples])
        return dumps(
            {
                "inputs": [
                    {
                        "name": self.input_name,
                        "shape": shape,
                        "datatype": self.datatype,
                        "data": _convert(flat, self.datatype),
                    }
                ]
            }
        ).encode()

    def extract_batch(self, payload: Any, n: int) -> list[Any]:
        """
        >>> OpenInferenceV2Protocol(model_name="m", batch_size=2).extract_batch(
        ...     {"outputs": [{"name": "predict", "shape": [2, 1], "data": [7, 3]}]}, 2)
        [7, 3]
        """
        output = self.output(payload)
        data, shape = output["data"], output.get("shape")
        rows = shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else len(data)
        if rows != n:
            raise ExtractionError(f"sent {n} samples in one request but output {output.get('name')!r} has {rows} rows")
        return [first_row(data, shape, i) for i in range(n)]

    def output(self, payload: Any) -> dict[str, Any]:
        """The chosen output tensor of a reply; raises :class:`ExtractionError` naming what is missing."""
        outputs = payload.get("outputs") if isinstance(payload, dict) else None
        if not isinstance(outputs, list):
            raise ExtractionError(
                f"expected an object with an 'outputs' list, got {describe(payload)}{server_error(payload)}"
            )
        named: list[dict[str, Any]] = [o for o in outputs if isinstance(o, dict)]
        if not named:
            raise ExtractionError("the reply's 'outputs' list holds no output tensor")
        if self.output_name is None:
            return self._with_data(named[0])
        for output in named:
            if output.get("name") == self.output_name:
                return self._with_data(output)
        names = ", ".join(str(o.get("name")) for o in named)
        raise ExtractionError(f"the reply has no output named {self.output_name!r}; its outputs are: {names}")

    @staticmethod
    def _with_data(chosen: dict[str, Any]) -> dict[str, Any]:
        data = chosen.get("data")
        if not isinstance(data, list) or not data:
            raise ExtractionError(f"output {chosen.get('name')!r} has no 'data' values, got {describe(data)}")
        return chosen

    def extract(self, payload: Any) -> Any:
        """
        >>> OpenInferenceV2Protocol(model_name="m").extract({"outputs": [{"name": "predict", "shape": [1, 1],
        ...                                                               "data": [7]}]})
        7
        """
        output = self.output(payload)
        return first_row(output["data"], output.get("shape"))
