from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.model_servers import DigitsModel, save_digits_model


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> DigitsModel:
    """The reference digits classifier saved with joblib, as the third-party servers load it."""
    return save_digits_model(Path(tmp_path_factory.mktemp("digits-model")))
