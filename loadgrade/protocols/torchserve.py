"""``torchserve``: TorchServe's inference API, ``POST /predictions/{model_name}[/{version}]``.

The body is the sample's input as JSON (or ``{input_key: input}``); TorchServe hands it to the model's handler and
sends back what the handler returned for it: a bare value (``7``) or an object, from which ``prediction`` (a
JMESPath expression) picks the answer.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from loadgrade.dataset import Sample
from loadgrade.protocols._base import (
    ExtractionError,
    ModelServerProtocol,
    compile_jmespath,
    describe,
    dumps,
)


class TorchServeProtocol(ModelServerProtocol):
    """One sample per request; the reply is the prediction, or holds it where ``prediction`` points."""

    kind: Literal["torchserve"] = "torchserve"
    input_key: str | None = Field(None, description="Wrap the input as {input_key: input}; default: the input alone")
    prediction: str | None = Field(None, description="JMESPath to the prediction in the reply; default: the reply")
    default_path: ClassVar[str] = "/predictions/{model_name}[/{version}]"
    _expression: Any = PrivateAttr(default=None)

    @field_validator("prediction")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_jmespath(value)
        return value

    @model_validator(mode="after")
    def _prepare(self) -> TorchServeProtocol:
        self._expression = compile_jmespath(self.prediction) if self.prediction is not None else None
        return self

    def model_path(self, model: str, version: str | None) -> str:
        """
        >>> TorchServeProtocol(model_name="digits", version="1.0").path()
        '/predictions/digits/1.0'
        """
        return f"/predictions/{model}" + (f"/{version}" if version is not None else "")

    def build_body(self, sample: Sample) -> bytes:
        """
        >>> TorchServeProtocol(model_name="m", input_key="data").build_body(Sample("a", [1, 2.5], {}))
        b'{"data":[1,2.5]}'
        """
        return dumps(sample.input if self.input_key is None else {self.input_key: sample.input}).encode()

    def extract(self, payload: Any) -> Any:
        """
        >>> TorchServeProtocol(model_name="m").extract(7)
        7
        >>> TorchServeProtocol(model_name="m", prediction="label").extract({"label": 7})
        7
        """
        if self._expression is None:
            if payload is None:
                raise ExtractionError("the reply is JSON null, not a prediction")
            return payload
        value = self._expression.search(payload)
        if value is None:
            raise ExtractionError(f"JMESPath {self.prediction!r} found nothing in {describe(payload)}")
        return value
