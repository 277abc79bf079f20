"""Static security audit of code a model wrote: ruff's `S` (bandit) rules, or an AST
fallback covering the main ones when no ruff binary is found.

Every Python file the model wrote is audited, tests included: a test runs on the
user's machine like any module, and code hidden in a test is still code. Only
`assert` (S101) is not a finding in test files, where asserting is the point.

The files are read once, without following symlinks (`os.fwalk`, `O_NOFOLLOW`),
and ruff audits that copy: code that ran in the jail may have left a link to a
host file in the workspace, and the audit runs outside the jail.

Severities:

- high: code or command injection and unsafe deserialisation (eval/exec,
  shell=True, os.system, pickle/marshal, yaml.load, TLS verification off,
  Flask debug); by default these block QC approval.
- medium: unsafe given some input or setting (weak hashes, mktemp, requests
  without timeout, SQL built from strings, XML parsers, bind to 0.0.0.0, ...).
- low: hygiene and noisy rules (asserts, hard-coded password-like strings,
  `random`, try/except/pass, subprocess without shell, imports).
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from taskorch_nb.agents.workspace import IGNORED_DIRS


class Finding(BaseModel):
    """One security issue: the rule code, its severity, and where it is."""

    rule: str
    severity: str
    path: str
    line: int
    message: str



def minimal_env(home: Path) -> dict[str, str]:
    """The whole environment untrusted code gets: nothing inherited but the interpreter's dir."""
    return {
        "PATH": os.pathsep.join(
            [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }



# -- security audit -----------------------------------------------------------------------


async def security_audit(
    root: str | os.PathLike[str],
    *,
    engine: Literal["auto", "ruff", "ast"] = "auto",
    timeout: float = 60.0,  # noqa: ASYNC109 - a limit for the ruff subprocess
) -> tuple[list[Finding], str]:
    """Audit every Python file under `root`; the findings and the engine used."""
    sources, unread = await asyncio.to_thread(read_sources, root)
    ruff = None if engine == "ast" else _ruff_binary()
    if ruff is None:
        if engine == "ruff":
            raise FileNotFoundError("no ruff binary found (install ruff or use engine='ast')")
        findings = await asyncio.to_thread(_ast_findings, sources)
        return sorted(findings + unread, key=_order), "ast" if engine == "ast" else (
            "ast (no ruff binary)")
    with tempfile.TemporaryDirectory(prefix="taskorch-audit-") as private:
        home = Path(private) / "home"
        home.mkdir()
        copy = await asyncio.to_thread(_write_copy, private, sources)
        findings = await _ruff_findings(ruff, copy, minimal_env(home), timeout)
        return sorted(findings + unread, key=_order), "ruff"


#: Larger Python files are not read (and say so as a finding): no model writes them.
MAX_SOURCE_BYTES = 5 * 1024 * 1024


def read_sources(root: str | os.PathLike[str]) -> tuple[dict[str, bytes], list[Finding]]:
    """The regular `.py` files under `root` by relative path, never through a symlink,
    and a finding for each one too large to read."""
    sources: dict[str, bytes] = {}
    unread: list[Finding] = []
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for name in sorted(n for n in filenames if n.endswith(".py")):
            rel = Path(os.path.relpath(os.path.join(dirpath, name), root)).as_posix()
            try:
                fd = os.open(name, flags, dir_fd=dirfd)
            except OSError:  # a symlink (ELOOP), or gone
                continue
            with os.fdopen(fd, "rb") as file:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > MAX_SOURCE_BYTES:
                    unread.append(Finding(rule="too-large", severity="medium", path=rel, line=0,
                                          message=f"not audited: {info.st_size} bytes"))
                    continue
                sources[rel] = file.read(MAX_SOURCE_BYTES + 1)
    return sources, unread


def _write_copy(private: str, sources: dict[str, bytes]) -> Path:
    where = Path(os.path.realpath(private)) / "src"  # real: ruff reports real paths
    where.mkdir()
    for rel, data in sources.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(data)
    return where


def _order(f: Finding) -> tuple[str, int, str]:
    return (f.path, f.line, f.rule)


def _ruff_binary() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return shutil.which("ruff")
    try:
        return os.fsdecode(find_ruff_bin())
    except FileNotFoundError:
        return shutil.which("ruff")


async def timed_audit(root: Path, time_limit: float) -> tuple[list[Finding], str, float]:
    started = time.perf_counter()
    try:
        findings, engine = await security_audit(root, timeout=time_limit)
    except (OSError, ValueError, TimeoutError) as exc:
        # ruff broke (not the code under audit): fall back, and say so in the verdict.
        findings, _ = await security_audit(root, engine="ast")
        engine = f"ast (ruff failed: {exc})"
    return findings, engine, time.perf_counter() - started


async def _ruff_findings(
    ruff: str, root: Path, env: dict[str, str], time_limit: float
) -> list[Finding]:
    exclude = ",".join(IGNORED_DIRS)
    proc = await asyncio.create_subprocess_exec(
        ruff, "check", "--isolated", "--select", "S", "--output-format", "json",
        "--no-cache", "--exit-zero", "--extend-exclude", exclude, ".",
        cwd=root, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(time_limit):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise OSError(f"ruff exited with {proc.returncode}: {err.decode(errors='replace')[:500]}")
    findings = []
    for item in json.loads(out or b"[]"):
        code = item.get("code") or "syntax-error"
        file = Path(item["filename"])
        rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        if not _counts(code, rel):
            continue
        findings.append(
            Finding(
                rule=code,
                severity=severity_of(code),
                path=rel,
                line=int((item.get("location") or {}).get("row") or 0),
                message=item.get("message", ""),
            )
        )
    return sorted(findings, key=_order)


def _counts(rule: str, rel: str) -> bool:
    """Whether a finding is one: everything but asserts in test files."""
    return not (rule == "S101" and is_test_file(rel))


def is_test_file(rel: str) -> bool:
    """Test code (asserts are its job; the RED step may write only these)."""
    parts = rel.replace("\\", "/").split("/")
    name = parts[-1]
    return (
        any(p in ("tests", "test") for p in parts[:-1])
        or name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
    )


def _ast_findings(sources: dict[str, bytes]) -> list[Finding]:
    findings: list[Finding] = []
    for rel, data in sources.items():
        found = _AstAuditor.audit(rel, data.decode("utf-8", errors="replace"))
        findings += [f for f in found if _counts(f.rule, rel)]
    return sorted(findings, key=_order)


# -- the AST fallback ---------------------------------------------------------------------

SEVERITY: dict[str, str] = {
    **dict.fromkeys(
        ["S102", "S201", "S301", "S302", "S307", "S323", "S501", "S506", "S602", "S605"], "high"
    ),
    **dict.fromkeys(
        ["S101", "S105", "S106", "S107", "S108", "S110", "S112", "S311", "S603", "S606",
         "S607", "S702", "syntax-error"], "low"
    ),
}  # fmt: skip
"""Severity by rule code; S4xx (imports) are low; every other S rule is medium."""


def severity_of(code: str) -> str:
    """The severity of a ruff/bandit rule code (see the module docstring)."""
    if code in SEVERITY:
        return SEVERITY[code]
    return "low" if code.startswith("S4") else "medium"


_PASSWORD = re.compile(r"(^|_)(pas+wo?r?d|pass(phrase)?|pwd|token|secrete?)($|_)", re.I)
_SUBPROCESS = {f"subprocess.{f}" for f in ("Popen", "run", "call", "check_call", "check_output")}
_SHELL = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
_PICKLE = {"pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads",
           "shelve.open", "jsonpickle.decode", "pandas.read_pickle"}  # fmt: skip
_RANDOM = {f"random.{f}" for f in ("random", "randint", "randrange", "choice", "choices",
                                   "shuffle", "sample", "uniform", "getrandbits")}  # fmt: skip
_HTTP = {"get", "post", "put", "patch", "delete", "head", "options", "request"}
_SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


class _AstAuditor(ast.NodeVisitor):
    """The main bandit rules, by walking the syntax tree (imports and aliases resolved)."""

    def __init__(self, rel: str, aliases: dict[str, str]) -> None:
        self.rel = rel
        self.aliases = aliases
        self.findings: list[Finding] = []

    @classmethod
    def audit(cls, rel: str, source: str) -> list[Finding]:
        try:
            tree = ast.parse(source, filename=rel)
        except SyntaxError as exc:
            msg = f"cannot audit: {exc.msg}"
            return [Finding(rule="syntax-error", severity="low", path=rel, line=exc.lineno or 0,
                            message=msg)]  # fmt: skip
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    top = a.name.split(".")[0]
                    aliases[a.asname or top] = a.name if a.asname else top
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        auditor = cls(rel, aliases)
        auditor.visit(tree)
        return auditor.findings

    def _add(self, code: str, node: ast.AST, message: str) -> None:
        line = getattr(node, "lineno", 0)
        self.findings.append(Finding(rule=code, severity=severity_of(code), path=self.rel,
                                     line=line, message=message))  # fmt: skip

    def _qualname(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = self._qualname(node.func) or ""
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        shell = kw.get("shell")
        shell_true = isinstance(shell, ast.Constant) and bool(shell.value)
        if name in ("eval", "builtins.eval"):
            self._add("S307", node, "use of eval: arbitrary code execution")
        elif name in ("exec", "builtins.exec"):
            self._add("S102", node, "use of exec: arbitrary code execution")
        elif name in _SUBPROCESS and shell_true:
            self._add("S602", node, f"{name} with shell=True: command injection")
        elif shell_true:
            self._add("S604", node, f"{name or 'call'} with shell=True")
        elif name in _SHELL:
            self._add("S605", node, f"{name} starts a process through a shell")
        elif name in _PICKLE:
            self._add("S301", node, f"{name} can run arbitrary code on untrusted data")
        elif name in ("marshal.load", "marshal.loads"):
            self._add("S302", node, f"{name} is unsafe on untrusted data")
        elif name == "yaml.load":
            loader = kw.get("Loader", node.args[1] if len(node.args) > 1 else None)
            loader_name = (self._qualname(loader) or "") if loader is not None else ""
            if loader_name.rsplit(".", 1)[-1] not in _SAFE_LOADERS:
                self._add("S506", node, "yaml.load without a safe Loader; use yaml.safe_load")
        elif name in ("hashlib.md5", "hashlib.sha1") or (
            name == "hashlib.new"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).lower() in ("md5", "sha1")
        ):
            used = kw.get("usedforsecurity")
            if not (isinstance(used, ast.Constant) and used.value is False):
                self._add("S324", node, f"weak hash {name}; use sha256 (or a password KDF)")
        elif name in _RANDOM:
            self._add("S311", node, f"{name} is not for security; use secrets")
        elif name == "tempfile.mktemp":
            self._add("S306", node, "tempfile.mktemp is racy; use mkstemp/NamedTemporaryFile")
        if name.startswith(("requests.", "httpx.")) and name.rsplit(".", 1)[-1] in _HTTP:
            verify = kw.get("verify")
            if isinstance(verify, ast.Constant) and verify.value is False:
                self._add("S501", node, f"{name} with verify=False: TLS not checked")
            if name.startswith("requests.") and "timeout" not in kw:
                self._add("S113", node, f"{name} without a timeout can hang forever")
        for key, value in kw.items():
            if _PASSWORD.search(key) and _is_secret_literal(value):
                self._add("S106", value, f"possible hard-coded password in argument {key!r}")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if _is_secret_literal(node.value):
            for target in node.targets:
                if _PASSWORD.search(_target_name(target)):
                    self._add(
                        "S105", node, f"possible hard-coded password in {_target_name(target)!r}"
                    )
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        left = _target_name(node.left)
        if _PASSWORD.search(left) and any(_is_secret_literal(c) for c in node.comparators):
            self._add("S105", node, f"possible hard-coded password compared to {left!r}")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = [
            *zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True),
            *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d),
        ]
        for arg, default in pairs:
            if _PASSWORD.search(arg.arg) and _is_secret_literal(default):
                self._add("S107", default, f"possible hard-coded password default for {arg.arg!r}")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assert(self, node: ast.Assert) -> None:
        self._add("S101", node, "assert is removed under -O; raise an error instead")
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if len(node.body) == 1 and isinstance(node.body[0], ast.Pass):
            self._add("S110", node, "try/except/pass hides errors")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value == "0.0.0.0":
            self._add("S104", node, "binding to all interfaces")
        elif isinstance(node.value, str) and node.value.startswith(("/tmp/", "/var/tmp/")):
            self._add("S108", node, f"hard-coded temp path {node.value!r}; use tempfile")


def _is_secret_literal(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(node.value)


def _target_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return ""
