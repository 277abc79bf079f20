"""The house: every import points down the layers of DESIGN.md, and nothing goes round.

Imports are read from the source (type-checking and function-level ones included), so
a lazy import cannot hide an arrow that runs back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taskorch_nb"

#: Floors from the ground up; a module may import its own floor or the ones below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors",)),
    ("core", ("core",)),
    ("services", ("llm", "tracing", "federation.client", "federation.schema",
                  "federation.screening", "federation.merge", "federation")),
    ("sandbox", ("sandbox",)),
    ("agents", ("agents",)),
    ("batch", ("batch",)),
    # guard/ sits beside engine/: the Orchestrator builds guards, guards never import it
    ("engine", ("engine", "guard")),
    ("front", ("notebook", "plots", "report", "cli", "mcp", "demo", "federation.hub",
               "federation.hubstore", "federation.hubcli", "testing", "")),
]

#: Display libraries only the front ends may touch.
DISPLAY = ("ipywidgets", "plotly", "IPython")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of the package (and every top-level library) `name` imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
                module = f"taskorch_nb.{module}" if module else "taskorch_nb"
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:  # `from taskorch_nb.core import budget`
                candidate = f"{module}.{alias.name}"
                if candidate.removeprefix("taskorch_nb.") in MODULES:
                    found.add(candidate)
    return found


def _internal(imported: set[str]) -> set[str]:
    names = set()
    for module in imported:
        if module == "taskorch_nb" or module.startswith("taskorch_nb."):
            short = module.removeprefix("taskorch_nb").removeprefix(".")
            while short not in MODULES and "." in short:
                short = short.rpartition(".")[0]
            if short in MODULES:
                names.add(short)
    return names


GRAPH = {name: _internal(_imports(name, path)) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or prefix == "") and len(
                prefix
            ) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, module
    return best


def test_every_module_has_a_layer() -> None:
    assert {layer_of(m) for m in MODULES}  # layer_of asserts for a stray module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    mine = layer_of(module)
    upward = sorted(
        f"{target} ({LAYERS[layer_of(target)][0]})"
        for target in GRAPH[module]
        if layer_of(target) > mine
    )
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports a higher floor: {upward}"


def test_core_imports_only_core_and_errors() -> None:
    bad = {m: sorted(t for t in GRAPH[m] if not (t == "errors" or t.startswith("core")))
           for m in MODULES if m.startswith("core")}
    assert {m: t for m, t in bad.items() if t} == {}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) < len(LAYERS) - 1))
def test_display_libraries_stay_in_the_front_ends(module: str) -> None:
    libraries = {i.split(".")[0] for i in _imports(module, MODULES[module])}
    assert not libraries & set(DISPLAY), f"{module} imports {sorted(libraries & set(DISPLAY))}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_circles() -> None:
    # A package's __init__ re-exporting its own modules is not a circle of design.
    graph = {m: {t for t in targets if not (MODULES[t].name == "__init__.py"
                                              and m.startswith(t + "."))}
             for m, targets in GRAPH.items()}
    assert _cycles(graph) == []


def test_no_package_circles() -> None:
    def package(module: str) -> str:
        return module.split(".")[0] if "." in module or MODULES[module].name == "__init__.py" \
            else module

    graph: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        graph.setdefault(package(module), set()).update(
            package(t) for t in targets if package(t) != package(module)
        )
    graph.pop("", None)
    for targets in graph.values():
        targets.discard("")  # the facade
    assert _cycles(graph) == []


def test_the_checker_sees_an_upward_import() -> None:
    """The test can fail: a core module importing the engine is caught."""
    graph = {"core.x": {"engine.y"}, "engine.y": {"core.x"}}
    assert _cycles(graph) == [["core.x", "engine.y"]]
    assert layer_of("engine.orchestrator") > layer_of("core.budget")
