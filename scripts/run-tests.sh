#!/usr/bin/env bash
# Runs the suite: lint, types (mypy, config in pyproject.toml), then pytest (which starts its own
# PostgreSQL, servers and peers).
#   scripts/run-tests.sh            everything (make test)
#   scripts/run-tests.sh --fast     the deterministic tier (make test-fast): no real models, browser,
#                                   SIP peers or PostgreSQL; the call loop on fake engines and virtual time
# Further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
.venv/bin/ruff check .
.venv/bin/mypy
if [ "$fast" = 1 ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider -m "not models and not browser and not sip and not postgres" "$@"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
