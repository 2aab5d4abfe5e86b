#!/usr/bin/env bash
# The project's one GPU check. Runs from the repo root with the machine's own torch (no install):
# the quick benchmark on cpu and cuda, the convergence study on cuda, the remaining modes on cuda,
# and the CUDA tests. Each step has its own time limit, so one hang costs only itself.
#
#   scripts/gpu-check.sh OUTDIR        # writes logs and results folders under OUTDIR
set -uo pipefail
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%T), limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name exit $rc"
  [ "$rc" -eq 0 ] || status=1
}
$py - <<'PY' | tee "$out/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
PY
# Limits sum to 315 s so the whole check fits one device lease of 15 minutes with the machine's start.
step bench-quick 150 $py -m bench run --device cpu,cuda --preset quick --batch-sizes 1,32,1024,16384,131072 \
  --no-progress --out "$out/quick"
step convergence-cuda 45 $py -m bench convergence --device cuda --mode eager --output-activation relu,none \
  --out "$out/convergence"
step bench-cuda-modes 70 $py -m bench run --device cuda --mode eager,compile-cudagraphs,compile-fullstep,cudagraph \
  --preset quick --no-inference --no-progress --out "$out/cuda-modes"
step cuda-tests 50 $py -m pytest -q -m cuda tests
exit $status
