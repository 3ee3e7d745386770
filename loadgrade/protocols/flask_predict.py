"""``flask-predict``: the hand-written style, ``POST /predict {"input_data": [x]}`` → ``{"output_data": [y]}``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, ProtocolBase, describe, dumps


class FlaskPredictProtocol(ProtocolBase):
    """One sample per request, wrapped in a one-row batch; the reply's first output is the prediction."""

    kind: Literal["flask-predict"] = "flask-predict"
    input_key: str = "input_data"
    output_key: str = "output_data"
    default_path: ClassVar[str] = "/predict"

    def build_body(self, sample: Sample) -> bytes:
        """
        >>> FlaskPredictProtocol().build_body(Sample("a", [1, 2.5], {}))
        b'{"input_data":[[1,2.5]]}'
        """
        return dumps({self.input_key: [sample.input]}).encode()

    def extract(self, payload: Any) -> Any:
        """
        >>> FlaskPredictProtocol().extract({"output_data": [7]})
        7
        """
        if not isinstance(payload, dict) or self.output_key not in payload:
            raise ExtractionError(f"expected an object with key {self.output_key!r}, got {describe(payload)}")
        output = payload[self.output_key]
        if isinstance(output, list):
            if len(output) != 1:
                raise ExtractionError(f"expected {self.output_key!r} to hold 1 prediction, got {len(output)}")
            return output[0]
        return output
