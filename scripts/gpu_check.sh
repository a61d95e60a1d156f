#!/usr/bin/env bash
# The prepared GPU check (run it whenever a session has a lent NVIDIA GPU; < 8 min on an H200):
#   1. builds _C for this GPU's architecture (MSRT_CUDA=ON: a failed CUDA build fails loudly),
#   2. runs every needs_cuda test (ops kernels vs their NumPy references, the device-resident
#      episode vs the host path),
#   3. the kernel benchmark (its CUDA rows appear when a GPU is visible),
#   4. a CUDA latency run of whole episodes (embedded LiteMedSAM, expert policy, 5 demo images;
#      host<->device bytes per turn),
# and writes every figure into one JSON, $OUT/gpu_check.json (default out/gpu).
# Uses the machine's python3 that holds a CUDA torch (PYTHON=... overrides) through a venv with
# --system-site-packages, so nothing is downloaded. From the repository root:
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi failed); nothing to check" >&2
  exit 2
fi
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
echo "== GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), sm_$CC"

# 1. build for this GPU (editable, in a venv that sees the machine's torch)
VENV=${GPU_VENV:-/tmp/msrt-gpu-venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
export MSRT_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${CC:-90}"
t0=$(date +%s)
if ! "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  echo "gpu_check: the CUDA build failed; see $OUT/build.log" >&2
  tail -40 "$OUT/build.log" >&2
  exit 1
fi
echo "== built in $(($(date +%s) - t0)) s"
"$VENV/bin/python" -m medsam_agent_rt info --json >"$OUT/info.json"

# 2. every needs_cuda test (they fail, not skip, when the GPU is there but a kernel is wrong)
timeout 240 "$VENV/bin/python" -m pytest -m needs_cuda -q -p no:cacheprovider -rs \
  --junitxml "$OUT/needs_cuda.xml" tests 2>&1 | tee "$OUT/needs_cuda.log"
TESTS_RC=${PIPESTATUS[0]}

# 3-4. benchmarks (bounded; a timeout keeps what was written)
timeout 150 "$VENV/bin/python" -m benchmarks.kernels --repeats 5 --json "$OUT/kernels.json" \
  >"$OUT/kernels.log" 2>&1
KERNELS_RC=$?
timeout 150 "$VENV/bin/python" -m benchmarks.latency --device cuda --limit 5 --quiet \
  --json "$OUT/latency_cuda.json" >"$OUT/latency.log" 2>&1
LATENCY_RC=$?

# one JSON with everything
"$VENV/bin/python" - "$OUT" "$TESTS_RC" "$KERNELS_RC" "$LATENCY_RC" <<'PYEOF'
import json, sys, pathlib
out, rcs = pathlib.Path(sys.argv[1]), dict(zip(("needs_cuda_tests", "kernels", "latency"), map(int, sys.argv[2:5])))
def load(name):
    p = out / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
tail = (out / "needs_cuda.log").read_text().strip().splitlines()[-1:] if (out / "needs_cuda.log").exists() else []
result = {"exit_codes": rcs, "info": load("info.json"), "needs_cuda_summary": tail,
          "kernels": load("kernels.json"), "latency_cuda": load("latency_cuda.json")}
(out / "gpu_check.json").write_text(json.dumps(result, indent=1))
print("wrote", out / "gpu_check.json", rcs)
PYEOF
exit "$TESTS_RC"
