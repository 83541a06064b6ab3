#!/usr/bin/env bash
# Every GPU check of the project in one call of the device tool (one lent H100/H200).
#
# Here, once:  make gpu-wheels        # the pure-Python and cp312 wheels the device lacks, into .whl/
# Then, with the device tool's `run`, carry [".whl"] and command:
#     bash benchmarks/gpu_checks.sh
# Results: one JSON line per figure in "$OUT/gpu_checks.jsonl" (plus one status line per
# check), the full output in "$OUT/gpu_checks.log". Exits non-zero when any check failed.
#
# The device image has python3 with CUDA torch but no monai, pydicom, nibabel, pydantic,
# highdicom or pylibjpeg: they come from .whl/ (pip install --no-index --no-deps into
# /tmp, nothing from the network), and medssl itself runs from the checkout on PYTHONPATH
# (no editable install, so no setuptools is needed). The install's and the checks' timeouts
# sum to 470 s, so the call fits the 8 minutes a check run is given.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
: "${OUT:?set OUT to a folder for the results (the device tool sets it)}"
mkdir -p "$OUT"
JSONL="$OUT/gpu_checks.jsonl"
LOG="$OUT/gpu_checks.log"
: >"$JSONL"
: >"$LOG"
PY=python3
WHEELS=${WHEELS:-$REPO/.whl}
SITE=${SITE:-/tmp/medssl-site}

status() {  # check name, exit code, seconds -> one JSON status line
  printf '{"check": "%s", "rc": %d, "seconds": %d}\n' "$1" "$2" "$3" | tee -a "$JSONL"
}

compgen -G "$WHEELS/*.whl" >/dev/null || { echo "no wheels in $WHEELS: run 'make gpu-wheels' here and carry .whl" >&2; exit 2; }
timeout 50 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "$WHEELS"/*.whl 2>&1 | tee -a "$LOG"
export PYTHONPATH="$REPO:$SITE"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
"$PY" - <<'EOF' | tee -a "$JSONL"
import json, torch, monai, pydicom, nibabel, highdicom, pydantic
assert torch.cuda.is_available(), "CUDA is not available to python3's torch"
print(json.dumps({"figure": "device", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "monai": monai.__version__, "pydicom": pydicom.__version__}))
EOF

failed=0
# check NAME TIMEOUT CMD...: runs CMD under TIMEOUT seconds; its JSON lines go to $JSONL, all output to $LOG.
check() {
  local name=$1 limit=$2 start rc tmp
  shift 2
  start=$SECONDS
  tmp=$(mktemp)
  echo "== $name: $*" | tee -a "$LOG"
  if timeout "$limit" "$@" >"$tmp" 2>&1; then
    rc=0
  else
    rc=$?
    failed=1
    echo "check $name failed with exit code $rc (see $LOG)" >&2
  fi
  tee -a "$LOG" <"$tmp"
  awk '/^\{/' "$tmp" >>"$JSONL"
  rm -f "$tmp"
  status "$name" "$rc" "$((SECONDS - start))"
}

# SSL pretraining at the reference's GPU configuration (Swin 48, 96^3, 4 crops x 2 views): the
# real loop fed from disk (crops/s, data-wait share, peak memory), then the step alone.
check ssl_loop 130 "$PY" benchmarks/pretrain_throughput.py --device cuda --steps 10 --warmup 3
# The same step raced against the reference's SSLHead + Loss + rot_rand + aug_rand, fp16 autocast.
check ssl_step 80 "$PY" benchmarks/bench_ssl_step.py --device cuda
# Sliding-window inference, SwinUNETR 48 on 512x512x300: medssl's window runner vs plain MONAI, both
# fp16 with Gaussian blending (ratio_vs_plain_gaussian; sw_batch 4 is the plain one's).
check predict_window 110 "$PY" benchmarks/predict_throughput.py --device cuda --repeats 2 --sw-batch 4 8 --amp fp16
# GPU tests (the benchmarks above already ran): short Swin pretraining on phantoms with falling
# losses, the predictor on CUDA against the CPU, the window runner against plain MONAI.
check gpu_tests 100 "$PY" -m pytest -q -x tests/gpu -k "losses_fall or matches_cpu or agrees"

exit "$failed"
