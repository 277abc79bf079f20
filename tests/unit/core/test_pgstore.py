from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from taskorch_nb import CircuitBreaker, CircuitState, FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.core.backends import open_store
from taskorch_nb.core.immune import Pattern
from taskorch_nb.core.pgstore import shown_url
from taskorch_nb.core.retry import Failure
from taskorch_nb.errors import CircuitOpenError, ConfigurationError
from taskorch_nb.testing import FlakyTool
from tests.store_backends import BACKENDS, POSTGRES, fresh_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- bad URLs: one clear line, never the password ----------------------------------------

def test_a_server_that_is_not_there_is_a_configuration_error_without_the_password() -> None:
    url = f"postgresql://taskorch:s3cret@127.0.0.1:{_free_port()}/db"
    with pytest.raises(ConfigurationError, match=r"cannot connect \(.*refused") as caught:
        Orchestrator(store=url)
    message = str(caught.value)
    assert message.startswith("store postgresql://taskorch:***@127.0.0.1:")
    assert "s3cret" not in message
    assert "\n" not in message


def test_without_the_driver_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'taskorch_nb\[postgres\]'"):
        open_store("postgresql://u@127.0.0.1/db")


def test_shown_url_hides_only_the_password() -> None:
    assert shown_url("postgresql://u:p@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert shown_url("postgresql://u@h/d") == "postgresql://u@h/d"


# -- sharing between processes --------------------------------------------------------------

@pytest.fixture
def pg(tmp_path):
    with fresh_store("postgres", tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def other_process():
    """Another Python process (spawned: nothing shared but the database)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _open_the_breaker(url: str) -> str:
    """In the other process: an Orchestrator whose `search_api` keeps failing."""
    orch = Orchestrator(store=url, retry=RetryPolicy(max_attempts=1),
                        breaker=CircuitBreaker(failure_threshold=2, reset_timeout=600))
    orch.tool(FlakyTool(always=503), name="search_api")
    for _ in range(2):
        with pytest.raises(Exception, match="503"):
            asyncio.run(orch.call_tool("search_api"))
    state = orch.circuits["search_api"].state.value
    orch.close()
    return state


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_breaker_opened_in_one_process_stops_calls_in_another(backend, pg,
                                                                other_process) -> None:
    here = Orchestrator(store=pg, retry=RetryPolicy(max_attempts=1))
    tool = FlakyTool()
    here.tool(tool, name="search_api")
    assert asyncio.run(here.call_tool("search_api")) == "ok"
    opened = threading.Event()
    here.store.watch_circuits(lambda name, state, *_: state == "OPEN" and opened.set())
    said = []
    here.subscribe(lambda e: e.type.startswith("circuit.") and said.append(e))

    assert other_process.submit(_open_the_breaker, pg).result() == "OPEN"
    assert opened.wait(30), "the OPEN transition never arrived"
    assert here.circuits["search_api"].state is CircuitState.OPEN
    # Said here too, for the widgets and the log, but not saved again: no echo.
    assert [(e.type, e.name, e.previous) for e in said] == [
        ("circuit.opened", "search_api", "CLOSED")]
    assert here.store.query("SELECT count(*) FROM events WHERE type = 'circuit.opened'") == [
        (2,)]  # the other process's event and ours
    with pytest.raises(CircuitOpenError):
        asyncio.run(here.call_tool("search_api"))
    assert len(tool.calls) == 1  # the open breaker kept the call from the tool
    # A breaker this process had not made yet starts as the store says too.
    late = Orchestrator(store=pg)
    assert late.breaker("search_api").state is CircuitState.OPEN
    late.close()
    here.close()


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_breaker_closed_by_hand_elsewhere_closes_here(backend, pg) -> None:
    first, second = Orchestrator(store=pg), Orchestrator(store=pg)
    closed = threading.Event()
    second.store.watch_circuits(lambda name, state, *_: state == "CLOSED" and closed.set())
    for orch in (first, second):
        orch.breaker("openai:gpt").restore("OPEN", 3, orch.clock.now())
    first.breaker("openai:gpt").reset()  # circuit.closed, saved and announced
    assert closed.wait(30)
    assert second.circuits["openai:gpt"].state is CircuitState.CLOSED
    first.close()
    second.close()


def _write_a_run_and_a_pattern(url: str) -> str:
    orch = Orchestrator(store=url, retry=RetryPolicy(max_attempts=2, jitter=0.0,
                                                     initial_wait=0.0))
    orch.tool(FlakyTool(always=504), name="search_api", fallback="cached_search")
    orch.tool(lambda **kw: "cached", name="cached_search")
    assert asyncio.run(orch.call_tool("search_api")) == "cached"
    run = asyncio.run(orch.run("Add user authentication", workflow="full", budget=5))
    orch.close()
    return run.id


@pytest.mark.parametrize("backend", [POSTGRES])
def test_runs_and_patterns_written_by_one_process_are_seen_by_another(
        backend, pg, other_process) -> None:
    watching = Orchestrator(store=pg)  # open before the other writes: runs are read live
    run_id = other_process.submit(_write_a_run_and_a_pattern, pg).result()
    frame = watching.history()
    assert frame["run_id"].tolist() == [run_id]
    assert frame["status"].tolist() == ["COMPLETED"]
    run = watching.get_run(run_id)
    assert run.cost.spent > 0
    assert run.events[0].type == "run.started"
    watching.close()
    later = Orchestrator(store=pg)  # patterns are loaded when an Orchestrator starts
    assert [p.name for p in later.immune.patterns()] == ["search_api_timeout"]
    later.close()


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_dropped_connection_fails_one_statement_then_connects_again(backend, pg) -> None:
    import psycopg

    store = open_store(pg)
    store.save_run("r1", task="t", workflow=None, status="RUNNING", wall=1.0)
    [(pid,)] = store.query("SELECT pg_backend_pid()")
    with psycopg.connect(pg, autocommit=True) as admin:  # a server restart, as seen by us
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        store.save_run("r1", task="t", workflow=None, status="PAUSED", wall=2.0)
    store.save_run("r1", task="t", workflow=None, status="COMPLETED", wall=3.0)
    assert store.load_run("r1")["status"] == "COMPLETED"
    assert store.query("SELECT pg_backend_pid()") != [(pid,)]
    store.close()


@pytest.mark.parametrize("backend", [POSTGRES])
async def test_a_pattern_learned_in_one_orchestrator_is_known_at_once_in_another(
        backend, pg) -> None:
    def make() -> tuple[Orchestrator, FlakyTool]:
        orch = Orchestrator(store=pg, retry=RetryPolicy(max_attempts=2, jitter=0.0,
                                                        initial_wait=0.0))
        tool = FlakyTool(always=504)
        orch.tool(tool, name="search_api", fallback="cached_search")
        orch.tool(lambda **kw: "cached", name="cached_search")
        return orch, tool

    (learner, _), (other, its_tool) = make(), make()
    heard = threading.Event()
    # Learned, then saved again when the fallback cured it: wait for the cure.
    other.store.watch_patterns(
        lambda record: Pattern.from_record(record).known and heard.set())
    assert await learner.call_tool("search_api") == "cached"  # learns search_api_timeout
    assert heard.wait(30), "the pattern never arrived"
    [pattern] = other.immune.patterns()
    assert (pattern.name, pattern.fallback, pattern.known) == (
        "search_api_timeout", "cached_search", True)
    seen = []
    other.subscribe(lambda e: seen.append(e.type))
    # The other orchestrator never saw this failure, yet takes the cure at the first one.
    assert await other.call_tool("search_api") == "cached"
    assert len(its_tool.calls) == 1
    assert "pattern.applied" in seen
    assert "retry.scheduled" not in seen
    learner.close()
    other.close()


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_message_that_cannot_be_adopted_is_logged_and_the_next_one_heard(
        backend, pg, caplog) -> None:
    import psycopg

    store = open_store(pg)
    store.save_circuit("ready", "CLOSED", 0, None, 1.0)
    listening, heard = threading.Event(), threading.Event()

    def tell(name: str, *_: object) -> None:
        {"ready": listening, "good": heard}[name].set()

    store.watch_circuits(tell)
    assert listening.wait(30)  # stored breakers are read once LISTEN is on
    with psycopg.connect(pg, autocommit=True) as other:
        other.execute("SELECT pg_notify('taskorch_circuits', 'not json')")
        other.execute("SELECT pg_notify('taskorch_circuits', %s)", (
            '{"name": "good", "state": "OPEN", "failures": 3, "opened_wall": 1.0}',))
    assert heard.wait(30)
    store.close()
    assert "could not adopt taskorch_circuits not json" in caplog.text


# -- a breaker opened by hand (held) is shared like its transitions -----------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_breaker_held_open_by_hand_stays_held_after_a_restart(backend, tmp_path) -> None:
    with fresh_store(backend, tmp_path) as url:
        first = Orchestrator(store=url, clock=FakeClock(),
                             breaker=CircuitBreaker(reset_timeout=5))
        first.breaker("search_api").trip()
        first.close()
        clock = FakeClock()
        again = Orchestrator(store=url, clock=clock, breaker=CircuitBreaker(reset_timeout=5))
        assert again.store.load_circuits()["search_api"]["held"] is True
        breaker = again.breaker("search_api")
        clock.advance(3600)  # a restart does not turn a quarantine into a probe
        assert (breaker.state, breaker.held) == (CircuitState.OPEN, True)
        breaker.reset()
        again.close()
        third = Orchestrator(store=url)
        assert third.store.load_circuits()["search_api"]["held"] is False
        assert (third.breaker("search_api").state, third.breaker("search_api").held) == (
            CircuitState.CLOSED, False)
        third.close()


def _hold_then_release(url: str, release: bool) -> bool:
    """In the other process: the dashboard's Open (or its Reset) on `search_api`."""
    orch = Orchestrator(store=url)
    breaker = orch.breaker("search_api")
    breaker.reset() if release else breaker.trip()
    held = breaker.held
    orch.close()
    return held


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_breaker_held_open_in_one_process_is_held_in_another(backend, pg,
                                                               other_process) -> None:
    clock = FakeClock()
    here = Orchestrator(store=pg, clock=clock, breaker=CircuitBreaker(reset_timeout=5))
    breaker = here.breaker("search_api")
    heard: list[tuple[str, bool]] = []
    changed = threading.Event()

    def tell(name: str, state: str, failures: int, opened_wall: object, held: bool) -> None:
        heard.append((state, held))
        changed.set()

    here.store.watch_circuits(tell)
    assert other_process.submit(_hold_then_release, pg, False).result() is True
    while ("OPEN", True) not in heard:
        assert changed.wait(30), "the hold never arrived"
        changed.clear()
    assert (breaker.state, breaker.held) == (CircuitState.OPEN, True)
    clock.advance(3600)
    assert breaker.state is CircuitState.OPEN  # held: no probe from this process either
    assert other_process.submit(_hold_then_release, pg, True).result() is False
    while ("CLOSED", False) not in heard:
        assert changed.wait(30), "the reset never arrived"
        changed.clear()
    assert (breaker.state, breaker.held) == (CircuitState.CLOSED, False)
    here.close()


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_hold_on_a_breaker_already_open_here_is_said_here(backend, pg, monkeypatch) -> None:
    """Open here by its failures, then held open by hand elsewhere: the state does not
    change here, but the hold does, and this process's events say so (not saved again)."""
    first = Orchestrator(store=pg, breaker=CircuitBreaker(reset_timeout=600))
    second = Orchestrator(store=pg, breaker=CircuitBreaker(reset_timeout=600))
    for orch in (first, second):
        orch.breaker("search_api").restore("OPEN", 3, orch.clock.now())
    held = threading.Event()
    second.store.watch_circuits(lambda name, state, *rest: rest[-1] and held.set())
    said: list = []
    second.subscribe(lambda e: e.type.startswith("circuit.") and said.append(e))
    saved: list = []
    save = second.store.save_circuit
    monkeypatch.setattr(second.store, "save_circuit",
                        lambda *args, **kw: (saved.append(args), save(*args, **kw)))

    first.breaker("search_api").trip()  # the dashboard's Open, in the other Orchestrator
    assert held.wait(30), "the hold never arrived"
    breaker = second.circuits["search_api"]
    assert (breaker.state, breaker.held) == (CircuitState.OPEN, True)
    assert [(e.type, e.name, e.state, e.previous, e.reset_at) for e in said] == [
        ("circuit.opened", "search_api", "OPEN", "OPEN", None)]
    # Told once: the listener's reload of the stored breakers says nothing new.
    second._adopt_circuit("search_api", "OPEN", 3, None, True)
    assert len(said) == 1
    # Adopted, not saved (nor announced) again by the second: it is in its log only.
    assert saved == []
    second.store.flush()
    [(count,)] = first.store.query(
        "SELECT count(*) FROM events WHERE type = 'circuit.opened'")
    assert count == 2  # the trip, and its adoption in the second's log
    first.close()
    second.close()


# -- patterns updated by two processes at once: counts add ---------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_two_stores_recording_one_failure_at_once_add_their_counts(backend, tmp_path) -> None:
    """Two Orchestrators (two stores on one file or database, as two processes have) each
    record the same failure N times, interleaved: the stored pattern counts 2N."""
    n = 40
    failure = Failure("timeout", True, 504, message="timeout after 30 s")
    with fresh_store(backend, tmp_path) as url:
        first, second = Orchestrator(store=url), Orchestrator(store=url)
        start = threading.Barrier(2)

        def record(orch: Orchestrator) -> None:
            start.wait()
            for _ in range(n):
                orch.immune.analyze("search_api", failure, fallback=None)

        threads = [threading.Thread(target=record, args=(o,)) for o in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        [stored] = first.store.load_patterns()
        assert stored["occurrences"] == 2 * n
        # Each sees at least its own N, and the other's as far as it heard of them.
        for orch in (first, second):
            assert n <= orch.immune.patterns()[0].occurrences <= 2 * n
        first.close()
        second.close()
        later = Orchestrator(store=url)
        assert later.immune.patterns()[0].occurrences == 2 * n
        later.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cure_counted_in_one_store_and_a_failure_in_another_both_count(
        backend, tmp_path) -> None:
    failure = Failure("timeout", True, 504, message="timeout after 30 s")
    with fresh_store(backend, tmp_path) as url:
        first, second = Orchestrator(store=url), Orchestrator(store=url)
        mine = first.immune.analyze("search_api", failure, fallback="cached_search")
        theirs = second.immune.analyze("search_api", failure, fallback="cached_search")
        first.immune.applied(mine)
        first.immune.outcome(mine, recovered=True)  # saved: applied 1, recovered 1
        second.immune.analyze("search_api", failure, fallback="cached_search")
        [stored] = first.store.load_patterns()
        assert (stored["occurrences"], stored["applied"], stored["recovered"]) == (3, 1, 1)
        # What this process saw of the store came back with its own save.
        assert theirs.occurrences == 3
        first.close()
        second.close()
