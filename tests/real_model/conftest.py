"""The real-model tests share one llama-cpp-python server per session (tests/llm_server.py).

They are skipped only when the server package or the model cannot be installed here,
and then the end of the test report says so in capitals.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm_server import LlamaServer, install, running_server

_skipped: list[str] = []


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    reason = install()
    if reason is not None:
        _skipped.append(reason)
        pytest.skip(f"REAL-MODEL TESTS SKIPPED: {reason}")
    with running_server() as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.write_sep("!", "REAL-MODEL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"llama-cpp-python's server could not be set up: "
                                    f"{_skipped[0]}", red=True)
