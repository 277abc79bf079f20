"""`%%orchestrate --map VAR`: the cell's task template over a list or a DataFrame column.

`VAR` names a list, tuple or pandas Series (each element is `{item}` in the template),
or `VAR[COLUMN]` a DataFrame column (`{item}` is the column's value, and every column of
that row is there by name too). The other `{name}`s come from the notebook's variables.
The tasks run as one batch under the cell's `--budget`, with one live `BatchView`.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

from taskorch_nb.engine.runner import interpolate
from taskorch_nb.errors import TaskorchError

_TARGET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(['\"]?)([^\]'\"]+)\2\])?$")


def items(spec: str, namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The names each task is filled from: `{"item": value}` (plus the row's columns)."""
    match = _TARGET.match(spec.strip())
    if match is None:
        raise UsageError(f"--map needs a variable (a list or Series) or VAR[COLUMN] of a "
                         f"DataFrame, got {spec!r}")
    name, _, column = match.groups()
    if name not in namespace:
        raise UsageError(f"--map {spec}: no variable {name!r} in the notebook")
    value = namespace[name]
    if column is not None:
        columns = getattr(value, "columns", None)
        if columns is None:
            raise UsageError(f"--map {spec}: {name} is a {type(value).__name__}, not a "
                             "DataFrame; [COLUMN] picks a DataFrame's column")
        if column not in columns:
            raise UsageError(f"--map {spec}: {name} has no column {column!r}; it has: "
                             + ", ".join(map(str, columns)))
        rows = value.to_dict("records")
        found = [{**{str(k): v for k, v in row.items()}, "item": row[column]} for row in rows]
    elif hasattr(value, "columns"):
        raise UsageError(f"--map {spec}: {name} is a DataFrame: name its column, e.g. "
                         f"--map {name}[{next(iter(value.columns), 'COLUMN')}]")
    elif isinstance(value, list | tuple) or type(value).__name__ == "Series":
        found = [{"item": v} for v in list(value)]
    else:
        raise UsageError(f"--map {spec}: {name} is a {type(value).__name__}; give a list, "
                         "tuple, Series or VAR[COLUMN] of a DataFrame")
    if not found:
        raise UsageError(f"--map {spec}: {name} is empty: nothing to run")
    return found


def tasks(template: str, spec: str, namespace: Mapping[str, Any]) -> list[str]:
    """The cell's template filled once per element (a missing `{name}` is a UsageError)."""
    text = template.strip()
    try:
        return [interpolate(text, {**namespace, **names}) for names in items(spec, namespace)]
    except TaskorchError as exc:
        raise UsageError(str(exc)) from None


def block(batch: Any, poll: float = 0.1) -> bool:
    """Run `batch` to its end on a worker thread with its own loop, so the kernel's thread
    stays free for widget updates and Ctrl-C; an interrupt cancels the batch (its running
    runs end CANCELLED) and waits for it to settle. True if it was interrupted."""
    done = threading.Event()
    failed: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(batch.wait())
        except asyncio.CancelledError:
            pass  # cancelled on request: its runs recorded themselves
        except BaseException as exc:  # handed to the kernel's thread, raised there
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=main, name="taskorch-batch", daemon=True).start()
    interrupted = False
    try:
        while not done.wait(poll):
            pass
    except KeyboardInterrupt:
        interrupted = True
        while not done.wait(poll):
            batch.cancel()  # again each poll: the first may come before its task exists
    if failed:
        raise failed[0]
    return interrupted


__all__ = ["block", "items", "tasks"]
