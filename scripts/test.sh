#!/usr/bin/env bash
# Set up everything the tests need (packages, PostgreSQL, Chromium) and run them all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh all,dev
if [ -x scripts/system-deps.sh ]; then scripts/system-deps.sh; fi
if [ -x scripts/start-postgres.sh ] && [ -z "${TASKORCH_TEST_PG_URL:-}" ]; then
  eval "$(scripts/start-postgres.sh)"
  export TASKORCH_TEST_PG_URL
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
