"""The jail every piece of generated code runs in.

    from taskorch_nb.sandbox import Sandbox

    box = Sandbox(workspace, timeout=60, memory_mb=1024)
    result = await box.run([sys.executable, "-m", "pytest", "-q"])
    box.engine        # "bubblewrap" (Linux) or "rlimits" (the fallback)
    box.uncontained   # the escapes this sandbox leaves open here (see ESCAPES)

docs/security.md has the threat model and what each engine contains.
"""

from taskorch_nb.sandbox.bubblewrap import JailProbe, bwrap_candidates
from taskorch_nb.sandbox.jail import (
    ESCAPES,
    MODES,
    Sandbox,
    SandboxResult,
    SandboxWarning,
    jail_status,
    sandbox_mode,
)
from taskorch_nb.sandbox.limits import Limits

__all__ = ["ESCAPES", "MODES", "JailProbe", "Limits", "Sandbox", "SandboxResult",
           "SandboxWarning", "bwrap_candidates", "jail_status", "sandbox_mode"]
