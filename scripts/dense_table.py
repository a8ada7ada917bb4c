"""Print the GPU step times of ``gpunn bench --json-out`` by dense path, with the pick and the targets.

    python scripts/dense_table.py out/bench.json

One row per configuration: microseconds per training step of ``gpunn-cupy-fused`` (one
CUDA graph per step), ``gpunn-cupy-cublas`` (kernel by kernel), ``gpunn-cupy`` (the
autotuner's pick, which it names with its step path) and PyTorch eager on CUDA; then
the ratios the design targets: on the narrow config A the fused graph at least 3x the
samples/s of the cuBLAS launches and 5x PyTorch's, and on the wide config D the
autotuned path no slower than cuBLAS (within 5 %, the spread of one run).
"""

import json
import sys

PEERS = ("gpunn-cupy-fused", "gpunn-cupy-cublas", "gpunn-cupy", "torch-cuda")


def _us(record):
    return record.get("median_step_us") if record and record.get("status") == "ok" else None


def _ratio(slow, fast):
    return slow / fast if slow and fast else None


def _cell(value, width: int, digits: int = 1) -> str:
    return f"{'-' if value is None else f'{value:,.{digits}f}':>{width}}"


def rows(result: dict):
    for name, config in result["configs"].items():
        peers = config["peers"]
        fused, cublas, auto, torch = (_us(peers.get(p)) for p in PEERS)
        pick = peers.get("gpunn-cupy", {})
        checks = []
        if name == "A":
            checks.append(("fused/cublas >= 3", _ratio(cublas, fused), 3.0))
            checks.append(("fused/torch >= 5", _ratio(torch, fused), 5.0))
        if name == "D":
            checks.append(("cublas/auto >= 0.95", _ratio(cublas, auto), 0.95))
        yield name, fused, cublas, auto, torch, pick, checks


def main(path: str) -> int:
    result = json.loads(open(path).read())
    print(f"{'config':<7}{'fused us':>10}{'cublas us':>11}{'auto us':>9}  {'auto pick (source, step)':<34}"
          f"{'torch us':>9}  targets")
    missed = 0
    for name, fused, cublas, auto, torch, pick, checks in rows(result):
        chosen = f"{pick.get('dense')} ({pick.get('dense_source')}, {pick.get('step')})" if pick.get("dense") else "-"
        verdicts = []
        for label, value, floor in checks:
            ok = value is not None and value >= floor
            missed += not ok
            verdicts.append(f"{label}: {_cell(value, 0, 2)} {'PASS' if ok else 'MISS'}")
        print(f"{name:<7}{_cell(fused, 10)}{_cell(cublas, 11)}{_cell(auto, 9)}  {chosen:<34}"
              f"{_cell(torch, 9)}  {'; '.join(verdicts)}")
    return missed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1]) else 0)
