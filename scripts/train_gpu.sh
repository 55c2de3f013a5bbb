#!/usr/bin/env bash
# Trains the embedded models msh-q1/q2/q3 on one GPU within a wall-time budget (issue 3).
#
#   DATA=.data BUDGET=480 scripts/train_gpu.sh OUTDIR
#
# DATA holds train/ and val/ (see docs/models.md). The three runs share the GPU, each its own
# process. A probe of PROBE seconds measures their step rate; each run then resumes its checkpoint
# with a fixed --steps sized to the time left (so the learning-rate decay lands inside the budget)
# and, once complete, exports fp16 safetensors to OUTDIR/msh-qN.safetensors. A fourth run (q2
# without bf16 autocast, 3000 steps, same seed) measures what mixed precision costs in R-D: compare
# its "val" lines with msh-q2's at the same steps (OUTDIR/q2-fp32.log against OUTDIR/q2.log).
set -uo pipefail
PY=${PYTHON:-python3}
DATA=${DATA:-runs/data}
OUT=${1:-runs/gpu}
BUDGET=${BUDGET:-480}  # seconds, probe included, export excluded
PROBE=${PROBE:-75}
LR=${LR:-2e-4}
AMP=${AMP:-bf16}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-16}
CROP=${CROP:-256}
mkdir -p "$OUT"
start=$(date +%s)
declare -A LMBDA=([q1]=0.0018 [q2]=0.0067 [q3]=0.025)
COMMON=(--val "$DATA/val" --batch-size "$BATCH" --crop "$CROP" --lr "$LR" --decay-at 0.8
        --val-every 500 --save-every 60 --log-every 500 --device "$DEVICE")

train() {  # q, extra args...; appends to OUTDIR/q.log
  local q=$1; shift
  $PY -m sgacodec train "$DATA/train" --checkpoint "$OUT/$q.pt" --lmbda "${LMBDA[${q%-*}]}" \
    "${COMMON[@]}" "$@" >>"$OUT/$q.log" 2>&1
}
step_of() { $PY -c "import torch,sys; print(torch.load(sys.argv[1], weights_only=True)['step'])" "$1"; }

# the mixed-precision comparison run, in the background for the whole budget
if [ "$AMP" = bf16 ]; then train q2-fp32 --amp off --steps 3000 --decay-at 1.0 --time-limit "$BUDGET" & fi

pids=()
for q in q1 q2 q3; do train $q --amp "$AMP" --steps 10000000 --time-limit "$PROBE" & pids+=($!); done
wait "${pids[@]}"
pids=()
left=$(( BUDGET - ($(date +%s) - start) ))
for q in q1 q2 q3; do
  s=$(step_of "$OUT/$q.pt")
  # steps for the time left: the probe's rate (its start-up included, so a slight underestimate),
  # less 25 s for loading the data again
  n=$(( s + s * (left - 25) / (PROBE - 5) )); [ "$n" -gt "$s" ] || n=$s
  echo "$q: probe reached step $s in ${PROBE}s; training to --steps $n in ${left}s" | tee -a "$OUT/$q.log"
  train $q --amp "$AMP" --steps "$n" --time-limit $(( left - 10 )) --export "$OUT/msh-$q.safetensors" &
  pids+=($!)
done
wait "${pids[@]}"
# a run the clock stopped short: finish it at the step it reached (quantile fit, update, export)
for q in q1 q2 q3; do
  if [ ! -f "$OUT/msh-$q.safetensors" ]; then
    s=$(step_of "$OUT/$q.pt")
    echo "$q: stopped at step $s before its --steps; finishing there" | tee -a "$OUT/$q.log"
    train $q --amp "$AMP" --steps "$s" --export "$OUT/msh-$q.safetensors"
  fi
done
wait
echo "done in $(( $(date +%s) - start ))s"
