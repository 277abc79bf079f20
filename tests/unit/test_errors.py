"""The exceptions: the tree the module documents, the builtins they can be caught as, and
the fields and one-line messages each carries."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from taskorch_nb import errors
from taskorch_nb.errors import (
    BudgetExceededError,
    CapabilityError,
    CircuitOpenError,
    ContextWindowError,
    HubError,
    ProviderError,
    RateLimitError,
    RetryError,
    RunnerUnavailableError,
    SandboxError,
    SandboxUnavailableError,
    TaskorchError,
    ToolArgumentsError,
    UnknownToolError,
)


def documented_tree() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (documented parent, documented builtin bases) from the module docstring."""
    tree: dict[str, tuple[str, tuple[str, ...]]] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^(?P<indent>[ │]*(?:[├└]── )?)(?P<name>[A-Z]\w+Error)"
                         r"(?: \((?P<builtin>\w+)\))?", line.strip("\n")[4:])
        if not found:
            continue
        depth = len(found["indent"]) // 4
        del parents[depth:]
        builtins = (found["builtin"],) if found["builtin"] else ()
        tree[found["name"]] = (parents[-1] if parents else "Exception", builtins)
        parents.append(found["name"])
    return tree


def test_the_docstring_tree_is_the_class_tree() -> None:
    tree = documented_tree()
    raised = {name for name, obj in vars(errors).items()
              if isinstance(obj, type) and issubclass(obj, Exception)}
    assert set(tree) == raised  # every error documented, nothing documented that is gone
    for name, (parent, builtins) in tree.items():
        cls = getattr(errors, name)
        assert cls.__bases__[0].__name__ == parent, name
        assert tuple(b.__name__ for b in cls.__bases__[1:]) == builtins, name


@pytest.mark.parametrize(("error", "builtin"), [
    (ProviderError("x"), Exception),
    (errors.ConfigurationError("x"), ValueError),
    (ToolArgumentsError("t", "x"), TypeError),
    (SandboxError("../x", "outside"), PermissionError),
    (errors.ProviderTimeoutError("x"), TimeoutError),
])
def test_callers_can_catch_by_the_builtin_or_the_root(error: Exception, builtin: type) -> None:
    assert isinstance(error, builtin)
    assert isinstance(error, TaskorchError)


def test_unknown_tool_lists_the_known_sorted_and_says_who_referenced_it() -> None:
    error = UnknownToolError("serch", ["search", "calc"], referenced_by="fetch")
    assert error.known == ["calc", "search"]
    assert str(error) == ("unknown tool 'serch' (fallback of 'fetch'); "
                          "registered tools: calc, search")
    assert str(UnknownToolError("x", [])) == "unknown tool 'x'; registered tools: none"


def test_runner_and_sandbox_unavailable_say_the_fix() -> None:
    runner = RunnerUnavailableError("python3", "no module named pytest",
                                    fix="pip install pytest")
    assert (runner.python, runner.reason, runner.fix) == (
        "python3", "no module named pytest", "pip install pytest")
    assert str(runner) == ("QC's test runner is unavailable (python3): no module named "
                           "pytest; fix: pip install pytest")
    required = SandboxUnavailableError("bwrap not found")
    assert "sandbox='require' or TASKORCH_SANDBOX=require" in str(required)
    assert str(SandboxUnavailableError("bwrap failed", required=False)) == (
        "the jail could not be built: bwrap failed")


def test_circuit_open_rounds_its_wait() -> None:
    assert str(CircuitOpenError("search", retry_in=4.26)) == (
        "circuit 'search' is open; retry in 4.3 s")
    half = CircuitOpenError("search", state="half-open")
    assert (str(half), half.retry_in) == ("circuit 'search' is half-open", None)


def test_fields_ride_along_with_the_message() -> None:
    budget = BudgetExceededError("over", requested=Decimal("2"), remaining=Decimal("1"),
                                 limit=Decimal("5"), report={"spent": 4})
    assert (budget.requested, budget.remaining, budget.limit, budget.report) == (
        Decimal("2"), Decimal("1"), Decimal("5"), {"spent": 4})
    assert str(RetryError("search", 3)) == "'search' gave up after 3 attempts"
    limited = RateLimitError("slow down", provider="openai", model="m", status=429,
                             retry_after=2.0, body="{}")
    assert (limited.provider, limited.status, limited.retry_after, limited.body) == (
        "openai", 429, 2.0, "{}")
    assert str(HubError(403, "not your pattern")) == "hub answered 403: not your pattern"
    assert str(SandboxError("/etc", "outside the workspace")) == (
        "path '/etc' refused: outside the workspace")


def test_capability_errors_name_what_was_refused() -> None:
    assert CapabilityError("no tools here", status=400).feature == "request"
    refused = CapabilityError("no json mode", feature="response_format", status=422)
    assert (refused.feature, refused.status) == ("response_format", 422)
    window = ContextWindowError("too long", window=4096, needed=5000, model="m")
    assert (window.feature, window.window, window.needed, window.model) == (
        "context_window", 4096, 5000, "m")
