#!/usr/bin/env bash
# Creates .venv with everything the extractor needs and the package video_features in it (editable).
#   ./setup.sh          torch's CUDA build (runs on a CPU too): about 5.8 GB in .venv, 3.2 GB of it NVIDIA's libraries
#   ./setup.sh --cpu    torch's CPU build from PyTorch's own index (TORCH_CPU_INDEX), for machines without a GPU
#   ./setup.sh --test   also the test-only reference packages, and as root the programs the tests start
# Safe to run again. Needs Python 3.11+ (PyAV 18's wheels). The ffmpeg program is optional
# (fps_method=reencode and the tests use it) and is installed with apt-get when run as root.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
CPU= TEST=
for argument in "$@"; do
  case "$argument" in
    --cpu) CPU=1 ;;
    --test) TEST=1 ;;
    *) echo "error: unknown option $argument (use --cpu, --test or both)" >&2; exit 2 ;;
  esac
done
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $("$PYTHON" --version 2>&1) is too old: Python 3.11 or newer is needed (set PYTHON=python3.11)" >&2
  exit 2
fi

# apt_install WHAT PACKAGES...: Debian's packages as root; a failure (another apt-get holding its
# lock, no network) is said in one line with what it means, and the set-up goes on
apt_install() {
  local what=$1; shift
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }; then
    echo "warning: apt-get could not install $* (its message is above; another apt-get may hold its lock:" \
      "run ./setup.sh again when it is done); without it $what" >&2
    return 1
  fi
}

if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install "fps_method=reencode and the tests that run the ffmpeg program cannot run" ffmpeg || true
  else
    echo "note: the ffmpeg program is not installed (needed for fps_method=reencode and the tests)" >&2
  fi
fi

# nginx for the tests of remote inputs, which start and stop their own on a free port with a
# config of their own: the package's scripts must neither start it (port 80) nor enable it at boot.
install_nginx() {
  dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q "ok installed" && return
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then  # Debian's way to keep a package's scripts from starting its daemon
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  apt_install "the tests of remote inputs over HTTP are skipped (and CI fails)" nginx || true
  [ -z "$added" ] || rm -f "$policy"
  update-rc.d nginx disable >/dev/null 2>&1 || true
}

PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if [ -n "$CPU" ]; then  # before requirements.txt, which then finds torch and torchvision there
  "${PIP[@]}" --index-url "$TORCH_CPU_INDEX" "$(grep '^torch==' requirements.txt | cut -d' ' -f1)" \
    "$(grep '^torchvision==' requirements.txt | cut -d' ' -f1)"
fi
"${PIP[@]}" -r requirements.txt
# the project itself, editable: the Python API imports from any folder (requirements are above)
"${PIP[@]}" --no-deps -e .
if [ -n "$TEST" ]; then
  "${PIP[@]}" -r requirements-test.txt
  # a one-node Slurm cluster for tests/test_scale_out.py (the tests start and stop it; skipped without)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    bash tests/slurm_cluster.sh install
    install_nginx
  fi
fi
