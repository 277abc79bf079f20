"""Shared fixtures of the provider tests."""

from __future__ import annotations

import pytest

from tests.unit.llm_servers import MockServer, Script


@pytest.fixture
def server(script: Script) -> MockServer:
    """The test module's `script` answered in-process (each provider module has one)."""
    return MockServer(script)
