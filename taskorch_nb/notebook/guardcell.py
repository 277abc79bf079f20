"""`%%orchestrate --guard`: the cell's own Python code under `orch.guard()`, live.

The cell is compiled (top-level `await` allowed) and run on a worker thread started
inside the guard, so its model calls are guarded and the dashboard's widgets update
while the cell blocks; async code gets the thread's own event loop. An interrupt
(Ctrl-C, "Interrupt kernel") stops the guard: the agent's next model request is
refused and the cell ends with the report. The cell's value is the guard's report;
`-o VAR` binds the `Guard` itself (`VAR.events_df()`, `VAR.add_budget(1)`).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
import threading
from typing import Any

from IPython.core.error import UsageError

from taskorch_nb.errors import TaskorchError
from taskorch_nb.guard import Guard, GuardReport
from taskorch_nb.notebook.controls import GuardControls
from taskorch_nb.notebook.display import frontend, show
from taskorch_nb.notebook.widgets import Dashboard


def _compile(cell: str) -> Any:
    try:
        return compile(cell, "<%%orchestrate --guard>", "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        raise UsageError(f"the cell is not valid Python: {exc.msg} (line {exc.lineno})") from None


class _Cell:
    """The cell's code on a thread of its own (async code on that thread's loop)."""

    def __init__(self, code: Any, namespace: dict[str, Any]) -> None:
        self.code = code
        self.namespace = namespace
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name="taskorch-guard-cell",
                                       daemon=True)

    def _main(self) -> None:
        try:
            result = eval(self.code, self.namespace)  # the user's own cell, as the kernel runs it
            if inspect.iscoroutine(result):
                asyncio.run(result)
        except BaseException as exc:  # raised again on the kernel's thread
            self.error = exc
        finally:
            self.done.set()

    def wait(self, poll: float = 0.1) -> None:
        while not self.done.wait(poll):
            pass


def run_guarded(magics: Any, args: Any, cell: str) -> GuardReport:
    """Run the cell under a guard of the shell's orchestrator; return the guard's report."""
    if not cell.strip():
        raise UsageError("the cell is empty: write the Python code to guard below the magic")
    if args.output is not None and not args.output.isidentifier():
        raise UsageError(f"-o needs a variable name, got {args.output!r}")
    if args.background:
        raise UsageError("--guard runs the cell's code now: --background is for task cells")
    code = _compile(cell)
    orch = magics.orchestrator(args.provider, args.model)
    budget = args.budget if args.budget is not None else magics.settings.budget
    try:
        guard: Guard = orch.guard(budget, name="cell")
    except TaskorchError as exc:
        raise UsageError(" ".join(str(exc).split())) from None
    if args.output:
        magics.shell.user_ns[args.output] = guard
    magics.last_guard = guard
    mode = "none" if args.no_dashboard else frontend(magics.shell, magics.settings.dashboard)
    dashboard = None
    unsubscribe = lambda: None  # noqa: E731
    runner = _Cell(code, magics.shell.user_ns)
    if mode != "none":  # subscribed first: the dashboard sees the guard start
        dashboard = Dashboard(limit=guard.budget.limit, clock=orch.clock, phases=(),
                              warn_below=guard.budget.warn_below,
                              circuits={n: b.snapshot() for n, b in orch.circuits.items()},
                              max_rate=magics.settings.max_rate)
        magics.dashboard = dashboard
        dashboard.bind(GuardControls(orch, guard))  # Stop and "add $" act on the guard
        feed, run_id = dashboard.subscriber, guard.run_id

        def subscriber(event: Any) -> None:
            if event.run_id == run_id:
                feed(event)

        unsubscribe = orch.subscribe(subscriber)
        if mode == "widget":
            show(dashboard.widget)
    try:
        with guard:
            runner.thread.start()  # inside the block: the thread sees the guard
            try:
                runner.wait()
            except KeyboardInterrupt:
                guard.stop("interrupted")
                print("interrupted: the guard refuses the agent's next model call",
                      file=sys.stderr)
                runner.wait()
    finally:
        unsubscribe()
    orch.store.flush()
    if dashboard is not None:
        if dashboard.controls is not None:
            dashboard.controls.feed = dashboard.subscriber  # a later click's refusal shows
        dashboard.close()
        dashboard.redraw()  # the guard is closed: its buttons go
        if mode == "text":
            print(dashboard.text())
    if runner.error is not None and guard.stopped is None:
        raise runner.error
    if guard.stopped is not None:
        print(f"stopped: {guard.stopped}", file=sys.stderr)
    return guard.report()


__all__ = ["run_guarded"]
