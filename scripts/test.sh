#!/usr/bin/env bash
# One command: install everything, lint, and run the whole test suite. The tests start
# and stop the services they need (Redis, PostgreSQL, sshd testbed, Daphne, qcluster).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export GUARDIA_DATA_DIR=${GUARDIA_DATA_DIR:-$(mktemp -d /tmp/guardia-test.XXXXXX)}
.venv/bin/ruff check .
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
.venv/bin/python -m pytest -q "$@"
