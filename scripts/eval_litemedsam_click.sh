#!/usr/bin/env bash
# The README's litemedsam-click tables: the click-aware tool on the shared demo set (never used
# for training or selection), CPU, niced. Re-running resumes each eval run where it stopped.
#   OUT=runs/click_eval DATA=demo scripts/eval_litemedsam_click.sh
#   CLICKS=10 STRATEGIES="box+all_clicks+prev_logits box+all_clicks" ... (a smaller CPU budget)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/click_eval}
DATA=${DATA:-demo}
SEG=${SEG:-litemedsam-click}
PY=${PY:-.venv/bin/python}
CLICKS=${CLICKS:-20}
STRATEGIES=${STRATEGIES:-}
run() {  # name, policy, extra args...
  local name=$1 policy=$2
  shift 2
  nice -n 10 "$PY" -m medsam_agent_rt eval --dataset "$DATA" --policy "$policy" \
    --segmenter "$SEG" --threads 1 --out "$OUT/$name" --no-progress --gallery 0 "$@"
}
# clicker:K gives clicker:5 (its round-5 Dice: the click rule does not depend on K), the
# Dice-per-click curve and NoC@85 / NoC@90 (cap 20; not reached within K clicks counts 20)
run "clicker-$CLICKS" "clicker:$CLICKS" --max-turns "$CLICKS" --workers 2 &
run expert expert &
# shellcheck disable=SC2086  # STRATEGIES is a space-separated list
nice -n 10 "$PY" -m benchmarks.accuracy --segmenter "$SEG" ${STRATEGIES:+--strategies $STRATEGIES} \
  --out "benchmarks/results/accuracy_${SEG}.json" > "$OUT/accuracy.md" &
wait
