"""``tf-serving``: TensorFlow Serving's REST predict API, row ("instances") format.

``POST /v1/models/{model_name}[/versions/{version}]:predict`` with ``{"instances": [input]}`` answers
``{"predictions": [prediction]}``. A model whose signature has several outputs answers an object per instance:
``output`` names the one holding the prediction.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, ModelServerProtocol, describe, dumps, server_error


class TfServingProtocol(ModelServerProtocol):
    """One sample per request as a one-instance batch; the first prediction is the answer."""

    kind: Literal["tf-serving"] = "tf-serving"
    signature_name: str | None = Field(None, description="SignatureDef to call; default serving_default")
    output: str | None = Field(None, description="Key of the prediction when each prediction is an object")
    default_path: ClassVar[str] = "/v1/models/{model_name}[/versions/{version}]:predict"

    def model_path(self, model: str, version: str | None) -> str:
        """
        >>> TfServingProtocol(model_name="digits").path()
        '/v1/models/digits:predict'
        """
        return f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "") + ":predict"

    def build_body(self, sample: Sample) -> bytes:
        """
        >>> TfServingProtocol(model_name="m", signature_name="classify").build_body(Sample("a", [1, 2.5], {}))
        b'{"signature_name":"classify","instances":[[1,2.5]]}'
        """
        body: dict[str, Any] = {"signature_name": self.signature_name} if self.signature_name else {}
        body["instances"] = [sample.input]
        return dumps(body).encode()

    def extract(self, payload: Any) -> Any:
        """
        >>> TfServingProtocol(model_name="m").extract({"predictions": [3]})
        3
        >>> TfServingProtocol(model_name="m", output="classes").extract({"predictions": [{"classes": 3}]})
        3
        """
        predictions = payload.get("predictions") if isinstance(payload, dict) else None
        if not isinstance(predictions, list):
            raise ExtractionError(
                f"expected an object with a 'predictions' list, got {describe(payload)}{server_error(payload)}"
            )
        if len(predictions) != 1:
            raise ExtractionError(
                f"expected 'predictions' to hold 1 prediction (one instance sent), got {len(predictions)}"
            )
        prediction = predictions[0]
        if self.output is None:
            return prediction
        if not isinstance(prediction, dict) or self.output not in prediction:
            raise ExtractionError(
                f"expected the prediction to be an object with key {self.output!r}, got {describe(prediction)}"
            )
        return prediction[self.output]
