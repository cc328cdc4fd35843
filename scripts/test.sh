#!/usr/bin/env bash
# One command: install everything, lint, and run the whole test suite. The tests start
# and stop the services they need (Redis, PostgreSQL, sshd testbed, Daphne, qcluster).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${GUARDIA_DATA_DIR:-}" ]; then
  GUARDIA_DATA_DIR=$(mktemp -d /tmp/guardia-test.XXXXXX)
  trap 'rm -rf "$GUARDIA_DATA_DIR"' EXIT  # only what this run created
fi
export GUARDIA_DATA_DIR
.venv/bin/ruff check .
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
.venv/bin/python -m pytest -q "$@"
