"""Run ``gpunn bench`` from a source checkout: ``python scripts/bench.py --quick``.

The command itself lives in :mod:`gpunn.bench.race`, so an installed gpunn has it too.
"""

from gpunn.bench.race import bench

if __name__ == "__main__":
    bench()
