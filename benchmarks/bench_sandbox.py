"""What the jail costs: a `python -c pass` and a whole QC round, jailed or not.

Baselines, measured in the same run and interleaved with the sandboxed runs (so
load on the machine hits every path alike):

- a plain `asyncio.create_subprocess_exec` of the same command (what QC did
  before the sandbox: no jail, no supervisor);
- for the QC round, pytest in a plain subprocess with QC's own arguments.

The sandboxed paths: the `rlimits` fallback (a supervisor process, the limits)
and the `bubblewrap` jail (namespaces, mounts, a launcher inside).

    .venv/bin/python benchmarks/bench_sandbox.py [--rounds N] [--qc-rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from taskorch_nb.agents.audit import timed_audit
from taskorch_nb.agents.qc import run_qc
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.sandbox import Sandbox, jail_status

CALC = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


async def plain(argv: list[str], cwd: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
             "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out


async def unjailed_qc(pytest: list[str], root: Path) -> None:
    """QC as it was before the sandbox: pytest in a plain subprocess, the audit beside it."""
    await asyncio.gather(plain(pytest, root), timed_audit(root, 60))


async def timed(paths: dict[str, Callable[[], Awaitable[object]]], rounds: int
                ) -> dict[str, list[float]]:
    """Seconds per call of each path, the paths interleaved round by round."""
    for call in paths.values():  # warm: caches, the jail probe, the pids cgroup check
        await call()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            started = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - started)
    return times


def table(title: str, times: dict[str, list[float]], baseline: str) -> None:
    base = statistics.median(times[baseline])
    print(f"\n{title}\n")
    print("| path | median ms | min ms | vs baseline | added ms |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.1f} | {min(values) * 1000:.1f} | "
              f"{median / base:.2f}x | {(median - base) * 1000:+.1f} |")


async def main(rounds: int, qc_rounds: int) -> None:
    probe = jail_status()
    if not probe.ok:
        sys.exit(f"no jail here: {probe.reason}")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.write("calc.py", CALC)
        ws.write("tests/test_calc.py", TESTS)
        scratch = Path(tmp) / "basetemp"
        scratch.mkdir()
        jail = Sandbox(ws.root, timeout=60, memory_mb=1024, mode="require", writable=[scratch],
                       env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        fallback = Sandbox(ws.root, timeout=60, memory_mb=1024, mode="off", writable=[scratch],
                           env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        print(f"bwrap: {probe.bwrap}; pids limit: {jail.process_limit}; "
              f"python {sys.version.split()[0]}")

        argv = [sys.executable, "-c", "pass"]
        bare = [sys.executable, "-I", "-S", "-c", "pass"]
        table("`python -c pass`", await timed({
            "plain subprocess (baseline)": lambda: plain(argv, ws.root),
            "plain `python -I -S -c pass` (what the launcher adds)": lambda: plain(bare, ws.root),
            "Sandbox rlimits (fallback)": lambda: fallback.run(argv),
            "Sandbox bubblewrap (jail)": lambda: jail.run(argv),
        }, rounds), "plain subprocess (baseline)")

        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "-p", "pytest_asyncio.plugin", "--rootdir", str(ws.root),
                  "--basetemp", str(Path(tmp) / "basetemp")]
        table("pytest on 1 test, the same command", await timed({
            "plain subprocess (baseline)": lambda: plain(pytest, ws.root),
            "Sandbox rlimits (fallback)": lambda: fallback.run(pytest),
            "Sandbox bubblewrap (jail)": lambda: jail.run(pytest),
        }, qc_rounds), "plain subprocess (baseline)")
        table("QC round: pytest on 1 test + the security audit (ruff)", await timed({
            "pytest + audit, plain subprocess (baseline)": lambda: unjailed_qc(pytest, ws.root),
            "run_qc, sandbox off (rlimits)": lambda: run_qc(ws, timeout=60, sandbox="off"),
            "run_qc, jail (bubblewrap)": lambda: run_qc(ws, timeout=60, sandbox="require"),
        }, qc_rounds), "pytest + audit, plain subprocess (baseline)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--qc-rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.qc_rounds))
