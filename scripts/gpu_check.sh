#!/usr/bin/env bash
# gpu_check.sh: the device check, for a lent GPU machine.  One command, about 3 to 5 minutes.
#
# Runs from the root of a gpunn checkout on a machine that already has python3 with
# cupy-cuda13x 14.2, numpy, pytest and click (PyTorch with CUDA, mpi4py and nvidia-nccl-cu13
# are used when present) and no network: nothing is installed, gpunn is imported from the
# checkout through PYTHONPATH.  Writes into $OUT (default ./out):
#   env.txt          nvidia-smi; Python, NumPy, CuPy, CUDA, NVRTC, PyTorch versions; the device;
#                    the CUDA headers CuPy compiles its own kernels with; cupy.show_config()
#   kernels.txt      ptxas's registers, shared memory and spills of every gpunn kernel (device arch)
#   pytest-gpu.log   `pytest -m gpu`: kernel parity, training, CUDA graph, determinism, autotuner
#   bench.json/.log  `gpunn bench` on configs A, B, E, D: gpunn-cupy (autotuned dense path),
#                    gpunn-cupy-fused (one CUDA graph per step), gpunn-cupy-cublas (kernel by
#                    kernel), PyTorch eager CUDA and the cuBLAS GEMM-only floor
#   dense.txt        the bench's step times per dense path, the autotuner's picks, the targets
#   nccl*            a 1-rank NCCL data-parallel run, which must equal the plain run to the bit
# and prints a summary table last.  Every step has a time limit; together they stay under
# 6 minutes.  Exit status 0 when the gpu tests ran and passed, the benchmark ran and the NCCL
# run (where NCCL loads) matched; 1 otherwise, and at once (after env.txt) when no device
# answers.

set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"
started=$SECONDS

# -- environment (20 s) -----------------------------------------------------------------
{
    echo "# nvidia-smi"
    timeout 10 nvidia-smi 2>&1 || echo "nvidia-smi failed (exit $?)"
    echo
    echo "# versions, device, CUDA headers"
    timeout 20 "$PYTHON" - <<'EOF' 2>&1
import os, platform, sys
from importlib.metadata import PackageNotFoundError, version
print("python", sys.version.split()[0], platform.machine())
for name, dist in (("numpy", "numpy"), ("cupy", "cupy-cuda13x"), ("torch", "torch"), ("mpi4py", "mpi4py"),
                   ("nccl-wheel", "nvidia-nccl-cu13"), ("click", "click"), ("pytest", "pytest")):
    try:
        print(name, version(dist))
    except PackageNotFoundError:
        print(name, "not installed")
import cupy
from cupy.cuda import nvrtc, runtime
print("nvrtc", "%d.%d" % nvrtc.getVersion())
# CuPy 14.2 finds the CUDA headers with cuda.pathfinder (cupyx/_runtime.py, _RuntimeInfo:
# find_nvidia_header_directory("cudart")) and passes them to NVRTC as -I options
# (cupy._core.core.assemble_cupy_compiler_options); gpunn's own kernels include none.
try:
    from cuda.pathfinder import find_nvidia_header_directory
    print("cuda headers (pathfinder)", find_nvidia_header_directory("cudart"))
except Exception as exc:
    print("cuda headers (pathfinder)", f"not found ({type(exc).__name__}: {exc})")
from cupy._core import core
includes = [o[2:] for o in core.assemble_cupy_compiler_options(()) if o.startswith("-I")]
found = [d for d in includes if os.path.isfile(os.path.join(d, "cuda_fp16.h"))]
print("cuda headers (cupy -I)", found[0] if found else f"none holds cuda_fp16.h among {includes}")
print("cuda runtime", runtime.runtimeGetVersion(), "driver", runtime.driverGetVersion())
props = runtime.getDeviceProperties(0)
name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
print("device 0", name, "sm_%d%d" % (props["major"], props["minor"]))
EOF
    echo
    echo "# cupy.show_config()"
    timeout 20 "$PYTHON" -c "import cupy; cupy.show_config()" 2>&1
} >"$OUT/env.txt" 2>&1
version_of() { grep -m1 "^$1 " "$OUT/env.txt" | cut -d' ' -f2- || true; }
row() { printf '%-16s %s\n' "$1" "$2"; }

device="$(version_of 'device 0')"
if [ -z "$device" ]; then
    reason="$(grep -m1 -iE 'error|insufficient|not available' "$OUT/env.txt" || echo 'CuPy reported no device 0')"
    printf '\n'
    row "check" "result"
    row "device" "no device: $reason"
    row "logs" "$OUT/env.txt"
    exit 1
fi
arch="$(grep -m1 '^device 0' "$OUT/env.txt" | grep -oE 'sm_[0-9]+$')"

# -- what ptxas makes of the kernels for this device (30 s, no launch) ----------------------
timeout 30 "$PYTHON" scripts/kernel_resources.py "$arch" >"$OUT/kernels.txt" 2>&1
kernels="exit $?, $(awk -F'|' 'NR > 2 { if ($3 > r) r = $3; s += $6 + $7 } END { printf "max %d registers, %d spill bytes", r, s }' "$OUT/kernels.txt")"

# -- tests on the device (130 s) --------------------------------------------------------------
timeout 130 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests >"$OUT/pytest-gpu.log" 2>&1
pytest_status=$?
summary=$(tail -n 1 "$OUT/pytest-gpu.log")
count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 || true; }
passed=$(count passed); failed=$(count failed); errors=$(count error); skipped=$(count skipped)

# -- benchmark: the dense paths against PyTorch and the GEMM floor (110 s) -------------------
timeout 110 "$PYTHON" -m gpunn bench --configs A,B,E,D --samples 30000 --epochs 3 \
    --peers gpunn-dense,torch-cuda,gemm-floor-cuda --json-out "$OUT/bench.json" >"$OUT/bench.log" 2>&1
bench_status=$?
timeout 10 "$PYTHON" scripts/dense_table.py "$OUT/bench.json" >"$OUT/dense.txt" 2>&1
targets_status=$?

# -- NCCL data-parallel path: 1 rank, must equal the plain run bit for bit (55 s) ------------
{
if ! timeout 15 "$PYTHON" -W ignore -c "from cupy.cuda import nccl; raise SystemExit(0 if nccl.available else 1)"; then
    echo "nccl: skipped (CuPy cannot load libnccl: pip install 'nvidia-nccl-cu13>=2.27.7,<3')"
else
    # no mpiexec: one GPU rank needs no MPI, and trains without it even where mpi4py cannot start MPI
    ARGS=(train --backend cupy --dtype float64 --epochs 3 --batch-size 10 --seed 1 --json --quiet)
    timeout 25 "$PYTHON" -m gpunn "${ARGS[@]}" --distributed > "$OUT/nccl.json" 2> "$OUT/nccl.log"
    echo "nccl: distributed exit $?"
    timeout 25 "$PYTHON" -m gpunn "${ARGS[@]}" > "$OUT/nccl-plain.json" 2>> "$OUT/nccl.log"
    echo "nccl: plain exit $?"
    timeout 10 "$PYTHON" - "$OUT/nccl.json" "$OUT/nccl-plain.json" <<'PY'
import json, sys
try:
    dist, plain = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:])
except (OSError, ValueError, IndexError) as exc:
    sys.exit(f"nccl: FAIL no JSON summary ({exc!r}); see nccl.log")
keys = ("test_loss", "test_accuracy", "train_loss", "train_accuracy")
# The GPU step has no floating-point atomics, so the runs agree to the bit: compare with ==.
same = dist["communicator"] == "nccl" and dist["ranks"] == 1 and all(dist[k] == plain[k] for k in keys)
print(f"nccl: {'PASS' if same else 'FAIL'} 1-rank NCCL run {'equals' if same else 'differs from'} the plain run "
      f"(test_loss {dist['test_loss']!r} vs {plain['test_loss']!r}; dense {dist['dense']}/{plain['dense']}, "
      f"step {dist['step']}/{plain['step']}; {dist['samples_per_second']:,.0f} vs "
      f"{plain['samples_per_second']:,.0f} samples/s)")
PY
fi
} >"$OUT/nccl-summary.txt" 2>&1
nccl="$(tail -n 1 "$OUT/nccl-summary.txt")"

# -- summary (last, so it is what a reader sees) ---------------------------------------------
printf '\n'
row "check" "result"
row "device" "$device"
row "cupy / nvrtc" "$(version_of cupy) / $(version_of nvrtc)"
row "numpy / python" "$(version_of numpy) / $(version_of python)"
row "torch" "$(version_of torch)"
row "cuda headers" "$(version_of 'cuda headers (cupy -I)')"
row "kernels $arch" "$kernels (kernels.txt)"
row "pytest -m gpu" "passed ${passed:-0}, failed ${failed:-0}, errors ${errors:-0}, skipped ${skipped:-0} (exit $pytest_status)"
row "bench" "exit $bench_status; us per training step by dense path (targets exit $targets_status):"
sed 's/^/    /' "$OUT/dense.txt"
row "nccl" "$nccl"
row "seconds" "$((SECONDS - started))"
row "logs" "$OUT"
[ "$pytest_status" -eq 0 ] && [ "${passed:-0}" -gt 0 ] && [ "$bench_status" -eq 0 ] \
    && ! grep -q "FAIL" <<<"$nccl"
