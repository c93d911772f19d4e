#!/usr/bin/env bash
# Installs what rta needs to build, run and test: Debian packages, then npm packages.
# Idempotent: a no-op when everything is present. Works as root or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

# libwslay-dev: only for the load tools (tools/rta-bench.c, tools/ws-codec-bench.c); rtad
# does not use it.
DEB_PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libuv1-dev libhttp-parser-dev libssl-dev libjansson-dev libsqlite3-dev
  libpq-dev libhiredis-dev libcurl4-openssl-dev libwslay-dev libinih-dev uthash-dev
  libcmocka-dev zlib1g-dev nodejs npm openssl sqlite3 curl
  postgresql redis-server tzdata wrk
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # node/npm may come from elsewhere (nodesource, nvm): accept any working binary.
    case "$p" in
      nodejs) command -v node >/dev/null && continue ;;
      npm) command -v npm >/dev/null && continue ;;
    esac
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages for the end-to-end tests and benchmarks (versions pinned in package-lock.json).
if [ -f package.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "install-deps: npm ci" >&2
    PUPPETEER_SKIP_DOWNLOAD=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  fi
fi
