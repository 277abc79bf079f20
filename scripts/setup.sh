#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install taskorch_nb with the given extras.
# Usage: scripts/setup.sh [EXTRAS]   (default: all,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all,dev}"
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "taskorch_nb needs Python >= 3.11 (found $("$py" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
