"""`%%orchestrate --guard`: the cell's own Python code under `orch.guard()`, live.

The cell is compiled (top-level `await` allowed) and run on a worker thread started
inside the guard, so its model calls are guarded and the dashboard's widgets update
while the cell blocks; async code gets the thread's own event loop. An interrupt
(Ctrl-C, "Interrupt kernel") stops the guard: the agent's next model request is
refused and the cell ends with the report. The cell's value is the guard's report;
`-o VAR` binds the `Guard` itself (`VAR.events_df()`, `VAR.add_budget(1)`).

The dashboard's Stop and "add $X" act on the guard. A kernel handles no click while a
cell blocks its main thread, so on ipykernel 7+ the cell asks its kernel for a subshell
(JEP 91, over the control channel) and routes those buttons' messages there while it
runs; elsewhere (older kernels) the interrupt is the way to stop.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import queue
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


def _ask(client: Any, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """A control request to the kernel and its reply's content."""
    msg = client.session.msg(msg_type, content)
    client.control_channel.send(msg)
    while True:  # the reply to this request (the channel is this client's own)
        reply = client.control_channel.get_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


class _ClickRoute:
    """The Stop / "add $" buttons' messages, handled on a kernel subshell while the cell
    blocks the main thread (ipykernel >= 7; a no-op elsewhere, including outside a kernel)."""

    def __init__(self) -> None:
        self.client: Any = None
        self.subshell: str | None = None
        self.comms: list[Any] = []

    def open(self, widgets: list[Any]) -> bool:
        try:
            from ipykernel.connect import get_connection_file
            from ipykernel.kernelbase import Kernel
            from jupyter_client import BlockingKernelClient
        except ImportError:
            return False
        if not Kernel.initialized() or not getattr(Kernel.instance(),
                                                   "_supports_kernel_subshells", False):
            return False
        client = BlockingKernelClient()
        client.load_connection_file(get_connection_file())
        client.start_channels(shell=False, iopub=False, stdin=False, hb=False, control=True)
        self.client = client
        reply = _ask(client, "create_subshell_request", {})
        if reply.get("status") != "ok":
            self.close()
            return False
        subshell = self.subshell = reply["subshell_id"]
        for widget in widgets:
            comm = getattr(widget, "comm", None)
            if comm is not None and hasattr(comm, "_reply_subshell_for"):
                comm._reply_subshell_for = lambda _data, _default: subshell
                self.comms.append(comm)
        return True

    def close(self) -> None:
        for comm in self.comms:
            with contextlib.suppress(AttributeError):
                del comm._reply_subshell_for  # the class's routing again
        self.comms = []
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if self.subshell is not None:
                _ask(client, "delete_subshell_request", {"subshell_id": self.subshell})
        finally:
            self.subshell = None
            client.stop_channels()


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
    route = _ClickRoute()
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
            resume = dashboard.gauge._resume
            try:
                route.open([dashboard._stop.button, resume.button, resume.amount])
            except (OSError, RuntimeError, queue.Empty) as exc:  # the cell runs regardless
                route.close()
                print(f"the dashboard's buttons answer once the cell ends ({exc!r}); "
                      "interrupt the kernel to stop the agent sooner", file=sys.stderr)
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
        route.close()
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
