from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadgrade.servers.reference import running_server


@pytest.fixture(scope="session")
def reference_server() -> Iterator[str]:
    """The reference model server without degradation, for the whole session."""
    with running_server() as url:
        yield url
