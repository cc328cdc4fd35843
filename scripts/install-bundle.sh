#!/usr/bin/env bash
# Install or upgrade GUARDiA from an offline bundle (built by scripts/bundle.sh; this file is
# the bundle's install.sh). It never opens a network connection: Python packages come from
# the bundle's wheelhouse (pip --no-index), Debian packages from its debs/ (dpkg only).
#
#   install.sh --key RELEASE.pub | --fingerprint SHA256
#              [--prefix /opt/guardia] [--data /var/lib/guardia] [--debs install|check|skip]
#              [--no-homeserver] [--start]
#
# Before it touches anything it checks the bundle: MANIFEST.sig must verify with the release
# key the operator trusts (given as a file or as its SHA-256 fingerprint), every file must
# match MANIFEST.sha256, and no file may be missing or unlisted; otherwise it names the file
# or the key and stops.
#
# Layout: PREFIX/releases/VERSION (project + .venv), PREFIX/current -> the running release,
# PREFIX/guardia.env (settings, created once), DATA (database, keys, audit mirror, uploads).
# An upgrade verifies the chain with the running release, backs everything up
# (`manage.py backup`), migrates with the new release and verifies the chain again; if any
# of that fails it restores the backup with the previous release, leaves `current` on it
# and exits non-zero.
set -euo pipefail
BUNDLE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/guardia
DATA=/var/lib/guardia
KEYFILE=""
FINGERPRINT=""
DEBS=install
START=""
HOMESERVER=1  # --no-homeserver: the site uses its own Matrix homeserver
# shellcheck source=options.sh
. "$BUNDLE/options.sh"  # beside this file, in the bundle as in scripts/
parse_options "알 수 없는 인자이거나 값이 없는 옵션입니다" \
  "--key KEYFILE" "--fingerprint FINGERPRINT" "--prefix PREFIX" "--data DATA" "--debs DEBS" \
  "--start START=1" "--no-homeserver HOMESERVER=" -- "$@"
fail() { echo "설치 중단: $*" >&2; exit "${code:-3}"; }
command -v openssl >/dev/null || fail "openssl 이 없습니다 (서명 확인에 필요)"
fp_of() { openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | sha256sum | cut -c1-64; }

# 1. The signature, with the key the operator trusts (never only the bundle's own copy).
[ -f "$BUNDLE/MANIFEST.sha256" ] || fail "MANIFEST.sha256 이 없습니다"
[ -f "$BUNDLE/MANIFEST.sig" ] || fail "MANIFEST.sig 가 없습니다"
bundle_fp=$(fp_of "$BUNDLE/release-key.pub") || true
if [ -n "$KEYFILE" ]; then
  trusted_fp=$(fp_of "$KEYFILE") || fail "릴리스 공개 키를 읽을 수 없습니다: $KEYFILE"
  VERIFY_KEY=$KEYFILE
elif [ -n "$FINGERPRINT" ]; then
  trusted_fp=$FINGERPRINT
  VERIFY_KEY=$BUNDLE/release-key.pub
else
  fail "신뢰하는 릴리스 키를 --key 파일 또는 --fingerprint 로 지정하십시오 (번들의 키: ${bundle_fp:-없음})"
fi
if [ "$bundle_fp" != "$trusted_fp" ]; then
  fail "번들이 다른 키로 서명되었습니다: 번들의 키 ${bundle_fp:-없음}, 신뢰하는 키 $trusted_fp"
fi
openssl pkeyutl -verify -pubin -inkey "$VERIFY_KEY" -rawin -in "$BUNDLE/MANIFEST.sha256" \
    -sigfile "$BUNDLE/MANIFEST.sig" >/dev/null 2>&1 \
  || fail "MANIFEST.sig 서명이 릴리스 키 $trusted_fp 로 검증되지 않습니다"

# 2. Every file as listed, nothing missing, nothing added.
cd "$BUNDLE"
bad=$(sha256sum --check --strict --quiet MANIFEST.sha256 2>/dev/null | sed -n 's/: FAILED.*$//p' | head -1) || true
[ -z "$bad" ] || fail "변경되었거나 없는 파일: $bad"
extra=$(comm -13 <(cut -c67- MANIFEST.sha256 | LC_ALL=C sort) \
                 <(find . -type f ! -name MANIFEST.sha256 ! -name MANIFEST.sig -printf '%P\n' | LC_ALL=C sort) | head -1)
[ -z "$extra" ] || fail "목록에 없는 파일: $extra"
VERSION=$(cat project/RELEASE)
echo "== 번들 $VERSION: 서명(키 $trusted_fp)과 파일 $(wc -l < MANIFEST.sha256)개 확인"

# 3. Debian packages: only those missing or at another version, with dpkg alone.
todo=()
for deb in debs/*.deb; do
  [ -e "$deb" ] || continue
  pkg=$(dpkg-deb -f "$deb" Package)
  ver=$(dpkg-deb -f "$deb" Version)
  have=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null || true)
  [ "$have" = "install ok installed $ver" ] || todo+=("$deb")
done
case "$DEBS" in
  install) if [ ${#todo[@]} -gt 0 ]; then echo "== dpkg: ${#todo[@]}개 패키지"; dpkg -i "${todo[@]}" >/dev/null; fi ;;
  check) echo "== dpkg: 설치할 패키지 ${#todo[@]}개 (확인만)"; printf '   %s\n' "${todo[@]##*/}" | head -20 ;;
  skip) ;;
  *) fail "--debs 는 install, check, skip 중 하나입니다" ;;
esac

# 4. The release: the project and its own virtualenv from the wheelhouse.
PYTHON=${GUARDIA_PYTHON:-/usr/bin/python3.11}
mkdir -p "$PREFIX/releases" "$DATA"
chmod 700 "$DATA"
REL=$PREFIX/releases/$VERSION
OLD=""
[ -L "$PREFIX/current" ] && OLD=$(readlink -f "$PREFIX/current")
if [ "$OLD" = "$REL" ]; then
  echo "== 릴리스 $VERSION 은 이미 설치되어 실행 중입니다"
elif [ ! -f "$REL/.installed" ]; then
  # Built where it will run (a virtualenv cannot be moved); `.installed` is written last,
  # so an interrupted install is redone from scratch.
  rm -rf "$REL"
  cp -a project "$REL"
  "$PYTHON" -m venv "$REL/.venv"
  "$REL/.venv/bin/pip" install -q --no-index --find-links wheelhouse -r "$REL/requirements.txt"
  if [ -d wheelhouse-synapse ] && [ -n "$HOMESERVER" ]; then
    "$PYTHON" -m venv "$REL/.venv-synapse"
    "$REL/.venv-synapse/bin/pip" install -q --no-index --find-links wheelhouse-synapse \
        -r "$REL/requirements-synapse.txt"
  fi
  date -u +%FT%TZ > "$REL/.installed"
fi

ENVFILE=$PREFIX/guardia.env
if [ ! -f "$ENVFILE" ]; then
  (umask 077 && cat > "$ENVFILE" <<ENV
GUARDIA_DATA_DIR=$DATA
GUARDIA_SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(64))')
ENV
)
fi
set -a
# shellcheck disable=SC1090
. "$ENVFILE"
set +a
manage() { (cd "$1" && .venv/bin/python manage.py "${@:2}"); }
switch() { ln -sfn "$1" "$PREFIX/current.new" && mv -T "$PREFIX/current.new" "$PREFIX/current"; }

# 5. First install, or an upgrade that keeps the database, the keys and the chain.
if [ -n "$OLD" ] && [ "$OLD" != "$REL" ] && [ -d "$OLD" ]; then
  echo "== 업그레이드: $(cat "$OLD/RELEASE") -> $VERSION"
  manage "$OLD" audit_verify >/dev/null || code=4 fail "업그레이드 전 감사 체인이 검증되지 않습니다: 아무것도 바꾸지 않았습니다"
  BACKUP=$DATA/backups/before-$VERSION-$(date +%Y%m%d%H%M%S)
  mkdir -p "$DATA/backups"
  manage "$OLD" backup "$BACKUP" >/dev/null
  if manage "$REL" migrate --noinput -v 0 && manage "$REL" audit_verify >/dev/null; then
    switch "$REL"
    echo "== 업그레이드 완료: 체인 검증 통과 (백업: $BACKUP)"
  else
    echo "== 업그레이드 실패: 이전 릴리스로 되돌립니다" >&2
    manage "$OLD" restore --replace "$BACKUP" >&2
    code=5 fail "업그레이드하지 못했습니다. 이전 릴리스 $(cat "$OLD/RELEASE") 로 복원했고 체인이 검증되었습니다 (백업: $BACKUP)"
  fi
else
  manage "$REL" migrate --noinput -v 0
  switch "$REL"
  echo "== 설치 완료: $PREFIX/current -> $REL"
fi
manage "$PREFIX/current" collectstatic --noinput -v 0

if [ -n "$START" ]; then
  # The demo on the embedded defaults (SQLite, loopback Redis, the sshd testbed), offline.
  cd "$PREFIX/current"
  exec env GUARDIA_SKIP_SETUP=1 scripts/demo.sh
fi
