"""What may reach sandboxed code and what it may touch: the escapes it must not
have, the environment it gets, the directories it may write.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from taskorch_nb.core.store import default_path
from taskorch_nb.errors import ConfigurationError, SandboxError
from taskorch_nb.sandbox.bubblewrap import interpreter_paths

__all__ = ["ESCAPES", "checked_env", "inside", "secret_dirs", "secrets_under", "writable_dir"]

#: The ways out a sandbox must close (issue 14), by the name `Sandbox.uncontained` uses.
ESCAPES: dict[str, str] = {
    "parent_environ": "the parent's environment via /proc/<pid>/environ (API keys)",
    "system_secrets": "system files such as /etc/shadow",
    "taskorch_store": "the taskorch store and the home directory",
    "write_outside": "writes outside the workspace",
    "network": "the network (127.0.0.1 included)",
    "setsid_child": "a setsid child outliving the run",
    "orphan_after_kill": "processes outliving a kill -9 of the caller",
    "fork_bomb": "the number of processes (a fork bomb)",
}

#: Names of variables that carry secrets: never passed in, even when asked.
_SECRET_NAME = re.compile(
    r"API_?KEY|TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE_KEY|AUTHORIZATION|_AUTH$", re.I)


def checked_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` as given, or a ConfigurationError for a non-variable or a secret's name."""
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name or "=" in name:
            raise ConfigurationError(f"sandbox env: {name!r}={value!r} is not a variable")
        if _SECRET_NAME.search(name):
            raise ConfigurationError(
                f"sandbox env: {name!r} looks like a secret; generated code never gets one")
    return dict(env)


def secret_dirs() -> list[str]:
    """The user's home and TASKORCH_HOME (where the store lives), as real paths."""
    return [os.path.realpath(os.path.expanduser("~")), os.path.realpath(default_path().parent)]


def writable_dir(path: str | os.PathLike[str]) -> Path:
    """A directory the code may write: it exists, and holds nothing of ours."""
    real = Path(os.path.realpath(path))
    if not real.is_dir():
        raise SandboxError(str(path), "not a directory")
    for secret in ["/", *secret_dirs(), *interpreter_paths(sys.executable)]:
        if inside(secret, str(real)):
            raise SandboxError(str(path), f"it contains {secret}, which the code may not write")
    return real


def secrets_under(readable: list[str]) -> list[str]:
    """The home or TASKORCH_HOME directories inside a directory bound read-only."""
    return [s for s in secret_dirs() if any(inside(s, r) and s != r for r in readable)]


def inside(path: str, parent: str) -> bool:
    """`path` is `parent` or below it (both real, absolute paths)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")
