#!/usr/bin/env bash
# One training slice on a GPU machine, inside one 10-minute device command (issue 13; docs/models.md,
# "Training slices"). Here first: `python scripts/slice.py pack --index K`; then the device run
# it prints (command "scripts/train_slice.sh 2", carry [".slice"]); here after: `... restore`.
#
#   scripts/train_slice.sh [QUALITY]      # default 2 (the default model)
#
# 1. installs the carried CompressAI and pytorch-msssim wheels when they are missing (torch is there);
# 2. `sgacodec train` from the shipped weights of the model (fp16 safetensors -> fp32 model, a fresh
#    Adam) for BUDGET seconds of wall clock (--budget: lr / 10 after --decay-at of it, then the
#    quantile fit, update() and the safetensors export);
# 3. evaluates the export on the carried Kodak images without refinement, real bytes (every image
#    encoded and decoded), the CPU cores in parallel (processes);
# 4. leaves in OUTDIR: the weights (msh-qQ.safetensors), train.log, training.json and slice.json
#    (the evaluation with its provenance: machine, versions, commit, date, cumulative steps, data,
#    command). Then, here: `python scripts/ship.py FILES_AT/slice.json` (dry run by default).
#
# Environment (defaults for the GPU): SLICE (.slice, what `slice.py pack` filled), OUTDIR ($OUT, else
# runs/slice), BUDGET (420 s), DEVICE (cuda), BATCH (16), CROP (256), LR (1e-4), DECAY_AT (0.85),
# AMP (bf16), POOL (device), TRAIN_OPTS (more `sgacodec train` options, e.g. "--compile default
# --channels-last"), INIT (the shipped weights), LMBDA and N, M (the manifest's), WORKERS (the CPU
# cores, at most one per image), CKPT (/tmp: an 85 MB checkpoint is more than a run returns),
# PYTHON (python3). The CPU rehearsal (tests/test_slice.py) sets them for a tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${1:-2}
PY=${PYTHON:-python3}
SLICE=${SLICE:-.slice}
OUTDIR=${OUTDIR:-${OUT:-runs/slice}}
BUDGET=${BUDGET:-420}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/train.log
start=$(date +%s)
exec > >(tee -a "$LOG") 2>&1
echo "train_slice.sh q$Q: $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s, device $DEVICE"

if ! $PY -c "import compressai, pytorch_msssim" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$SLICE"/whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
$PY -c "import torch, compressai; print('torch', torch.__version__, 'compressai', compressai.__version__)"

# the model: its file, lambda and size from the manifest
read -r FILE M_LMBDA M_N M_M < <($PY -c "
import json, sys
m = next(m for m in json.load(open('sgacodec/models/weights/manifest.json'))['models'] if m['quality'] == int(sys.argv[1]))
print(m['file'], m['lmbda'], m['N'], m['M'])" "$Q")
INIT=${INIT:-sgacodec/models/weights/$FILE}
CKPT=${CKPT:-/tmp/slice-q$Q.pt}
rm -f "$CKPT"  # each slice starts from INIT
CMD=($PY -m sgacodec train "$SLICE/train" --val "$SLICE/val" --checkpoint "$CKPT" --init-from "$INIT"
     --lmbda "${LMBDA:-$M_LMBDA}" -N "${N:-$M_N}" -M "${M:-$M_M}" --steps 10000000 --budget "$BUDGET"
     --batch-size "${BATCH:-16}" --crop "${CROP:-256}" --lr "${LR:-1e-4}" --decay-at "${DECAY_AT:-0.85}"
     --amp "${AMP:-bf16}" --pool "${POOL:-device}" --val-every "${VAL_EVERY:-1000}" --log-every "${LOG_EVERY:-500}"
     --device "$DEVICE" --export "$OUTDIR/$FILE" ${TRAIN_OPTS:-})
echo "+ ${CMD[*]}"
t0=$(date +%s)
"${CMD[@]}"
trained=$(( $(date +%s) - t0 ))

$PY scripts/slice.py describe --slice "$SLICE" --init "$INIT" --weights "$OUTDIR/$FILE" --log "$LOG" \
  --quality "$Q" --device "$DEVICE" --budget "$BUDGET" --seconds "$trained" --command "${CMD[*]}" \
  --out "$OUTDIR/training.json"

# evaluation: every Kodak image encoded and decoded, one process per CPU core (at most one per image);
# stopped in time to return the weights and the log whatever happens
left=$(( ${LIMIT:-590} - ($(date +%s) - start) ))
images=$(ls "$SLICE"/kodak/*.png | wc -l)
workers=${WORKERS:-$(nproc)}; [ "$workers" -le "$images" ] || workers=$images
echo "evaluating on $images images with $workers processes (${left}s left)"
[ "$left" -gt 10 ] || { echo "no time left to evaluate; the weights and the log are in $OUTDIR"; exit 1; }
timeout "$left" $PY -W ignore benchmarks/eval_models.py "$OUTDIR/$FILE" --kodak "$SLICE/kodak" \
  --workers "$workers" --verify-decode "$images" --json "$OUTDIR/slice.json" --meta "$OUTDIR/training.json"
echo "train_slice.sh done in $(( $(date +%s) - start ))s: $OUTDIR/{$FILE,train.log,training.json,slice.json}"
