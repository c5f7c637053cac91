#!/usr/bin/env bash
# Creates (or updates) the Python virtualenv the tests use — schemathesis and aiosmtpd from
# PyPI, pinned in tests/requirements.txt — outside the clone, and prints its python's path.
# Installs Debian's python3-venv first when the interpreter cannot make a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PARLA_PY_VENV:-/var/tmp/parla-py}"
requirements=tests/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq </dev/null >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 \
      --no-install-recommends python3-venv </dev/null >&2
    python3 -m venv "$venv" >&2
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
