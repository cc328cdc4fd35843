#!/usr/bin/env bash
# Install everything GUARDiA needs on a fresh Debian box (root) and prepare the database.
# Idempotent: re-running only installs what is missing. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-server openssh-server openssh-client postgresql chromium fonts-nanum
              tesseract-ocr tesseract-ocr-kor poppler-utils python3-venv unixodbc
              build-essential python3-dev libldap2-dev libsasl2-dev slapd ldap-utils sudo
              git openssl)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The AI work agent, the builds and the tests it triggers run as this unprivileged account,
# never as GUARDiA's (docs/agent.md; GUARDIA_AGENT_OS_USER).
if [ "$(id -u)" = 0 ] && ! id guardia-agent >/dev/null 2>&1; then
  echo "== user: creating guardia-agent"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin guardia-agent
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== python: creating .venv"
  "$PYTHON" -m venv .venv
fi
# Runtime and development requirements (requirements-dev.txt includes requirements.txt):
# reinstall when either file changed since the last install.
if ! cat requirements.txt requirements-dev.txt | cmp -s - .venv/.requirements.installed; then
  echo "== pip: installing requirements.txt and requirements-dev.txt"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  cat requirements.txt requirements-dev.txt > .venv/.requirements.installed
fi

# The embedded Matrix homeserver (Synapse) for the messenger demo and tests, in its own
# virtualenv so Twisted and its dependencies stay out of GUARDiA's; reinstalled when
# requirements-synapse.txt changed.
if [ ! -x .venv-synapse/bin/python ]; then
  echo "== python: creating .venv-synapse"
  "$PYTHON" -m venv .venv-synapse
fi
if ! cmp -s requirements-synapse.txt .venv-synapse/.requirements.installed; then
  echo "== pip: installing requirements-synapse.txt (Synapse)"
  .venv-synapse/bin/pip install -q --upgrade pip
  .venv-synapse/bin/pip install -q -r requirements-synapse.txt
  cp requirements-synapse.txt .venv-synapse/.requirements.installed
fi

# axe-core for the browser accessibility tests, pinned in package-lock.json and read from
# node_modules by the tests (no CDN). Debian's nodejs/npm only when no npm is present: a
# NodeSource nodejs already ships npm and conflicts with Debian's npm package.
if ! command -v npm >/dev/null; then
  echo "== apt: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if ! cmp -s package-lock.json node_modules/.package-lock.installed; then
  echo "== npm: installing package-lock.json (axe-core)"
  npm ci --no-audit --no-fund --silent
  cp package-lock.json node_modules/.package-lock.installed
fi
