#!/usr/bin/env bash
# Regenerate every BENCHMARKS.md section from one commit (refuses a tree with uncommitted code).
#
#   bench/run_all.sh [LOGDIR]      # about 100 minutes on 2 cores (bench/predictor.py alone about 48)
#
# Order: the host-timing benches first, alone (latency measurements on a quiet machine); then the searches,
# two at a time (quality and the ablation, one training thread each), with the instruction-count and arena
# benches (deterministic counts, their build/run seconds are the only timings) beside them; wall-clock-timed
# benches (make demo, parallel search) last, alone. Each section is stamped with the machine, date and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-/tmp/chipfit-bench}
mkdir -p "$LOG"
PY=.venv/bin/python
if [ -n "$(git status --porcelain -- . ':(exclude)BENCHMARKS.md' ':(exclude)bench/*.json')" ]; then
    echo "uncommitted changes: commit first, so that every section names one commit" >&2
    exit 2
fi
run() { local name=$1; shift; echo "$(date +%T) $name"; "$PY" "$@" >"$LOG/$name.log" 2>&1 || echo "FAILED: $name (see $LOG/$name.log)"; }

run predictor bench/predictor.py
run runtime bench/runtime.py
run profile bench/profile.py

( run quality bench/quality.py ${QUALITY_MINUTES:+--minutes "$QUALITY_MINUTES"} --parallel 1 ) &
( run ablation bench/ablation.py --minutes "${ABLATION_MINUTES:-1.2}" --parallel 1 ) &
( run tflm bench/tflm.py --write; run arena_cores bench/arena_cores.py --write;
  run virtual_board bench/virtual_board.py --write; run predictor_mcu bench/predictor_mcu.py --write ) &
wait
( run search bench/search.py --seconds "${SEARCH_SECONDS:-60}" ) &
( run robustness bench/robustness.py --minutes "${ROBUSTNESS_MINUTES:-1.5}" ) &
wait
run demo bench/demo.py
run scale bench/scale.py
echo "$(date +%T) done; logs in $LOG"
