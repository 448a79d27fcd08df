#!/usr/bin/env bash
# Set up everything spotify-logger needs on a fresh Debian or Raspberry Pi OS machine:
# redis-server (apt, when missing), a virtualenv in .venv, and the package with the given extras.
# Usage: scripts/bootstrap.sh [EXTRAS]   e.g. scripts/bootstrap.sh demo   or   scripts/bootstrap.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || { echo "bootstrap: please install $* with your package manager" >&2; return 1; }
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v redis-server >/dev/null; then
  echo "bootstrap: installing redis-server"
  apt_install redis-server || [ "${CI:-}" != "true" ]
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    echo "bootstrap: installing python3-venv"
    rm -rf "$venv"
    apt_install python3-venv
    "$python" -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
spec="."
[ -z "$extras" ] || spec=".[${extras}]"
"$venv/bin/python" -m pip install -q -e "$spec"
echo "bootstrap: ready ($venv, extras: ${extras:-none})"
