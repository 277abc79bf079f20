from __future__ import annotations

import socket

import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.core.backends import open_store
from taskorch_nb.core.pgstore import PgStore
from taskorch_nb.core.store import Store
from taskorch_nb.errors import ConfigurationError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://u:pw@127.0.0.1:notaport/db", "cannot connect"),
    ("mysql://u:pw@127.0.0.1/db", r"store mysql://\.\.\.: unknown kind of store"),
])
def test_a_malformed_or_foreign_url_is_a_configuration_error(url, message) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        open_store(url)
    assert "pw" not in str(caught.value)


def test_taskorch_store_names_the_store_when_none_is_given(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TASKORCH_STORE", str(tmp_path / "elsewhere.db"))
    store = open_store()
    assert (type(store), store.path) == (Store, str(tmp_path / "elsewhere.db"))
    store.close()
    monkeypatch.setenv("TASKORCH_STORE", f"postgres://u:pw@127.0.0.1:{_free_port()}/db")
    with pytest.raises(ConfigurationError, match=r"postgres://u:\*\*\*@"):
        Orchestrator()


def test_a_store_is_taken_as_it_is(tmp_path) -> None:
    store = Store(tmp_path / "t.db")
    assert open_store(store) is store
    assert issubclass(PgStore, Store)  # one API: the engine takes either
    store.close()
