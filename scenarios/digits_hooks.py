"""Request and prediction functions for ``digits-python.yaml`` (the ``python`` protocol preset's example)."""

from typing import Any

from loadgrade.dataset import Sample
from loadgrade.protocols import ExtractionError


def build_request(sample: Sample) -> dict[str, Any]:
    """The request body for one sample: any JSON-able value, text or bytes."""
    return {"features": sample.input}


def find_prediction(payload: Any) -> Any:
    """The prediction in the decoded JSON reply; ExtractionError when it is not there."""
    if not isinstance(payload, dict) or "prediction" not in payload:
        raise ExtractionError(f"expected an object with key 'prediction', got {str(payload)[:80]}")
    return payload["prediction"]
