#!/usr/bin/env bash
# The measurements still owed on a GPU machine, one step per device call (each fits in 10 minutes).
# Run from the repository root on the device, with the ignored .whl/ (CompressAI's and
# pytorch-msssim's cp312 wheels) and .kodak/ (the 24 Kodak images) carried; what a step writes
# goes under $OUT (default runs/gpu-session), which the device call copies back.
#
#   scripts/gpu_session.sh portability   # issue 2: encode on the GPU, decode --strict there; the
#                                        # files come back for `sgacodec decode --strict` here
#   scripts/gpu_session.sh speed         # issue 4: bf16, eager vs compiled, CUDA graphs (~8 min)
#   scripts/gpu_session.sh results       # issue 5: continue the full protocol (stops at LIMIT s)
#   scripts/gpu_session.sh tests         # the CUDA paths of the suite against the CPU
#   scripts/gpu_session.sh large         # issue 30: refinement of a 12 MP photo in tiles and whole,
#                                        # and of a 48 MP one in tiles (time, peak GPU memory)
#
# Every step first installs the wheels into /tmp/site (a few seconds; a fresh machine has none).
# sgacodec itself is not installed there: PYTHONPATH names the checkout (the scripts edit no sys.path).
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in portability|speed|results|tests|large) ;; *) sed -n 2,16p "$0"; exit 2 ;; esac
OUT=${OUT:-runs/gpu-session}
mkdir -p "$OUT"
if ! python3 -c "import compressai" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, compressai; print('torch', torch.__version__, 'compressai', compressai.__version__)"
SG="python3 -W ignore -m sgacodec"

case ${1:-} in
  portability)
    $SG encode docs/example.png .kodak/kodim01.png .kodak/kodim04.png -o "$OUT/enc" --iterations 100 \
      --device cuda --json --force | tee "$OUT/encode.jsonl"
    $SG decode "$OUT"/enc/*.bin -o /tmp/dec --strict --json --force | tee "$OUT/decode-gpu-machine.jsonl"
    echo "now, on the CPU machine: sgacodec decode --strict FILES_AT/enc/*.bin -o /tmp/dec --json" ;;
  speed)
    B="python3 -W ignore benchmarks/refine_speed.py --images .kodak --iterations 2000 --eval-every 10"
    for run in "--precision bf16 --modes fast" "--compile off --modes fast" \
               "--compile reduce-overhead --modes fast"; do
      echo "=== $run"; $B $run 2>&1 | tee -a "$OUT/speed.txt"
    done ;;
  results)
    KODAK=.kodak DEVICE=cuda timeout "${LIMIT:-540}" scripts/make_results.sh || true
    cp docs/results/full.jsonl docs/results/full.stage*.cmd "$OUT/" ;;
  large)
    L="python3 -W ignore benchmarks/refine_speed.py --images .kodak --iterations 200 --modes fast"
    for run in "--large 4000x3000 --refine-tiles on" "--large 4000x3000 --refine-tiles off" \
               "--large 8000x6000 --refine-tiles on"; do
      name=$(echo "$run" | tr -c 'a-z0-9' _)
      echo "=== $run"; $L $run --json "$OUT/large$name.json" 2>&1 | tee -a "$OUT/large.txt" || true
    done ;;
  tests)
    python3 -m pytest -q -rs tests/test_refine.py::test_cuda_fast_paths_match_the_cpu_and_decode_exactly \
      2>&1 | tee "$OUT/tests.txt" ;;
esac
