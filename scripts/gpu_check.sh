#!/usr/bin/env bash
# gpu_check.sh: the device check, for a lent GPU machine.
#
# Runs from the root of a gpunn checkout on a machine that already has python3.12 with
# cupy-cuda13x 14.2, numpy, pytest and click, and no internet: nothing is installed,
# gpunn is imported from the checkout through PYTHONPATH.  Writes into $OUT (default
# ./out):
#   env.txt         nvidia-smi, driver/CUDA/NVRTC/CuPy/NumPy versions, the device name
#   pytest-gpu.log  `pytest -m gpu -q`: the kernel parity tests on the device
#   bench.json      `python -m gpunn bench` on configs A, C, D: gpunn on the GPU (CUDA graph),
#   bench.log       PyTorch CUDA when installed, and the cuBLAS GEMM-only floor
#   nccl*.{json,log,txt}  a 1-rank NCCL data-parallel run against the plain run
# and prints a short summary table last.  Every step has a time limit; the whole run
# stays well under 5 minutes.  Exit status: 0 when gpu tests ran and all passed, else 1
# (all skipped means no device answered, which is a failure on a GPU machine).

set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"

# -- environment -----------------------------------------------------------------
{
    echo "# nvidia-smi"
    timeout 30 nvidia-smi 2>&1 || echo "nvidia-smi failed (exit $?)"
    echo
    echo "# versions"
    timeout 60 "$PYTHON" - <<'EOF' 2>&1
import platform, sys
print("python", sys.version.split()[0], platform.machine())
import numpy
print("numpy", numpy.__version__)
import cupy
print("cupy", cupy.__version__)
from cupy.cuda import nvrtc, runtime
print("cuda runtime", runtime.runtimeGetVersion(), "driver", runtime.driverGetVersion())
print("nvrtc", "%d.%d" % nvrtc.getVersion())
props = runtime.getDeviceProperties(0)
print("device 0", props["name"].decode(), "sm_%d%d" % (props["major"], props["minor"]))
EOF
} >"$OUT/env.txt" 2>&1
version_of() { grep -m1 "^$1 " "$OUT/env.txt" | cut -d' ' -f2- || true; }

# -- kernel parity tests on the device -----------------------------------------------
timeout 120 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests >"$OUT/pytest-gpu.log" 2>&1
pytest_status=$?
summary=$(tail -n 1 "$OUT/pytest-gpu.log")
count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 || true; }
passed=$(count passed); failed=$(count failed); errors=$(count error); skipped=$(count skipped)

# -- benchmark: gpunn on the GPU against the cuBLAS GEMM-only floor (and PyTorch CUDA if installed) --
timeout 90 "$PYTHON" -m gpunn bench --configs A,C,D --samples 50000 --epochs 3 \
    --peers gpunn-cupy,torch-cuda,gemm-floor-cuda --json-out "$OUT/bench.json" >"$OUT/bench.log" 2>&1
bench="exit $?"

# -- NCCL data-parallel path: 1 rank, must equal the plain cupy run bit for bit ----------
{
if ! timeout 60 "$PYTHON" -W ignore -c "from cupy.cuda import nccl; raise SystemExit(0 if nccl.available else 1)"; then
    echo "nccl: skipped (CuPy cannot load libnccl: pip install 'nvidia-nccl-cu13>=2.27.7,<3')"
else
    LAUNCH=()  # mpiexec only where mpi4py is there too; one GPU rank needs neither
    if command -v mpiexec >/dev/null && "$PYTHON" -c "import mpi4py" 2>/dev/null; then LAUNCH=(mpiexec -n 1); fi
    ARGS=(train --backend cupy --dtype float64 --epochs 3 --batch-size 10 --seed 1 --json --quiet)
    timeout 40 "${LAUNCH[@]}" "$PYTHON" -m gpunn "${ARGS[@]}" --distributed > "$OUT/nccl.json" 2> "$OUT/nccl.log"
    echo "nccl: distributed exit $?${LAUNCH[*]:+ (under ${LAUNCH[*]})}"
    timeout 40 "$PYTHON" -m gpunn "${ARGS[@]}" > "$OUT/nccl-plain.json" 2>> "$OUT/nccl.log"
    echo "nccl: plain exit $?"
    timeout 30 "$PYTHON" - "$OUT/nccl.json" "$OUT/nccl-plain.json" <<'PY'
import json, sys
try:
    dist, plain = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:])
except (OSError, ValueError, IndexError) as exc:
    sys.exit(f"nccl: FAIL no JSON summary ({exc!r}); see nccl.log")
same = dist["communicator"] == "nccl" and dist["ranks"] == 1 and all(
    dist[k] == plain[k] for k in ("test_loss", "test_accuracy", "train_loss"))
print(f"nccl: {'PASS' if same else 'FAIL'} 1-rank NCCL run {'equals' if same else 'differs from'} the plain run "
      f"(test_loss {dist['test_loss']!r} vs {plain['test_loss']!r}, {dist['samples_per_second']:,.0f} samples/s)")
PY
fi
} >"$OUT/nccl-summary.txt" 2>&1

# -- summary (last, so it is what a reader sees) ---------------------------------------
printf '\n%-16s %s\n' "check" "result"
printf '%-16s %s\n' "device" "$(version_of 'device 0')"
printf '%-16s %s\n' "cupy / nvrtc" "$(version_of cupy) / $(version_of nvrtc)"
printf '%-16s %s\n' "numpy / python" "$(version_of numpy) / $(version_of python)"
printf '%-16s passed %s, failed %s, errors %s, skipped %s (pytest exit %s)\n' "pytest -m gpu" \
    "${passed:-0}" "${failed:-0}" "${errors:-0}" "${skipped:-0}" "$pytest_status"
printf '%-16s %s\n' "bench" "$bench"
tail -n 25 "$OUT/bench.log" | sed 's/^/    /'
printf '%-16s %s\n' "nccl" "$(tail -n 1 "$OUT/nccl-summary.txt")"
printf '%-16s %s\n' "logs" "$OUT"
[ "$pytest_status" -eq 0 ] && [ "${passed:-0}" -gt 0 ]
