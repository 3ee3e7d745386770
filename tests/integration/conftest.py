from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.model_servers import DigitsModel, LlamaServer, llamacpp, save_digits_model


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> DigitsModel:
    """The reference digits classifier saved with joblib, as the third-party servers load it."""
    return save_digits_model(Path(tmp_path_factory.mktemp("digits-model")))


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's llama-server with SmolLM2-135M-Instruct, once per session; stopped by its PID at the end."""
    with llamacpp(Path(tmp_path_factory.mktemp("llama-server"))) as server:
        yield server
