#!/usr/bin/env bash
# Set up and run the offline demo: the seven seed flows on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all
exec .venv/bin/taskorch-nb demo "$@"
