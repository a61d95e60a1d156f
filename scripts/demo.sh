#!/usr/bin/env bash
# The main job on the embedded defaults, offline, on a fresh machine (the README's first
# set-up command): install the runtime into .venv, then
#   1. the embedded policy (realpack-tiny) + embedded LiteMedSAM segment a held-out CT phantom
#      (no --policy, no --gt needed; the phantom's mask is passed only to score the turns);
#   2. the expert policy segments a real CT slice of the shared BiomedParse demo set;
#   3. python -m benchmarks.latency: per-stage latency medians over the demo set.
# Outputs (mask.png, overlay.png, trajectory.json per run; latency.json) land in $OUT.
#   OUT=DIR              output folder (default out/demo)
#   MSRT_VENV=DIR        virtual environment (default .venv)
#   MSRT_SHARED_DATA=DIR folder holding biomedparse-demo/ (default: found beside the checkout)
#   LATENCY_ARGS="..."   extra arguments for the latency benchmark (e.g. --limit 5)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/_venv.sh
. scripts/_venv.sh "torch,onnx,openvino,hf,medical"  # onnx + openvino: the default segmenter path (README "CPU speed")
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
medsam-agent info

echo "== 1. embedded policy + embedded segmenter (litemedsam-click) on a held-out CT phantom (seed 2000000)"
medsam-agent data phantoms --out "$OUT/phantoms" --n 1 --seed 2000000 --size 256 \
  --modalities ct --splits test=1 --no-progress
PH="$OUT/phantoms/phantom-ct"
medsam-agent segment "$PH/test/02000000_CT_abdomen.png" --target "liver in abdomen CT" \
  --gt "$PH/test_mask/02000000_CT_abdomen_liver.png" --out "$OUT/phantom-ct-liver" --overwrite

DEMO=$(python -c 'from medsam_agent_rt.evaluation import find_demo; print(find_demo())' \
  2>/dev/null || true)
if [ -z "$DEMO" ]; then
  echo "== 2-3 skipped: the BiomedParse demo set was not found; set MSRT_SHARED_DATA=DIR" \
    "(the folder holding biomedparse-demo/) to segment a real CT slice and run the benchmark"
  exit 0
fi
echo "== 2. expert policy + embedded segmenter on a real lung CT slice: a box, then clicks that raise Dice ($DEMO)"
medsam-agent segment "$DEMO/demo/02_CT_lung.png" --target "tumor in lung CT" \
  --policy expert --gt "$DEMO/demo_mask/02_CT_lung_tumor.png" \
  --out "$OUT/demo-ct-lung-tumor" --overwrite

echo "== 3. latency benchmark on the embedded defaults"
# shellcheck disable=SC2086
python -m benchmarks.latency --data "$DEMO" --json "$OUT/latency.json" ${LATENCY_ARGS:-}
echo "outputs in $OUT"
