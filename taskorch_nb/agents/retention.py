"""Where run workspaces live and how many are kept.

A run without an explicit workspace works in `<store folder>/workspaces/RUN_ID`
(`$TASKORCH_HOME/workspaces/RUN_ID` for the default store), so its files sit next
to the record of the run and outlive the process: `resume` needs them. Left alone
they pile up, so the Orchestrator prunes at start and `taskorch-nb gc` on demand:
the `keep` most recently active workspaces of finished runs stay, the rest go.
Never removed: the workspace of a run that may still need it (PAUSED, INTERRUPTED,
RUNNING, PENDING), anything whose name is not a run id (a folder a person put
there), and a workspace with no run in the store younger than an hour (a run
another process is creating right now).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from taskorch_nb.errors import ConfigurationError

#: Workspaces of finished runs kept by default (`TASKORCH_KEEP_WORKSPACES` overrides).
DEFAULT_KEEP = 50
KEEP_ENV = "TASKORCH_KEEP_WORKSPACES"
#: A folder with no run in the store is left alone this long (seconds since last change).
ORPHAN_GRACE = 3600.0
#: Statuses whose workspace is no longer needed.
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

RUN_ID = re.compile(r"^run-[0-9a-f]{12}$")


def workspaces_root(store_path: str | os.PathLike[str]) -> Path | None:
    """`<folder of the store>/workspaces`; None for an in-memory store; for a database
    server's URL, a folder of its own under the local `$TASKORCH_HOME/workspaces`, so
    neither store prunes the other's runs (which it does not know) as orphans."""
    text = os.fspath(store_path)
    if text == ":memory:":
        return None
    if "://" in text:
        from taskorch_nb.core.store import default_path

        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return default_path().parent / "workspaces" / f"db-{digest}"
    return Path(text).expanduser().absolute().parent / "workspaces"


def check_keep(keep: object, *, source: str = "keep") -> int:
    """A count of workspaces to keep: an integer >= 0, else `ConfigurationError`."""
    if isinstance(keep, str):
        try:
            keep = int(keep.strip())
        except ValueError:
            raise ConfigurationError(
                f"{source} must be a whole number of workspaces, got {keep!r}") from None
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise ConfigurationError(f"{source} must be an integer >= 0, got {keep!r}")
    return keep


def default_keep(environ: Mapping[str, str] | None = None) -> int:
    """`$TASKORCH_KEEP_WORKSPACES`, or `DEFAULT_KEEP`."""
    value = (os.environ if environ is None else environ).get(KEEP_ENV)
    return DEFAULT_KEEP if not value else check_keep(value, source=KEEP_ENV)


@dataclass
class Pruned:
    """What a prune did: removed, kept (newest first) and protected folders."""

    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    protected: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    """Folders that could not be removed, with the reason."""


def candidates(root: Path) -> list[Path]:
    """The run workspaces under `root` (folders named like a run id)."""
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []  # nothing kept there yet (a file in the way fails when a run needs it)
    return [Path(e.path) for e in entries
            if RUN_ID.match(e.name) and e.is_dir(follow_symlinks=False)]


def prune(root: Path, runs: Mapping[str, tuple[str, float]], keep: int, *,
          now: float | None = None) -> Pruned:
    """Remove the workspaces under `root` beyond the `keep` most recently active ones.

    `runs` maps run id -> (status, last update in wall seconds) for the folders' runs;
    `now` (default: the real time, as file times are, whatever clock a run used) is what
    the orphan grace counts from.
    """
    keep = check_keep(keep)
    now = time.time() if now is None else now
    result = Pruned()
    finished: list[tuple[float, Path]] = []
    for path in candidates(root):
        state = runs.get(path.name)
        try:
            changed = path.stat().st_mtime
        except FileNotFoundError:
            continue  # removed meanwhile (another process pruning)
        if state is None:
            if now - changed < ORPHAN_GRACE:
                result.protected.append(path)
                continue
            finished.append((changed, path))
        elif state[0] in FINISHED:
            finished.append((max(state[1], changed), path))
        else:
            result.protected.append(path)
    finished.sort(key=lambda item: item[0], reverse=True)
    result.kept = [path for _, path in finished[:keep]]
    for _, path in finished[keep:]:
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass  # another process got there first: the folder is gone either way
        except OSError as exc:
            result.failed.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        result.removed.append(path)
    return result
