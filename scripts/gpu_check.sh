#!/usr/bin/env bash
# gpu_check.sh: the device check, for a lent GPU machine (draft).
#
# Runs from the root of a gpunn checkout on a machine that already has python3.12 with
# cupy-cuda13x 14.2, numpy, pytest and click, and no internet: nothing is installed,
# gpunn is imported from the checkout through PYTHONPATH.  Writes into $OUT (default
# ./out):
#   env.txt         nvidia-smi, driver/CUDA/NVRTC/CuPy/NumPy versions, the device name
#   pytest-gpu.log  `pytest -m gpu -q`: the kernel parity tests on the device
#   bench.json      `python -m gpunn bench --backend cupy`, when that command exists
#   bench.log       its output, or why it was skipped
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
timeout 240 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests >"$OUT/pytest-gpu.log" 2>&1
pytest_status=$?
summary=$(tail -n 1 "$OUT/pytest-gpu.log")
count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 || true; }
passed=$(count passed); failed=$(count failed); errors=$(count error); skipped=$(count skipped)

# -- benchmark (only if this checkout has the command) ---------------------------------
if timeout 60 "$PYTHON" -m gpunn bench --help >/dev/null 2>&1; then
    timeout 90 "$PYTHON" -m gpunn bench --backend cupy --json-out "$OUT/bench.json" \
        >"$OUT/bench.log" 2>&1
    bench="exit $?"
else
    echo "skipped: \`python -m gpunn bench\` is not available in this checkout" >"$OUT/bench.log"
    bench="not available"
fi

# -- summary (last, so it is what a reader sees) ---------------------------------------
printf '\n%-16s %s\n' "check" "result"
printf '%-16s %s\n' "device" "$(version_of 'device 0')"
printf '%-16s %s\n' "cupy / nvrtc" "$(version_of cupy) / $(version_of nvrtc)"
printf '%-16s %s\n' "numpy / python" "$(version_of numpy) / $(version_of python)"
printf '%-16s passed %s, failed %s, errors %s, skipped %s (pytest exit %s)\n' "pytest -m gpu" \
    "${passed:-0}" "${failed:-0}" "${errors:-0}" "${skipped:-0}" "$pytest_status"
printf '%-16s %s\n' "bench" "$bench"
printf '%-16s %s\n' "logs" "$OUT"
[ "$pytest_status" -eq 0 ] && [ "${passed:-0}" -gt 0 ]
