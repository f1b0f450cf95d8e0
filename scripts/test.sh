#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages: OpenSSH server (real sshd in the SSH tests), rsync (sync benchmark),
# debootstrap (the offline Docker base image for the Compose cluster tests), chromium (the
# report and live page are loaded headless in tests/test_report_browser.py).
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v rsync >/dev/null || need+=(rsync)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,trials,dev]'

# NNI 3.0 in a virtualenv of its own (.nni-venv, git-ignored): tests/test_nni_v1.py runs NNI's
# v1-to-v2 converter there to check that remotetune reads NNI v1 files as NNI does. Only the
# converter is used; remotetune itself never imports nni.
if ! .nni-venv/bin/python -c 'import nni.experiment.config.convert' 2>/dev/null; then
  "$PY" -m venv .nni-venv
  .nni-venv/bin/python -m pip install -q --upgrade pip
  .nni-venv/bin/python -m pip install -q 'nni==3.0'
fi

exec .venv/bin/python -m pytest -q -ra "$@"
