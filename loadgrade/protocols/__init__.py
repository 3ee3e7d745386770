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

Protocol = Annotated[GenericProtocol | FlaskPredictProtocol, Field(discriminator="kind")]
"""Any protocol preset, chosen by the scenario's ``protocol.kind``."""

__all__ = ["ExtractionError", "FlaskPredictProtocol", "GenericProtocol", "Protocol", "ProtocolBase", "dumps"]
