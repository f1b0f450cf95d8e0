#!/usr/bin/env bash
# Installs remotetune with the example trials' packages and runs the quickstart experiment:
# a CNN tuned on scikit-learn's bundled digits, offline, on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[trials]'
# Trials see this shell's PATH, as in NNI's local mode: activate the venv so that the trial's
# `python3` is the one with torch (remotetune never puts its own interpreter first).
# shellcheck disable=SC1091
. .venv/bin/activate
exec remotetune run trials/mnist/config_digits.yml "$@"
