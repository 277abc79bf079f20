"""The exceptions taskorch_nb raises, each with structured fields.

    TaskorchError
    ├── ConfigurationError (ValueError)      bad settings, caught when something is built
    │   ├── UnknownToolError                 a tool name nobody registered
    │   ├── RunnerUnavailableError           QC's pytest is missing or broken
    │   └── SandboxUnavailableError          no jail here, and the settings require one
    ├── ToolArgumentsError (TypeError)       arguments that do not fit a tool's signature
    ├── CircuitOpenError                     a breaker refused the call
    ├── BudgetExceededError                  the budget guard refused a reservation
    ├── RetryError                           retries gave up without an underlying error
    ├── WorkflowError                        a run or workflow cannot go on
    │   └── SandboxError (PermissionError)   a path tried to leave the workspace
    ├── ProviderError                        a model provider failed
    │   ├── ProviderUnavailableError         unreachable after retries, or breaker open
    │   ├── ProviderTimeoutError (TimeoutError)
    │   ├── RateLimitError                   429, with retry_after
    │   ├── ProviderResponseError            malformed or unusable output
    │   └── CapabilityError                  the server refused the request's shape
    │       └── ContextWindowError           the conversation cannot fit the window
    └── HubError                             the federation hub answered with an error
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class TaskorchError(Exception):
    """Root of every error taskorch_nb raises on purpose."""


class ConfigurationError(TaskorchError, ValueError):
    """A setting is wrong; the message names the fix."""


class UnknownToolError(ConfigurationError):
    """A tool name that is not registered; `known` lists the registered ones."""

    def __init__(self, name: str, known: list[str], *, referenced_by: str | None = None) -> None:
        self.name = name
        self.known = sorted(known)
        self.referenced_by = referenced_by
        where = f" (fallback of {referenced_by!r})" if referenced_by else ""
        listed = ", ".join(self.known) or "none"
        super().__init__(f"unknown tool {name!r}{where}; registered tools: {listed}")


class RunnerUnavailableError(ConfigurationError):
    """QC cannot run tests with `python`: `reason` says why, `fix` is the command to run."""

    def __init__(self, python: str, reason: str, *, fix: str) -> None:
        self.python = python
        self.reason = reason
        self.fix = fix
        super().__init__(f"QC's test runner is unavailable ({python}): {reason}; fix: {fix}")


class SandboxUnavailableError(ConfigurationError):
    """No jail for generated code: none here and `sandbox="require"` forbids running
    without one (`required`), or the jail could not be built for this run."""

    def __init__(self, reason: str, *, required: bool = True) -> None:
        self.reason = reason
        self.required = required
        super().__init__(
            f"no jail for generated code: {reason}; the sandbox is required "
            "(sandbox='require' or TASKORCH_SANDBOX=require), so nothing runs"
            if required else f"the jail could not be built: {reason}"
        )


class ToolArgumentsError(TaskorchError, TypeError):
    """Arguments that do not fit the tool's signature: a caller error, never retried."""

    def __init__(self, tool: str, reason: str) -> None:
        self.tool = tool
        self.reason = reason
        super().__init__(f"bad arguments for tool {tool!r}: {reason}")


class CircuitOpenError(TaskorchError):
    """The breaker `name` is open (or its half-open probe slots are taken)."""

    def __init__(self, name: str, *, retry_in: float | None = None, state: str = "open") -> None:
        self.name = name
        self.retry_in = retry_in
        self.state = state
        when = f"; retry in {retry_in:.1f} s" if retry_in is not None else ""
        super().__init__(f"circuit {name!r} is {state}{when}")


class BudgetExceededError(TaskorchError):
    """A reservation would pass the budget limit; `report` is the cost so far.

    The message comes from the raiser, which formats its amounts with the one money
    format of `taskorch_nb.core.money` (a floor this module stands below).
    """

    def __init__(
        self,
        message: str,
        *,
        requested: Decimal,
        remaining: Decimal,
        limit: Decimal,
        report: Any = None,
    ) -> None:
        self.requested = requested
        self.remaining = remaining
        self.limit = limit
        self.report = report
        super().__init__(message)


class RetryError(TaskorchError):
    """Retries stopped without an underlying exception to re-raise."""

    def __init__(self, name: str, attempts: int) -> None:
        self.name = name
        self.attempts = attempts
        super().__init__(f"{name!r} gave up after {attempts} attempts")


class WorkflowError(TaskorchError):
    """A run or workflow cannot go on (unknown workflow, bad agent output, ...)."""


class SandboxError(WorkflowError, PermissionError):
    """A path that would leave the run's workspace."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"path {path!r} refused: {reason}")


class ProviderError(TaskorchError):
    """A model provider failed; `status` and `retry_after` drive retries and breakers."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.body = body
        super().__init__(message)


class ProviderUnavailableError(ProviderError):
    """A provider stayed unreachable after its retries, or its breaker is open.

    Nothing is wrong with the run: a run that meets it is PAUSED, and resumes from
    its checkpoint once the provider is back.
    """


class ProviderTimeoutError(ProviderError, TimeoutError):
    """The provider did not answer in time."""


class RateLimitError(ProviderError):
    """HTTP 429; `retry_after` carries the server's wish in seconds."""


class ProviderResponseError(ProviderError):
    """The provider answered, but with something unusable (bad JSON, no choices)."""


class CapabilityError(ProviderError):
    """The server refused the shape of a request (a feature it lacks, a field it rejects),
    whatever status it chose (400, 422, or 500 with a validation body).

    Sending the same request again cannot help, so it is a caller error: never retried,
    never counted by a breaker. `feature` names what was refused (`response_format`,
    `tools`, `messages`, ...).
    """

    def __init__(self, message: str, *, feature: str = "request", **fields: Any) -> None:
        self.feature = feature
        super().__init__(message, **fields)


class ContextWindowError(CapabilityError):
    """The conversation needs more tokens than the model's context window holds."""

    def __init__(self, message: str, *, window: int | None, needed: int | None,
                 **fields: Any) -> None:
        self.window = window
        self.needed = needed
        super().__init__(message, feature="context_window", **fields)


class HubError(TaskorchError):
    """The federation hub refused a request; `status` and `reason` say why."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"hub answered {status}: {reason}")
