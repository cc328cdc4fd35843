#!/usr/bin/env bash
# One command: install, migrate, seed the demo CMDB and users, start the sshd testbed,
# a loopback Redis, Daphne and the django-q2 worker; print the URL and logins.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# An installed offline bundle has everything already and no network: it skips the set-up.
[ -n "${GUARDIA_SKIP_SETUP:-}" ] || scripts/setup.sh

export GUARDIA_DATA_DIR=${GUARDIA_DATA_DIR:-$PWD/var}
# The demo runs as a site would: no debug pages (a 404 never lists the URL map); WhiteNoise
# serves the collected static files and the console shows its own Korean error pages.
export GUARDIA_DEBUG=${GUARDIA_DEBUG:-false}
PORT=${GUARDIA_PORT:-8000}
REDIS_PORT=${GUARDIA_REDIS_PORT:-6379}
export GUARDIA_REDIS_URL=${GUARDIA_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
export GUARDIA_BASE_URL=${GUARDIA_BASE_URL:-http://127.0.0.1:$PORT}
# The demo's shared users keep their printed password and need no authenticator app, so
# the walk-through works as written; every other public-sector rule (password policy,
# idle timeout, single session) stays on. Set both to true to try the full rules.
export GUARDIA_PASSWORD_FIRST_LOGIN_CHANGE=${GUARDIA_PASSWORD_FIRST_LOGIN_CHANGE:-false}
export GUARDIA_OTP_ENABLED=${GUARDIA_OTP_ENABLED:-false}
RUN=$GUARDIA_DATA_DIR/run
mkdir -p "$RUN" "$GUARDIA_DATA_DIR/log"
PY=.venv/bin/python

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stopped=
cleanup() {
  [ -n "$stopped" ] && return
  stopped=1
  echo "== stopping"
  local pids=()
  for name in messenger_bot qcluster daphne; do
    [ -f "$RUN/$name.pid" ] && pids+=("$(cat "$RUN/$name.pid")")
    rm -f "$RUN/$name.pid"
  done
  kill "${pids[@]}" 2>/dev/null || true
  # The qcluster's parent can stay behind after its workers have stopped: a process still
  # there after 15 s is killed.
  for _ in $(seq 75); do
    local alive=
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  $PY manage.py testbed down >/dev/null 2>&1 || true
  $PY -m intake.messenger.homeserver down --dir "$GUARDIA_DATA_DIR/synapse" >/dev/null 2>&1 || true
  [ -f "$RUN/redis.pid" ] && kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

$PY manage.py migrate --noinput -v 0
$PY manage.py collectstatic --noinput -v 0
$PY manage.py compilemessages -v 0 >/dev/null 2>&1 || true

if port_busy "$REDIS_PORT"; then
  echo "== redis: something already listens on $REDIS_PORT; using it"
else
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$GUARDIA_DATA_DIR/log/redis.log"
fi

$PY manage.py testbed up --servers "${GUARDIA_TESTBED_SERVERS:-20}"
$PY manage.py seed_demo --testbed

if port_busy "$PORT"; then
  echo "port $PORT is busy (a stale Daphne?); set GUARDIA_PORT" >&2
  exit 1
fi
$PY -m daphne -b 127.0.0.1 -p "$PORT" guardia.asgi:application >"$GUARDIA_DATA_DIR/log/daphne.log" 2>&1 &
echo $! >"$RUN/daphne.pid"
$PY manage.py qcluster >"$GUARDIA_DATA_DIR/log/qcluster.log" 2>&1 &
echo $! >"$RUN/qcluster.pid"

# The messenger: an embedded Matrix homeserver (Synapse) on loopback, a Matrix account for
# the bot and for every demo user (same password as the console), and the bot process.
# Without Synapse installed (scripts/setup.sh installs it) the demo runs without a messenger.
if [ -z "${GUARDIA_MATRIX_HOMESERVER:-}" ] && [ -x .venv-synapse/bin/python ]; then
  export GUARDIA_MATRIX_HOMESERVER
  GUARDIA_MATRIX_HOMESERVER=$($PY -m intake.messenger.homeserver up --dir "$GUARDIA_DATA_DIR/synapse" \
    --port "${GUARDIA_MATRIX_PORT:-8008}")
  [ -f "$RUN/matrix-bot.secret" ] || $PY -c 'import secrets; print(secrets.token_urlsafe(24))' >"$RUN/matrix-bot.secret"
  export GUARDIA_MATRIX_BOT_USER=@guardia:guardia.local
  export GUARDIA_MATRIX_BOT_PASSWORD
  GUARDIA_MATRIX_BOT_PASSWORD=$(cat "$RUN/matrix-bot.secret")
  $PY manage.py messenger_bot --demo-accounts "$GUARDIA_DATA_DIR/synapse" >/dev/null
fi
if [ -n "${GUARDIA_MATRIX_HOMESERVER:-}" ]; then
  $PY manage.py messenger_bot >"$GUARDIA_DATA_DIR/log/messenger_bot.log" 2>&1 &
  echo $! >"$RUN/messenger_bot.pid"
fi

for _ in $(seq 50); do port_busy "$PORT" && break; sleep 0.2; done
cat <<MSG

GUARDiA is running: $GUARDIA_BASE_URL/
  console  $GUARDIA_BASE_URL/console/     CMDB admin  $GUARDIA_BASE_URL/admin/
  audit    $GUARDIA_BASE_URL/audit/       API docs    $GUARDIA_BASE_URL/api/v1/docs/
Demo logins (password for all: $($PY manage.py seed_demo --print-password)):
$($PY manage.py seed_demo --print-logins)
Messenger: Matrix homeserver ${GUARDIA_MATRIX_HOMESERVER:-(not running)} (server name guardia.local); log in
  with any Matrix client (e.g. Element) as a demo user (same password), talk to @guardia:guardia.local.
Logs in $GUARDIA_DATA_DIR/log/. Press Ctrl-C to stop.
MSG
wait
