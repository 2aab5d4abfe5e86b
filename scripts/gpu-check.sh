#!/usr/bin/env bash
# The project's one GPU check. Runs from the repo root with the machine's own torch (no install):
# the CUDA tests, the quick benchmark on cpu and cuda, every mode on cuda with the default preset,
# and the convergence study on cuda. Each step has its own time limit, so one hang costs only itself.
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
step cuda-tests 240 $py -m pytest -q -m cuda tests
step bench-quick 300 $py -m bench run --device cpu,cuda --preset quick --no-progress --out "$out/quick"
step bench-cuda-all 300 $py -m bench run --device cuda --mode all --preset default --no-progress --out "$out/cuda-all"
step convergence-cuda 240 $py -m bench convergence --device cuda --mode eager --no-progress --out "$out/convergence"
exit $status
