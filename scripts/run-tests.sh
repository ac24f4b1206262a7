#!/usr/bin/env bash
# Runs the whole suite: lint, then pytest (which starts its own PostgreSQL, servers and peers).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
