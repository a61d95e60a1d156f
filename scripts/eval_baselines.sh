#!/usr/bin/env bash
# The README's baseline table: GT-driven policies in the evaluation harness with the embedded
# LiteMedSAM on the shared BiomedParse demo set (27 images, 71 masks), CPU.
#   OUT=runs/baselines DATA=../shared/data/biomedparse-demo WORKERS=1 scripts/eval_baselines.sh
# Re-running resumes each run where it stopped (finished samples are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/baselines}
DATA=${DATA:-demo}
WORKERS=${WORKERS:-1}
run() {  # name, policy, extra args...
  local name=$1 policy=$2
  shift 2
  medsam-agent eval --dataset "$DATA" --policy "$policy" --segmenter litemedsam \
    --workers "$WORKERS" --threads 1 --out "$OUT/$name" --no-progress "$@"
}
run oracle-box oracle-box
run clicker-1 clicker:1
run clicker-3 clicker:3
run clicker-5 clicker:5
# expert: the default expert -- the tight GT box, then ΔIoU-accepted corrections: the upper bound
# of an agent with GT access over this segmenter. expert-box: jittered box openings (as in the
# SFT data); expert-mix: the trajectory generator's hybrid mix (half first-click openings).
run expert expert
run expert-box "expert:jitter_min=0.05,jitter_max=0.1"
run expert-mix "expert:box_prob=0.5,jitter_min=0.05,jitter_max=0.1"
# the RITM / SimpleClick NoC protocol: 20 clicks
run clicker-20 clicker:20 --max-turns 20
