#!/usr/bin/env bash
# The project's one GPU check. Runs from the repo root with the machine's own torch (no install):
# the quick benchmark on cpu and cuda, the convergence study on cuda, the remaining modes on cuda
# (fused included), DDP on cuda (NCCL with one rank, gloo with two ranks sharing the GPU), and the
# CUDA tests. Each step has its own time limit, so one hang costs only itself.
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
# Limits sum to 390 s so the whole check fits one device lease of 15 minutes with the machine's start.
step bench-cuda-modes 110 $py -m bench run --device cuda --mode eager,fused,cudagraph,compile-fullstep,compile-cudagraphs \
  --preset quick --no-inference --no-progress --no-history --out "$out/cuda-modes"
step bench-quick 120 $py -m bench run --device cpu,cuda --preset quick --batch-sizes 1,32,1024,16384,131072 \
  --no-progress --no-history --out "$out/quick"
step ddp-cuda 50 $py -m bench ddp --device cuda --nproc 1 --backend nccl --steps 1000 --timeout 40 \
  --no-history --out "$out/ddp-nccl"
step ddp-cuda-gloo 40 $py -m bench ddp --device cuda --nproc 2 --backend gloo --steps 1000 --timeout 35 \
  --no-history --out "$out/ddp-gloo"
step convergence-cuda 30 $py -m bench convergence --device cuda --mode eager --output-activation relu,none \
  --no-history --out "$out/convergence"
step cuda-tests 40 $py -m pytest -q -m cuda tests
exit $status
