"""Tests mirror the modules: taskorch_nb/<pkg>/<mod>.py has tests/unit/<pkg>/test_<mod>.py
(a top-level taskorch_nb/<mod>.py has tests/unit/test_<mod>.py). The tree is walked, so a
new module without its test file fails here, named."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "taskorch_nb"
UNIT = ROOT / "tests" / "unit"

#: File names that need no mirror of their own, and why. Keep this short.
EXEMPT: dict[str, str] = {
    "__init__.py": "a package's front door: it re-exports what its modules define (tested "
                   "there); the top-level one is tested by tests/unit/test_facade.py",
    "__main__.py": "`python -m` entry shim: the command it starts is tested by its module",
}


def mirror_of(module: Path, package: Path = PACKAGE, unit: Path = UNIT) -> Path:
    """The test file that mirrors `module` (a .py file under `package`)."""
    rel = module.relative_to(package)
    return unit.joinpath(*rel.parts[:-1], f"test_{rel.name}")


def missing_mirrors(package: Path = PACKAGE, unit: Path = UNIT) -> list[str]:
    """The modules under `package` without their mirrored test file, as `module -> test`."""
    missing = []
    for module in sorted(package.rglob("*.py")):
        if module.name in EXEMPT or "__pycache__" in module.parts:
            continue
        test = mirror_of(module, package, unit)
        if not test.is_file():
            missing.append(f"{module.relative_to(package.parent)} -> "
                           f"{test.relative_to(unit.parent.parent)}")
    return missing


def test_every_module_has_its_mirrored_test_file() -> None:
    missing = missing_mirrors()
    assert not missing, "modules without their test file:\n  " + "\n  ".join(missing)


def test_the_walk_names_each_module_without_a_mirror(tmp_path: Path) -> None:
    package, unit = tmp_path / "pkg", tmp_path / "tests" / "unit"
    for path in ["__init__.py", "top.py", "covered.py", "sub/__init__.py", "sub/inner.py",
                 "sub/deeper/leaf.py", "sub/__main__.py", "sub/__pycache__/inner.py",
                 "sub/notes.txt"]:
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text("")
    for path in ["test_covered.py", "sub/test_inner.py", "test_leaf.py"]:
        (unit / path).parent.mkdir(parents=True, exist_ok=True)
        (unit / path).write_text("")
    assert missing_mirrors(package, unit) == [
        "pkg/sub/deeper/leaf.py -> tests/unit/sub/deeper/test_leaf.py",
        "pkg/top.py -> tests/unit/test_top.py",
    ]


def test_the_real_tree_is_walked() -> None:
    assert mirror_of(PACKAGE / "core" / "circuit.py") == UNIT / "core" / "test_circuit.py"
    assert mirror_of(PACKAGE / "cli.py") == UNIT / "test_cli.py"
    assert (PACKAGE / "sandbox" / "jail.py") in set(PACKAGE.rglob("*.py"))
