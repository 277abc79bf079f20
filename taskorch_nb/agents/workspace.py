"""The sandbox directory a run's agents read and write, with file tools for the model.

Paths come from a model, so they are untrusted: `Workspace.resolve` refuses
absolute paths, `..` that climbs out, NUL bytes and symlinks whose target lies
outside the root. Every component is checked, including ones that do not exist
yet, and files are opened with `O_NOFOLLOW` so a symlink swapped in after the
check is refused too.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from taskorch_nb.errors import ConfigurationError, SandboxError, ToolArgumentsError

#: Directories `list` and `search` skip: caches and tool state, not the work.
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".venv",
        "node_modules",
    }
)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class Workspace:
    """A directory that no path given to it may leave.

    `Workspace()` makes a fresh temporary directory; `Workspace(path)` uses
    (and creates) `path`; a path that cannot be a directory is a `ConfigurationError`.
    `Workspace.later(path)` creates it on the first write (`ensure`): most runs write
    nothing, and a directory each is the largest cost of starting one.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = tempfile.mkdtemp(prefix="taskorch-")
        self.root: Path = self._make(Path(root).expanduser())
        """The workspace directory, absolute and with symlinks resolved."""
        self._made = True

    @classmethod
    def later(cls, root: Path) -> Workspace:
        """A workspace at `root` (absolute, its parent's symlinks resolved) whose directory
        is made when first needed."""
        ws = cls.__new__(cls)
        ws.root = root
        ws._made = False
        return ws

    @property
    def made(self) -> bool:
        """Whether the directory exists (a `later` one before its first write does not)."""
        return self._made

    def ensure(self) -> Path:
        """Make the directory now if it was deferred (a symlink there is refused)."""
        if not self._made:
            if self._make(self.root) != self.root:
                raise SandboxError(str(self.root), "the workspace directory is a symlink")
            self._made = True
        return self.root

    @staticmethod
    def _make(path: Path) -> Path:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigurationError(f"workspace {path} exists and is not a directory") from None
        except NotADirectoryError:
            raise ConfigurationError(
                f"workspace {path}: a folder above it is a file, not a directory") from None
        except OSError as exc:
            raise ConfigurationError(f"workspace {path}: cannot create it ({exc.strerror})"
                                     ) from None
        return path.resolve(strict=True)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The absolute path inside the workspace for `path`, or `SandboxError`."""
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            raise SandboxError(repr(path), f"expected a str path, got {type(path).__name__}")
        if not path.strip():
            raise SandboxError(path, "empty path")
        if "\x00" in path:
            raise SandboxError(path, "path contains a NUL byte")
        if PurePosixPath(path).is_absolute() or os.path.isabs(path):
            raise SandboxError(
                path, "absolute paths are not allowed; use a path relative to the workspace root"
            )
        current = self.root
        for part in PurePosixPath(path).parts:
            if part in ("", "."):
                continue
            if part == "..":
                if current == self.root:
                    raise SandboxError(path, "'..' would leave the workspace")
                current = current.parent
                continue
            candidate = current / part
            if candidate.is_symlink():
                shown = self.relative(candidate)
                target = self._link_target(candidate)
                if target is None:
                    raise SandboxError(path, f"symlink {shown!r} is a loop")
                if not target.is_relative_to(self.root):
                    raise SandboxError(path, f"symlink {shown!r} points outside the workspace")
                candidate = target
            current = candidate
        if not current.is_relative_to(self.root):  # belt and braces; the walk keeps this true
            raise SandboxError(path, "resolves outside the workspace")
        return current

    @staticmethod
    def _link_target(link: Path) -> Path | None:
        """Where `link` finally points (it may not exist), or None for a symlink loop."""
        try:
            return link.resolve(strict=False)
        except (RuntimeError, OSError):  # 3.11 raises RuntimeError on a loop, 3.13 OSError
            return None

    def relative(self, path: Path) -> str:
        """`path` (inside the workspace) as a posix path relative to the root."""
        rel = path.relative_to(self.root).as_posix()
        return rel if rel else "."

    # -- operations --------------------------------------------------------------------

    def list(self, path: str = ".") -> list[str]:
        """Every file under `path`, recursively, as sorted paths relative to the root.

        Caches (`__pycache__`, `.git`, ...) are skipped; directory symlinks are not
        followed and file symlinks pointing outside the workspace are left out.
        """
        if path == "." and not self._made:
            return []  # nothing written yet: no folder to walk (the usual first look)
        start = self.resolve(path)
        if start == self.root and not self._made:
            return []
        if start.is_file():
            return [self.relative(start)]
        if not start.is_dir():
            raise FileNotFoundError(f"no such file or directory in the workspace: {path!r}")
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
            base = Path(dirpath)
            for name in filenames:
                file = base / name
                if file.is_symlink():
                    target = self._link_target(file)
                    if target is None or not target.is_relative_to(self.root):
                        continue
                found.append(self.relative(file))
        return sorted(found)

    def read(self, path: str, *, max_bytes: int = 1_000_000) -> str:
        """The text of a file (UTF-8, undecodable bytes replaced).

        A file larger than `max_bytes` is cut there and a marker line says so, so a
        model reading a huge log gets a usable answer instead of an error.
        """
        target = self.resolve(path)
        fd = os.open(target, os.O_RDONLY | _NOFOLLOW | _BINARY)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
            size = os.fstat(fh.fileno()).st_size
        text = data[:max_bytes].decode("utf-8", errors="replace")
        if len(data) > max_bytes:
            text += f"\n[... truncated: {path} has {size} bytes, showing the first {max_bytes}]\n"
        return text

    def write(self, path: str, content: str) -> int:
        """Write `content` (UTF-8) to `path`, creating parent directories; bytes written."""
        if not isinstance(content, str):
            raise TypeError(f"content must be str, got {type(content).__name__}")
        target = self.resolve(path)
        if target == self.root:
            raise SandboxError(path, "cannot write to the workspace root itself")
        self.ensure()
        target.parent.mkdir(parents=True, exist_ok=True)
        # The parents were created just now; resolve again so a symlink raced in is caught.
        target = self.resolve(path)
        data = content.encode("utf-8")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _BINARY
        fd = os.open(target, flags, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return len(data)

    def search(
        self, pattern: str, path: str = ".", *, max_results: int = 200
    ) -> list[dict[str, Any]]:
        """Lines matching the regex `pattern` in the text files under `path`.

        Each hit is `{"path", "line" (1-based), "text"}`; binary files and files over
        1 MB are skipped; at most `max_results` hits. A bad regex raises `re.error`.
        """
        regex = re.compile(pattern)
        hits: list[dict[str, Any]] = []
        for rel in self.list(path):
            file = self.resolve(rel)
            if file.stat().st_size > 1_000_000:
                continue
            data = file.read_bytes()
            if b"\x00" in data[:8192]:
                continue
            text = data.decode("utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                if regex.search(line):
                    hits.append({"path": rel, "line": number, "text": line[:300]})
                    if len(hits) >= max_results:
                        return hits
        return hits

    # -- tools -------------------------------------------------------------------------

    def tool_functions(self) -> dict[str, Callable[..., Any]]:
        """`list_files`, `read_file`, `write_file`, `search_files` bound to this workspace.

        Plain sync functions with typed parameters and docstrings, ready to be
        registered as tools (their docstrings are what the model sees).
        """
        ws = self

        def list_files(path: str = ".") -> list[str]:
            """List the files under `path` in the workspace (recursive, relative paths)."""
            return ws.list(path)

        def read_file(path: str) -> str:
            """Read a text file from the workspace; `path` is relative to its root."""
            return ws.read(path)

        def write_file(path: str, content: str) -> str:
            """Create or overwrite a file in the workspace (parent folders are created)."""
            written = ws.write(path, content)
            return f"wrote {written} bytes to {path}"

        def search_files(pattern: str, path: str = ".") -> list[dict[str, Any]]:
            """Find lines matching a Python regex in the workspace files under `path`."""
            try:
                return ws.search(pattern, path)
            except re.error as exc:
                raise ToolArgumentsError(
                    "search_files", f"invalid regex {pattern!r}: {exc}"
                ) from exc

        return {
            "list_files": list_files,
            "read_file": read_file,
            "write_file": write_file,
            "search_files": search_files,
        }
