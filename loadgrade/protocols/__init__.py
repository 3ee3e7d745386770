"""Endpoint protocol presets: how to build a request for a sample and find the prediction in the reply.

Adding a preset is one small module defining a :class:`ProtocolBase` subclass with a ``kind`` literal, plus one
entry in :data:`Protocol` below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from loadgrade.protocols._base import ExtractionError, ProtocolBase, dumps
from loadgrade.protocols.flask_predict import FlaskPredictProtocol
from loadgrade.protocols.generic import GenericProtocol
from loadgrade.protocols.open_inference import OpenInferenceV2Protocol
from loadgrade.protocols.openai_chat import OpenAIChatProtocol
from loadgrade.protocols.openai_completions import OpenAICompletionsProtocol
from loadgrade.protocols.python_hooks import PythonProtocol
from loadgrade.protocols.tf_serving import TfServingProtocol
from loadgrade.protocols.torchserve import TorchServeProtocol

Protocol = Annotated[
    GenericProtocol
    | FlaskPredictProtocol
    | OpenInferenceV2Protocol
    | TfServingProtocol
    | TorchServeProtocol
    | OpenAIChatProtocol
    | OpenAICompletionsProtocol
    | PythonProtocol,
    Field(discriminator="kind"),
]
"""Any protocol preset, chosen by the scenario's ``protocol.kind``."""

__all__ = [
    "ExtractionError",
    "FlaskPredictProtocol",
    "GenericProtocol",
    "OpenAIChatProtocol",
    "OpenAICompletionsProtocol",
    "OpenInferenceV2Protocol",
    "Protocol",
    "ProtocolBase",
    "PythonProtocol",
    "TfServingProtocol",
    "TorchServeProtocol",
    "dumps",
]
