#!/usr/bin/env bash
# Build the offline bundle: one tar that installs, starts and upgrades GUARDiA on a Debian 12
# (x86_64, Python 3.11) machine with no network at all (docs/install-offline.md).
#
#   scripts/bundle.sh [--version V] [--ref GIT_REV] [--key RELEASE_KEY.pem] [--out DIR]
#
# The bundle holds the project at GIT_REV (default HEAD), a wheelhouse of every pinned Python
# dependency (plus the messenger homeserver's own wheelhouse when requirements-synapse.txt
# exists), the Debian packages needed at run time with their dependencies, install.sh, and
# MANIFEST.sha256 (the SHA-256 of every file) signed with an Ed25519 release key
# (MANIFEST.sig). The release key's public half is printed: operators compare it with the
# copy they were given before they install.
#
# This machine needs the network (PyPI, Debian) to build; downloads are cached under
# GUARDIA_BUNDLE_CACHE (default /var/cache/guardia-bundle) so a rebuild is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VERSION=""
REF=HEAD
KEY=${GUARDIA_RELEASE_KEY:-$HOME/.config/guardia/release-ed25519.pem}
OUT=$ROOT/var/bundles
. "$ROOT/scripts/options.sh"
parse_options "unknown argument, or an option without its value" \
  "--version VERSION" "--ref REF" "--key KEY" "--out OUT" -- "$@"
if [ -z "$VERSION" ]; then
  VERSION=$(git log -1 --format=%cd-%h --date=format:%Y%m%d "$REF")
fi
case "$VERSION" in
  *[!A-Za-z0-9._-]*|"") echo "version must be letters, digits, '.', '_' or '-': $VERSION" >&2; exit 2 ;;
esac

CACHE=${GUARDIA_BUNDLE_CACHE:-/var/cache/guardia-bundle}
# What GUARDiA needs at run time on the target (the testbed's sshd included); the build
# tools and the browser are for development only and stay out.
RUNTIME_DEBS=(openssh-client openssh-server redis-server tesseract-ocr tesseract-ocr-kor fonts-nanum
              libpq5 unixodbc python3.11-venv python3-venv)
# Wheels are built by the target's interpreter (Debian 12's python3.11), so environment
# markers (python_full_version, platform) are those of the machines that install them.
TARGET_PYTHON=${GUARDIA_TARGET_PYTHON:-/usr/bin/python3.11}
start=$(date +%s)

mkdir -p "$CACHE/wheels" "$CACHE/debs" "$OUT" "$(dirname "$KEY")"
PY=$CACHE/buildenv/bin/python
if [ ! -x "$PY" ]; then
  "$TARGET_PYTHON" -m venv "$CACHE/buildenv"
  "$PY" -m pip install -q --upgrade pip wheel
fi
if [ ! -f "$KEY" ]; then
  echo "== release key: generating $KEY (keep it offline; publish only the public half)"
  (umask 077 && openssl genpkey -algorithm ed25519 -out "$KEY")
fi

NAME=guardia-$VERSION
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/guardia-bundle.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/$NAME
mkdir -p "$B/wheelhouse" "$B/debs"

echo "== project at $REF"
mkdir -p "$B/project"
git archive --format=tar "$REF" | tar -x -C "$B/project"
echo "$VERSION" > "$B/project/RELEASE"

wheels() {  # wheels <requirements file> <destination>: from the cache, else build and cache them
  if ! "$PY" -m pip wheel -q --no-index --find-links "$CACHE/wheels" -w "$2" -r "$1" 2>/dev/null; then
    echo "== pip: fetching and building wheels for $1 into the cache"
    "$PY" -m pip wheel -q --find-links "$CACHE/wheels" -w "$CACHE/wheels" -r "$1"
    "$PY" -m pip wheel -q --no-index --find-links "$CACHE/wheels" -w "$2" -r "$1"
  fi
}
lap() { echo "   ($(( $(date +%s) - start )) s)"; }
lap
echo "== wheelhouse"
wheels "$B/project/requirements.txt" "$B/wheelhouse"
if [ -f "$B/project/requirements-synapse.txt" ]; then
  mkdir -p "$B/wheelhouse-synapse"
  wheels "$B/project/requirements-synapse.txt" "$B/wheelhouse-synapse"
fi

lap
echo "== Debian packages (${RUNTIME_DEBS[*]} and their dependencies, as installed here)"
fetch=()
while read -r pkg ver arch; do
  file="${pkg}_${ver//:/%3a}_${arch}.deb"
  for dir in "$CACHE/debs" /var/cache/apt/archives; do
    if [ -f "$dir/$file" ]; then
      cp "$dir/$file" "$B/debs/$file"
      continue 2
    fi
  done
  # A version the mirror no longer has was replaced by its current one in an earlier build.
  other=$(ls "$CACHE/debs/${pkg}"_*_"${arch}".deb 2>/dev/null | tail -1 || true)
  if [ -n "$other" ]; then
    cp "$other" "$B/debs/"
    continue
  fi
  fetch+=("$pkg=$ver")
done < <(python3 "$ROOT/scripts/deb_closure.py" "${RUNTIME_DEBS[@]}")
for spec in "${fetch[@]}"; do
  # The exact version installed here; a mirror that no longer has it gives its current one.
  (cd "$CACHE/debs" && { apt-get download -qq -o APT::Sandbox::User=root "$spec" >/dev/null 2>&1 \
      || apt-get download -qq -o APT::Sandbox::User=root "${spec%%=*}" >/dev/null; })
  cp "$CACHE/debs/${spec%%=*}"_*.deb "$B/debs/"
done
echo "   $(ls "$B/debs" | wc -l) packages (${#fetch[@]} downloaded)"

installer=$B/project/scripts  # the release's own installer and its option parser
[ -f "$installer/install-bundle.sh" ] || installer=$ROOT/scripts
cp "$installer/install-bundle.sh" "$B/install.sh"
if [ -f "$installer/options.sh" ]; then  # releases before it parsed their options inline
  cp "$installer/options.sh" "$B/options.sh"
fi
chmod 755 "$B/install.sh"
openssl pkey -in "$KEY" -pubout -out "$B/release-key.pub"

lap
echo "== manifest and signature"
(cd "$B" && find . -type f ! -name MANIFEST.sha256 ! -name MANIFEST.sig -printf '%P\n' | LC_ALL=C sort \
   | xargs -d '\n' sha256sum > MANIFEST.sha256)
openssl pkeyutl -sign -inkey "$KEY" -rawin -in "$B/MANIFEST.sha256" -out "$B/MANIFEST.sig"

TAR=$OUT/$NAME.tar
tar -C "$STAGE" -cf "$TAR.part" "$NAME"
mv "$TAR.part" "$TAR"
fingerprint=$(openssl pkey -pubin -in "$B/release-key.pub" -outform DER | sha256sum | cut -c1-64)
files=$(wc -l < "$B/MANIFEST.sha256")
size=$(du -m "$TAR" | cut -f1)
echo "bundle: $TAR ($size MiB, $files files, built in $(( $(date +%s) - start )) s)"
echo "release key (compare before installing): SHA-256 $fingerprint"
cat "$B/release-key.pub"
