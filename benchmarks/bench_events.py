"""The per-event cost of the write path: make and emit, record, encode, insert, decode.

Run from the repo root: .venv/bin/python benchmarks/bench_events.py [--rounds 5] [--pg URL]

The events are the 22 of one real run (`single` workflow, researcher archetype, the
simulated provider), taken from an orchestrator's bus. Each figure is the best of
`--rounds` timings, in microseconds per event and per run (22 events). The baseline
of each step is the code this release replaced, kept below (`old_*`), measured in
the same process on the same events:

- emit + record: `EventBus.emit` stamping and delivering to the orchestrator's own
  subscribers (the store's `record`, breaker persistence, the runner's routing, the
  log alerts), without the insert (the pending batch is dropped between rounds);
- encode: one event to its `record` column text;
- encode + insert: a loop tick's one transaction of 100 runs' events into a SQLite
  file (WAL), as the group commit writes at scale; and a lone run's 22 rows in one
  statement, the encoding aside;
- decode: a `record` back to an event, as `Store.events()` does.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskorch_nb import Orchestrator
from taskorch_nb.core import store as store_module
from taskorch_nb.core.eventcodec import decode, encode, encode_dict
from taskorch_nb.core.events import (
    Event,
    EventBus,
    Notice,
    current_actor,
    current_run_id,
    event_from_record,
)
from taskorch_nb.core.pgstore import PgStore, connect
from taskorch_nb.core.store import Store, _insert_sql

# -- the code this release replaced (the baseline) ------------------------------------


#: The release before wrote every event in the dict form, which the codec still writes
#: for classes it has no layout of.
old_encode = encode_dict


_OLD_MONEY = ("amount", "spent", "reserved", "limit", "remaining", "cost")


def old_decode(text: str) -> Event:
    record = json.loads(text)
    for key in _OLD_MONEY:
        if isinstance(record.get(key), str):
            record[key] = Decimal(record[key])
    return event_from_record(record)


class OldBus(EventBus):
    """`EventBus.emit` as it was: every subscriber gets every event."""

    def __init__(self, clock: Any, subscribers: tuple[Callable[[Event], None], ...]) -> None:
        super().__init__(clock)
        self.everyone = subscribers

    def emit(self, event: Event) -> Event:
        clock = self.clock
        event.ts = clock.now()
        event.wall = clock.wall()
        event.seq = next(self._seq)
        if event.run_id is None:
            event.run_id = current_run_id.get()
        actor = current_actor.get()
        if actor is not None and event.actor is None:
            event.actor = actor.name
            if event.type == actor.until:
                current_actor.set(None)
        failures = None
        for fn in self.everyone:
            try:
                fn(event)
            except Exception as exc:
                failures = failures or []
                failures.append((fn, exc))
        if failures and event.type != "subscriber.failed":
            for _fn, exc in failures:
                self.emit(Notice(type="subscriber.failed", level="error", message=str(exc)))
        return event


def old_record(store: Store) -> Callable[[Event], None]:
    held_var, is_durable = store_module._held, store_module.is_durable

    def record(event: Event) -> None:
        held = held_var.get()
        if held is not None and held.store is store and held.take(event):
            return
        store._pending.append(event)
        if is_durable(event.type):
            store._commit_soon()
        elif store._timer is None:
            store._arm()

    return record


#: Runs whose events one loop tick commits together (group commit at scale).
TICK_RUNS = 100

# -- measuring ------------------------------------------------------------------------


def best(old: Callable[[], Any], new: Callable[[], Any], rounds: int,
         number: int) -> tuple[float, float]:
    """Best seconds per call of `old` and of `new`, timed alternately (`rounds` timings
    of `number` calls each), so a busy neighbour slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, out in ((old, times[0]), (new, times[1])):
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            out.append((time.perf_counter() - start) / number)
    return min(times[0]), min(times[1])


async def one_run() -> list[Event]:
    orch = Orchestrator(store=":memory:")
    events: list[Event] = []
    orch.subscribe(events.append)
    run = await orch.run("Summarise topic 1", workflow="single", archetype="researcher")
    assert run.status == "COMPLETED", run.error
    await orch.aclose()
    return events


def fresh(events: list[Event]) -> list[Event]:
    """Unstamped copies, as code makes them before `emit`."""
    return [dataclasses.replace(e, ts=0.0, wall=0.0, seq=0) for e in events]


async def emit_record(events: list[Event], rounds: int) -> tuple[float, float]:
    """Seconds per run: the old bus with the old record, the orchestrator's bus."""
    orch = Orchestrator(store=":memory:")
    store = orch.store
    store.flush_interval = 3600.0  # the timer stays armed: no flush inside a timing
    old = OldBus(orch.clock, tuple(old_record(store) if fn == store.record else fn
                                   for fn, _ in orch.bus._entries))
    batches = [fresh(events) for _ in range(200)]

    def go(bus: EventBus) -> Callable[[], None]:
        it = iter(batches * 1000)

        def once() -> None:
            emit = bus.emit
            for event in next(it):
                emit(event)
            store._pending.clear()
        return once

    # Inside the loop, as in a run: a durable event schedules the tick's commit, which
    # runs only when this coroutine yields (never, inside a timing).
    old_s, new_s = best(go(old), go(orch.bus), rounds, 1000)
    store._ticking.clear()
    await orch.aclose()
    return old_s, new_s


def insert(events: list[Event], rounds: int, folder: str,
           url: str | None = None) -> dict[str, float]:
    """Seconds per row of a loop tick's transaction of `TICK_RUNS` runs' events, the
    encoding included: the old encoder and one `executemany` (the old tick commit)
    against `Store._write_events` (the new encoder; statements of 64 rows, or COPY on
    PostgreSQL); and of a lone run's 22 rows in one statement (its own transaction),
    the encoding aside: a multi-row INSERT before, `_insert_events` now."""
    tick = events * TICK_RUNS
    if url is None:
        stores = {name: Store(os.path.join(folder, f"{name}.db")) for name in ("old", "new")}
    else:  # one schema each, dropped afterwards
        schemas = {name: f"bench_events_{name}_{os.getpid()}" for name in ("old", "new")}
        with connect(url) as admin:
            for schema in schemas.values():
                admin.execute(f'CREATE SCHEMA "{schema}"')
        stores = {name: PgStore(f"{url}?options={quote(f'-csearch_path={schema}')}")
                  for name, schema in schemas.items()}
    old_db = stores["old"]._db

    def old_tick() -> None:
        rows = [(e.run_id, e.seq, e.type, e.ts, e.wall, old_encode(e)) for e in tick]
        old_db.execute("BEGIN")
        old_db.executemany(_insert_sql(1), rows)
        old_db.execute("COMMIT")

    def new_tick() -> None:
        stores["new"]._write_events(tick, runs=[], ops=[("SELECT 1", ())])  # a tick commit

    ticks = best(old_tick, new_tick, rounds, 10)
    flat = {name: [v for e in events for v in (e.run_id, e.seq, e.type, e.ts, e.wall, enc(e))]
            for name, enc in (("old", old_encode), ("new", encode))}
    old_db, sql = stores["old"]._db, _insert_sql(len(events))
    runs = best(lambda: old_db.execute(sql, flat["old"]),
                lambda: stores["new"]._insert_events(flat["new"], len(events)), rounds, 200)
    out = {"old tick": ticks[0] / len(tick), "new tick": ticks[1] / len(tick),
           "old run": runs[0] / len(events), "new run": runs[1] / len(events)}
    for store in stores.values():
        store.close()
    if url is not None:
        with connect(url) as admin:
            for schema in schemas.values():
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg", metavar="URL", help="also insert into this PostgreSQL "
                        "(in two schemas made and dropped here), e.g. $TASKORCH_TEST_PG_URL")
    args = parser.parse_args()
    events = asyncio.run(one_run())
    n = len(events)
    print(f"{n} events per run; load average {os.getloadavg()[0]:.2f}")
    rows = []

    old_e, new_e = asyncio.run(emit_record(events, args.rounds))
    rows.append(("emit + record", old_e, new_e))
    rows.append(("encode", *best(lambda: [old_encode(e) for e in events],
                                 lambda: [encode(e) for e in events], args.rounds, 2000)))
    with tempfile.TemporaryDirectory() as folder:
        ins = insert(events, args.rounds, folder)
    rows.append((f"encode + insert, tick of {TICK_RUNS} runs", ins["old tick"] * n,
                 ins["new tick"] * n))
    rows.append(("insert alone, 1 run = 1 statement", ins["old run"] * n, ins["new run"] * n))
    if args.pg:
        ins = insert(events, args.rounds, "", args.pg)
        rows.append((f"PostgreSQL: tick of {TICK_RUNS} runs", ins["old tick"] * n,
                     ins["new tick"] * n))
        rows.append(("PostgreSQL: 1 run = 1 statement", ins["old run"] * n, ins["new run"] * n))
    old_rows = [old_encode(e) for e in events]
    new_rows = [(e.run_id, e.seq, e.type, e.ts, e.wall, encode(e)) for e in events]
    assert [old_decode(r) for r in old_rows] == [decode(r, lambda _: None) for r in new_rows]
    rows.append(("decode", *best(lambda: [old_decode(r) for r in old_rows],
                                 lambda: [decode(r, lambda _: None) for r in new_rows],
                                 args.rounds, 1000)))
    print(f"{'step':32} {'before us/event':>16} {'after':>8} {'before us/run':>14} {'after':>8}")
    for name, before, after in rows:
        print(f"{name:32} {before / n * 1e6:16.2f} {after / n * 1e6:8.2f} "
              f"{before * 1e6:14.1f} {after * 1e6:8.1f}")
    sizes = (sum(map(len, old_rows)) / n, sum(len(r[-1]) for r in new_rows) / n)
    print(f"record size, bytes per event: before {sizes[0]:.0f}, after {sizes[1]:.0f}")


if __name__ == "__main__":
    main()
