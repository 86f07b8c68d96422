#!/usr/bin/env bash
# Creates .venv with everything the extractor needs; `./setup.sh --test` adds the test-only
# reference packages. Safe to run again. Needs Python 3.11+ (PyAV 18's wheels); the ffmpeg program is optional
# (fps_method=reencode and the tests use it) and is installed with apt-get when run as root.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $("$PYTHON" --version 2>&1) is too old: Python 3.11 or newer is needed (set PYTHON=python3.11)" >&2
  exit 2
fi

if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "note: the ffmpeg program is not installed (needed for fps_method=reencode and the tests)" >&2
  fi
fi

# nginx for tests/test_remote.py, which starts and stops its own on a free port with a config of
# its own: the package's scripts must neither start it (port 80) nor enable it at boot.
install_nginx() {
  dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q "ok installed" && return
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then  # Debian's way to keep a package's scripts from starting its daemon
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null \
    || echo "note: nginx could not be installed; the tests that need it are skipped" >&2
  [ -z "$added" ] || rm -f "$policy"
  update-rc.d nginx disable >/dev/null 2>&1 || true
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
# the project itself, editable: the Python API imports from any folder (requirements are above)
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt
  # a one-node Slurm cluster for tests/test_scale_out.py (the tests start and stop it; skipped without)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    bash tests/slurm_cluster.sh install
    install_nginx
  fi
fi
