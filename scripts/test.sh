#!/usr/bin/env bash
# One command: install everything, run the checks, and run the whole test suite. The tests
# start and stop the services they need (Redis, PostgreSQL, sshd testbed, Daphne, qcluster).
#
#   scripts/test.sh           the full run (CI and the README's command)
#   scripts/test.sh --fast    the same checks, then only the tests that need no sshd,
#                             PostgreSQL or Chromium and are not marked slow, on three pytest-xdist
#                             workers (two cores: some tests wait in real time on stand-in
#                             services, a third worker fills that idle time), each with a data
#                             directory of its own (tests/env.py)
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
echo "== checks: ruff format, ruff, mypy, import contracts, spelling, migrations (side by side)"
mkdir -p "$GUARDIA_DATA_DIR/migrated"
checks=$(mktemp -d /tmp/guardia-checks.XXXXXX)
check() {  # check NAME COMMAND...: run in the background, its output kept for a failure
  local name=$1
  shift
  ("$@" >"$checks/$name.out" 2>&1 || echo $? >"$checks/$name.failed") &
}
check format .venv/bin/ruff format --check .
check lint .venv/bin/ruff check .
check types .venv/bin/mypy
check imports .venv/bin/lint-imports --no-cache
check spelling .venv/bin/codespell
check migrations .venv/bin/python manage.py makemigrations --check --dry-run
# Meanwhile the migrated test database is built once for the tests to copy (tests/migrated_db.py).
check test-database env GUARDIA_DATA_DIR="$GUARDIA_DATA_DIR/migrated" .venv/bin/python -m tests.migrated_db
wait
failed=0
for name in format lint types imports spelling migrations test-database; do
  if [ -e "$checks/$name.failed" ]; then
    echo "-- check failed: $name"
    cat "$checks/$name.out"
    failed=1
  fi
done
rm -rf "$checks"
[ "$failed" = 0 ] || exit 1
if [ -n "$fast" ]; then
  echo "== tests: fast lane (not browser, not postgres, not testbed, not slow)"
  .venv/bin/python -m pytest -q -n 3 --dist loadfile -m "not browser and not postgres and not testbed and not slow" "$@"
else
  echo "== tests: full run"
  .venv/bin/python -m pytest -q "$@"
fi
