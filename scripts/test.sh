#!/usr/bin/env bash
# One command: install everything, run the checks, and run the whole test suite. The tests
# start and stop the services they need (Redis, PostgreSQL, sshd testbed, Daphne, qcluster).
#
#   scripts/test.sh           the full run (CI and the README's command)
#   scripts/test.sh --fast    the same checks, then only the tests that need no sshd,
#                             PostgreSQL or Chromium and are not marked slow, on two pytest-xdist
#                             workers, each with a data directory of its own (tests/env.py)
#                             (the edit-test loop; docs/development.md)
#
# Further arguments go to pytest (scripts/test.sh --fast tests/audit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
fast=
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
scripts/setup.sh
if [ -z "${GUARDIA_DATA_DIR:-}" ]; then
  GUARDIA_DATA_DIR=$(mktemp -d /tmp/guardia-test.XXXXXX)
  trap 'rm -rf "$GUARDIA_DATA_DIR"' EXIT  # only what this run created
fi
export GUARDIA_DATA_DIR
echo "== checks: ruff format, ruff, mypy, import contracts, spelling, migrations"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/codespell
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
if [ -n "$fast" ]; then
  echo "== tests: fast lane (not browser, not postgres, not testbed, not slow)"
  .venv/bin/python -m pytest -q -n 2 --dist loadfile -m "not browser and not postgres and not testbed and not slow" "$@"
else
  echo "== tests: full run"
  .venv/bin/python -m pytest -q "$@"
fi
