"""`%%orchestrate`: run a task from a notebook cell with a live dashboard.

A blocking cell runs the task on a worker thread with its own event loop, so
the kernel's thread stays free to send widget updates (they arrive live) and to
receive an interrupt: Ctrl-C / "Interrupt kernel" cancels the run inside its
loop and waits for it to settle as CANCELLED, with its cost and events saved.
`--background` schedules the run on the kernel's loop and returns at once
(`await run` waits). Settings live in the `Orchestrate` configurable
(`%config Orchestrate.budget = 2.0`); the shell keeps one Orchestrator per
provider, model, store and clock setting, so changing them builds a new one and
switching back finds the old one with its circuits and patterns.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import CaselessStrEnum, Dict, Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from taskorch_nb.core.money import parse_usd
from taskorch_nb.engine.orchestrator import Orchestrator
from taskorch_nb.engine.run import Run, RunStatus
from taskorch_nb.errors import ConfigurationError, TaskorchError
from taskorch_nb.notebook.buttons import review_patterns
from taskorch_nb.notebook.display import StatusView, circuits_frame, frontend, show
from taskorch_nb.notebook.tasktext import expand_task, magic_hint
from taskorch_nb.notebook.widgets import Dashboard

SUBCOMMANDS = ("status", "circuits", "patterns", "history", "reset")


class Orchestrate(Configurable):
    """Settings of `%%orchestrate` (`%config Orchestrate` lists them)."""

    provider = Unicode("simulated", help="Model provider: simulated, openai, anthropic, auto.").tag(
        config=True
    )
    model = Unicode(None, allow_none=True, help="Model name (the provider's default if None).").tag(
        config=True
    )
    budget = Float(None, allow_none=True, help="Default USD budget of a run (None: $5).").tag(
        config=True
    )
    store = Unicode(
        None, allow_none=True, help="SQLite file for runs and patterns, or ':memory:'."
    ).tag(config=True)
    workflow = Unicode("full", help="Default workflow: full (four agents) or single.").tag(
        config=True
    )
    max_rounds = Int(3, help="Default build/QC rounds of the full workflow.").tag(config=True)
    dashboard = CaselessStrEnum(
        ["auto", "widget", "text", "none"],
        "auto",
        help="auto: widgets in a kernel, text elsewhere; widget; text; none.",
    ).tag(config=True)
    clock = CaselessStrEnum(
        ["real", "fake"], "real", help="fake: a FakeClock (waits pass at once, simulated "
        "calls take 0.4-1.6 s of fake time; for demos, CI)."
    ).tag(config=True)
    max_rate = Float(10.0, help="Dashboard refreshes per second at most.").tag(config=True)
    orchestrator = Unicode(
        None,
        allow_none=True,
        help="The name of a variable holding an Orchestrator of yours, to use instead of "
        "building one: %config Orchestrate.orchestrator = 'orch'.",
    ).tag(config=True)

    base_url = Unicode(
        None, allow_none=True,
        help="An OpenAI-compatible server, e.g. 'http://localhost:11434/v1' (None: "
        "$OPENAI_BASE_URL); with provider 'simulated' it means provider 'openai'.",
    ).tag(config=True)
    api_key = Unicode(None, allow_none=True, help="The provider's API key (None: from the "
                      "environment; a local server needs none).").tag(config=True)
    timeout = Float(None, allow_none=True, help="Seconds one model request may take "
                    "(None: 25).").tag(config=True)
    deadline = Float(None, allow_none=True, help="Seconds one model call may take, retries "
                     "included (None: 90).").tag(config=True)
    prices = Dict(help="Prices of models genai-prices does not know, USD per million tokens: "
                  "{'my-model': {'input': 3, 'output': 15}}.").tag(config=True)

    @validate("timeout", "deadline")
    def _check_seconds(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not value > 0:
            raise TraitError(f"Orchestrate.{proposal['trait'].name} must be a number of seconds "
                             f"> 0, got {value!r}")
        return value

    @validate("budget")
    def _check_budget(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None:
            try:
                parse_usd(value, "Orchestrate.budget")
            except ValueError as exc:
                raise TraitError(str(exc)) from None
        return value

    @validate("max_rounds")
    def _check_rounds(self, proposal: Any) -> Any:
        if proposal["value"] < 1:
            raise TraitError(f"Orchestrate.max_rounds must be >= 1, got {proposal['value']!r}")
        return proposal["value"]

    @validate("orchestrator")
    def _check_orchestrator(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not value.isidentifier():
            raise TraitError(
                f"Orchestrate.orchestrator is the *name* of your variable (a string), got {value!r}"
            )
        return value


def parse_budget(text: str) -> Decimal:
    """`--budget` as a USD amount (`parse_usd`), else `UsageError`."""
    try:
        return parse_usd(text, "--budget")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class Worker:
    """One run executed on a thread with its own event loop, cancellable from outside."""

    def __init__(self, run: Run, execute: Callable[[Run], Any]) -> None:
        self.run = run
        self._execute = execute
        self.done = threading.Event()
        self.cancel_requested = threading.Event()
        """Set once the kernel's thread asked the run to stop (an interrupt)."""
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="taskorch-run", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            task = self._task = loop.create_task(self._execute(self.run))
            if self.cancel_requested.is_set():
                # Asked to stop before `cancel()` could see the task. Queued after the task's
                # first step, so the run starts and records itself as CANCELLED.
                loop.call_soon(task.cancel)
            self._ready.set()
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass  # the run recorded itself as CANCELLED before re-raising
        except BaseException as exc:  # handed to the kernel's thread, raised there
            self.error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self.done.set()

    def wait(self, poll: float = 0.1) -> None:
        """Block until the run ends; short waits keep the thread interruptible."""
        idle = 0
        while not self.done.wait(poll):
            # An interrupt inside start() may come before the thread exists: then nothing
            # would ever set `done`. A thread that did start is alive within a poll or two.
            idle = 0 if self._thread.is_alive() else idle + 1
            if idle >= 10:
                return

    def cancel(self) -> None:
        """Cancel the run inside its loop (thread-safe, any number of times, in any state:
        before its task exists `_main` sees the request); `wait()` for it to settle."""
        self.cancel_requested.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not self.done.is_set():
            # RuntimeError: the loop closed between the check and the call, so the run ended
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)


def _check_output_and_background(args: Any) -> None:
    """`-o VAR` must name a variable; `--background` needs the kernel's running loop."""
    if args.output is not None and not args.output.isidentifier():
        raise UsageError(f"-o needs a variable name, got {args.output!r}")
    if args.background:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError("--background needs a running event loop (a Jupyter kernel); "
                             "run the cell without it here") from None


@magics_class
class OrchestrateMagics(Magics):
    """The `%orchestrate` / `%%orchestrate` magics and the shell's Orchestrator."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.settings = Orchestrate(parent=shell)
        shell.configurables.append(self.settings)
        self._orchs: dict[tuple[Any, ...], Orchestrator] = {}
        """Built on demand, one per (provider, model, store, clock) setting."""
        self.dashboard: Dashboard | None = None
        """The dashboard of the latest run (its final state stays readable)."""
        self.worker: Worker | None = None
        """The latest blocking run's worker."""
        self.last_run: Run | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- the orchestrator ----------------------------------------------------------

    def orchestrator(self, provider: str | None = None, model: str | None = None) -> Orchestrator:
        """The shell's Orchestrator for these settings (built on first use)."""
        own = self._own()
        if own is not None:
            for flag, wanted, has in (("--provider", provider, own.provider.name),
                                      ("--model", model, own.model)):
                if wanted is not None and wanted != has:
                    raise UsageError(f"{flag} {wanted}: Orchestrate.orchestrator is set and "
                                     f"uses {has!r}; change it there")
            return own
        s = self.settings
        chosen = provider or s.provider
        if s.base_url and provider is None and chosen == "simulated":
            chosen = "openai"  # a base URL is an OpenAI-compatible server
        key = (chosen, model or s.model, s.store, s.clock, s.base_url, s.api_key, s.timeout,
               s.deadline, repr(s.prices))
        orch = self._orchs.get(key)
        if orch is None:
            from taskorch_nb.core.clock import RealClock
            from taskorch_nb.llm.simulated import REALISTIC_LATENCY
            from taskorch_nb.testing import FakeClock

            try:
                orch = Orchestrator(key[0], key[1], s.budget, store=s.store,
                                    clock=FakeClock(epoch=time.time()) if s.clock == "fake"
                                    else RealClock(),
                                    latency=REALISTIC_LATENCY if s.clock == "fake" else 0.0,
                                    max_rounds=s.max_rounds, base_url=s.base_url,
                                    api_key=s.api_key, timeout=s.timeout, deadline=s.deadline,
                                    prices=dict(s.prices) or None)
            except TaskorchError as exc:
                raise UsageError(magic_hint(str(exc))) from None
            self._orchs[key] = orch
        return orch

    def _own(self) -> Orchestrator | None:
        name = self.settings.orchestrator
        if name is None:
            return None
        own = self.shell.user_ns.get(name)
        if not isinstance(own, Orchestrator):
            raise UsageError(f"Orchestrate.orchestrator names {name!r}, which is "
                             f"{'not defined' if own is None else type(own).__name__}, "
                             "not an Orchestrator")
        return own

    def close(self) -> None:
        """Release the Orchestrators this shell built (flushes their stores)."""
        orchs, self._orchs = list(self._orchs.values()), {}
        for orch in orchs:
            orch.close()

    # -- the magic -----------------------------------------------------------------

    @magic_arguments()
    @argument("command", nargs="?", help="line form only: " + " | ".join(SUBCOMMANDS))
    @argument("name", nargs="?", help="for `reset`: the breaker to reset (default: all)")
    @argument("--approve", metavar="NAME",
              help="for `patterns`: let a federated pattern's corrective prompt reach the model "
                   "(its name or signature; you read its text in `%%orchestrate patterns` first)")
    @argument("--budget", metavar="USD", help="the run's budget in USD (> 0)")
    @argument("--workflow", metavar="NAME", help="full (four agents) or single")
    @argument("--archetype", metavar="NAME",
              help="the agent of a single workflow: researcher, architect, builder, qc")
    @argument("--provider", metavar="NAME", help="simulated, openai, anthropic or auto")
    @argument("--model", metavar="NAME", help="the model to call")
    @argument("--max-rounds", metavar="N", type=int, help="build/QC rounds at most")
    @argument("--background", action="store_true",
              help="schedule on the kernel's loop and return at once (`await run` waits)")
    @argument("--no-dashboard", action="store_true", help="no live dashboard")
    @argument("-o", "--output", metavar="VAR", help="also bind the Run to VAR")
    @argument("--guard", action="store_true",
              help="run the cell's Python code under orch.guard(); its value is the report")
    @argument("--map", metavar="VAR", help="run the cell's template once per element of VAR "
              "(a list or Series: {item}) or VAR[COLUMN] of a DataFrame, as one batch; "
              "--budget is the batch's")
    @argument("--engine", metavar="NAME", help="with --map: local (default) or ray")
    @line_cell_magic
    def orchestrate(self, line: str, cell: str | None = None) -> Any:
        """Run the cell's text as a task for the agents, with a live dashboard.

        %%orchestrate [options]
        Add a {feature} module        <- the task; {name} comes from your variables

        The cell's value is the Run (status, output, cost, events_df(), ...).
        Blocking by default; interrupting the kernel cancels the run (CANCELLED).

        %%orchestrate --guard [--budget USD] [-o VAR]
        <your Python code>            <- its openai/anthropic calls run under orch.guard()

        %orchestrate status | circuits | patterns | history | reset [NAME]
        %orchestrate patterns --approve NAME   <- a federated text may now reach the model

        Settings: %config Orchestrate  (provider, model, budget, store, workflow,
        max_rounds, dashboard, clock, max_rate, orchestrator).
        """
        args = parse_argstring(self.orchestrate, line)
        if cell is None:
            return self._subcommand(args)
        if args.guard and (args.map is not None or args.engine is not None):
            raise UsageError("--guard runs the cell's code once; --map runs a task template per "
                             "item: choose one")
        if args.guard:
            from taskorch_nb.notebook.guardcell import run_guarded

            return run_guarded(self, args, cell)
        if args.approve is not None:
            raise UsageError("--approve goes with `%orchestrate patterns`, not with a task cell")
        if args.command is not None:
            raise UsageError(f"unexpected {args.command!r}: %%orchestrate takes options only; "
                             "the task is the cell's body")
        if args.map is not None or args.engine is not None:
            return self._map_cell(args, cell)
        return self._run_cell(args, cell)

    def _subcommand(self, args: Any) -> Any:
        command = args.command
        if command is None:
            raise UsageError("%orchestrate needs a command: " + " | ".join(SUBCOMMANDS)
                             + " (or use %%orchestrate with a task in the cell)")
        if command not in SUBCOMMANDS:
            raise UsageError(f"unknown command {command!r}; use one of: {', '.join(SUBCOMMANDS)}")
        if args.name is not None and command != "reset":
            raise UsageError(f"%orchestrate {command} takes no argument (got {args.name!r})")
        if args.approve is not None and command != "patterns":
            raise UsageError(f"--approve goes with `patterns`, not `{command}`")
        orch = self.orchestrator(args.provider, args.model)
        if args.approve is not None:
            try:
                pattern = orch.immune.approve(args.approve)
            except ConfigurationError as exc:
                raise UsageError(str(exc)) from None
            print(f"approved the corrective prompt of {pattern.name} ({pattern.signature})")
        if command == "status":
            return StatusView(orch.status())
        if command == "circuits":
            return circuits_frame({n: b.snapshot() for n, b in orch.circuits.items()})
        if command == "patterns":  # texts waiting for a person: Approve and Reject
            return review_patterns(orch) if orch.immune.pending() else orch.immune.patterns_df()
        if command == "history":
            return orch.history()
        return self._reset(orch, args.name)

    @staticmethod
    def _reset(orch: Orchestrator, name: str | None) -> None:
        if name is None:
            for breaker in orch.circuits.values():
                breaker.reset()
            print(f"reset {len(orch.circuits)} circuit(s): all CLOSED")
            return
        if name not in orch.circuits:
            known = ", ".join(sorted(orch.circuits)) or "none yet"
            raise UsageError(f"no circuit {name!r}; known: {known}")
        orch.circuits[name].reset()
        print(f"circuit {name} reset: {orch.circuits[name].state.value}")

    def _options(self, args: Any) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "workflow": args.workflow or s.workflow,
            "archetype": args.archetype,
            "max_rounds": s.max_rounds if args.max_rounds is None else args.max_rounds,
            "budget": parse_budget(args.budget) if args.budget is not None else s.budget,
        }
        if options["max_rounds"] < 1:
            raise UsageError(f"--max-rounds must be >= 1, got {options['max_rounds']}")
        if options["archetype"] is not None and args.workflow is None:
            options["workflow"] = "single"  # an archetype names the one agent of a single run
        return options

    def _run_cell(self, args: Any, cell: str) -> Run:
        if not cell.strip():
            raise UsageError("the cell is empty: write the task for the agents below the magic")
        options = self._options(args)
        _check_output_and_background(args)
        orch = self.orchestrator(args.provider, args.model)
        try:
            run = orch.runner.create(expand_task(cell.strip(), self.shell.user_ns), **options)
        except (TaskorchError, KeyError) as exc:
            raise UsageError(magic_hint(_one_line(exc))) from None
        self.last_run = run
        if args.output:
            self.shell.user_ns[args.output] = run
        mode = "none" if args.no_dashboard else frontend(self.shell, self.settings.dashboard)
        dashboard, unsubscribe = self._attach(orch, run, mode)
        if args.background:
            orch.runner.schedule(run)
            self._follow(orch, run, dashboard, unsubscribe, mode)
            return run
        try:
            self._block(orch, run)
        finally:  # a second interrupt too: the dashboard lets go of the bus
            self._finish(orch, dashboard, unsubscribe, mode)
        return run

    def _map_cell(self, args: Any, cell: str) -> Any:
        """`--map VAR`: the cell's template over VAR as one batch, with one live view."""
        import concurrent.futures

        from taskorch_nb.notebook.batchview import BatchView
        from taskorch_nb.notebook.mapping import block, tasks

        if args.map is None:
            raise UsageError("--engine goes with --map VAR (a batch); a single run is local")
        if not cell.strip():
            raise UsageError("the cell is empty: write the task template below the magic")
        _check_output_and_background(args)
        options = self._options(args)
        orch = self.orchestrator(args.provider, args.model)
        texts = tasks(cell, args.map, self.shell.user_ns)
        # Made off this thread's loop: a blocking cell must not schedule it on the kernel's.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            try:
                batch = pool.submit(orch.map, texts, engine=args.engine or "local",
                                    **options).result()
            except TaskorchError as exc:
                raise UsageError(_one_line(exc)) from None
        if args.output:
            self.shell.user_ns[args.output] = batch
        mode = "none" if args.no_dashboard else frontend(self.shell, self.settings.dashboard)
        view = BatchView(batch)
        if mode == "widget":
            show(view.widget)
            view.follow()
        if args.background:
            batch.schedule()
            return batch
        try:
            if block(batch):
                print(f"interrupted: batch {batch.id} {batch.status}", file=sys.stderr)
        finally:
            view.stop()
            if mode == "text":
                print(view.text())
        if batch.status["PAUSED"]:
            print(f"{batch.status['PAUSED']} run(s) PAUSED. Resume with: "
                  "await batch.resume(extra_budget=1.0)", file=sys.stderr)
        return batch

    # -- dashboards and execution ----------------------------------------------------

    def _attach(self, orch: Orchestrator, run: Run,
                mode: str) -> tuple[Dashboard | None, Callable[[], None]]:
        """Subscribe a dashboard (when one is shown) to the run's events and show it."""
        if mode == "none":
            return None, lambda: None
        orch.breaker(orch.model_key())  # the model's breaker gets a row before its first call
        dashboard = Dashboard(
            limit=run.guard.limit, clock=orch.clock, warn_below=run.guard.warn_below,
            circuits={name: b.snapshot() for name, b in sorted(orch.circuits.items())},
            max_rate=self.settings.max_rate,
        )
        self.dashboard = dashboard
        unsubscribe = dashboard.follow(orch, run)  # past a pause too, and with its buttons
        if mode == "widget":
            dashboard.display()
        return dashboard, unsubscribe

    def _block(self, orch: Orchestrator, run: Run) -> None:
        worker = self.worker = Worker(run, orch.runner.execute)
        try:
            # start() included: the run may emit (and the interrupt land) before it returns.
            worker.start()
            worker.wait()
        except KeyboardInterrupt:
            worker.cancel()
            worker.wait()  # a second interrupt leaves the run to its thread and raises
            print(f"interrupted: run {run.id} {run.status.value}", file=sys.stderr)
        if worker.error is not None:
            raise worker.error
        if run.status is RunStatus.PAUSED:
            print(resume_hint(run), file=sys.stderr)

    def _finish(self, orch: Orchestrator, dashboard: Dashboard | None,
                unsubscribe: Callable[[], None], mode: str) -> None:
        unsubscribe()
        orch.store.flush()
        if dashboard is not None:
            dashboard.close()
            if mode == "text":
                print(dashboard.text())

    def _follow(self, orch: Orchestrator, run: Run, dashboard: Dashboard | None,
                unsubscribe: Callable[[], None], mode: str) -> None:
        """Tidy up after a background run ends (it runs on the kernel's loop)."""

        async def follow() -> None:
            try:
                await run
            finally:
                self._finish(orch, dashboard, unsubscribe, mode)

        task = asyncio.get_running_loop().create_task(follow(), name=f"taskorch-{run.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext taskorch_nb`: register the magics (once per shell)."""
    if "OrchestrateMagics" not in ipython.magics_manager.registry:
        ipython.register_magics(OrchestrateMagics(ipython))


def unload_ipython_extension(ipython: Any) -> None:
    """Release the shell's Orchestrator (`%unload_ext taskorch_nb`)."""
    magics = ipython.magics_manager.registry.get("OrchestrateMagics")
    if magics is not None:
        magics.close()


def current_magics(shell: Any = None) -> OrchestrateMagics:
    """The shell's `OrchestrateMagics` (loads the extension when needed)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise RuntimeError("no IPython shell is running")
    load_ipython_extension(shell)
    return shell.magics_manager.registry["OrchestrateMagics"]


def current_orchestrator(shell: Any = None) -> Orchestrator:
    """The Orchestrator `%%orchestrate` uses in this shell (register tools on it)."""
    return current_magics(shell).orchestrator()


def resume_hint(run: Run) -> str:
    """One line for a paused run: why, and the call that continues it."""
    more = "extra_budget=1.0" if "budget" in (run.error or "") else ""
    return f"PAUSED: {run.error}. Resume with: await run.resume({more})"
