"""Block-level execution on the CPU: barriers, shared memory and 2-D/3-D launches in the host shim.

The kernels below are valid CUDA (NVRTC compiles them here too) that give wrong answers
unless every thread of a block reaches each ``__syncthreads()`` before any passes it,
each block gets its own shared memory, and that memory starts poisoned.  The checks run
on the shim (kernels/host_shim.cuh) and on two mutants of it, built with the macros the
shim keeps for this purpose, to prove that they can fail:

* ``GPUNN_HOST_MUTANT_SEQUENTIAL``: ``__syncthreads()`` does nothing and each thread runs
  to its end in turn: the reduction and the transpose fail;
* ``GPUNN_HOST_MUTANT_UNPOISONED``: shared memory keeps what the previous block left:
  the check that an early read sees poison fails;
* both (the shim before fibers): all three fail.

The ``gpu`` test runs the same kernels on a GPU, where one answers.  The rest needs only
a host C++ compiler (skipped without one, failed on CI).
"""

import numpy as np
import pytest

from gpunn.compute import kernel_source
from gpunn.compute.host_kernels import HostModule, KernelLaunchError
from gpunn.compute.kernel_source import Launch
from kernel_cases import missing_tool

CODE = r"""
// Test kernels for tests/test_host_barriers.py (CUDA C++; also compiled for the CPU).

constexpr int SUM_THREADS = 256;
constexpr int TILE = 16;

// out[block] = sum of the block's SUM_THREADS inputs: a tree through shared memory.
template <typename T>
__device__ void block_sum(const T* in, T* out) {
    __shared__ T partial[SUM_THREADS];
    const int t = threadIdx.x;
    partial[t] = in[blockIdx.x * SUM_THREADS + t];
    __syncthreads();
    for (int half = SUM_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            partial[t] += partial[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        out[blockIdx.x] = partial[0];
    }
}

extern "C" __global__ void block_sum_f32(const float* in, float* out) { block_sum(in, out); }
extern "C" __global__ void block_sum_f64(const double* in, double* out) { block_sum(in, out); }

// out (cols x rows) = in (rows x cols) transposed, a TILE x TILE tile per block of
// TILE x TILE threads: read rows of in, write rows of out, through shared memory.
extern "C" __global__ void transpose_f32(const float* in, float* out, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    int x = blockIdx.x * TILE + threadIdx.x;
    int y = blockIdx.y * TILE + threadIdx.y;
    if (y < rows && x < cols) {
        tile[threadIdx.y][threadIdx.x] = in[y * cols + x];
    }
    __syncthreads();
    x = blockIdx.y * TILE + threadIdx.x;
    y = blockIdx.x * TILE + threadIdx.y;
    if (y < cols && x < rows) {
        out[y * rows + x] = tile[threadIdx.x][threadIdx.y];
    }
}

// out[i] = in[i + 1] within each block (cyclically), passed through shared memory.
// With `early`, the slot is read BEFORE the barrier that fills it: a bug.
extern "C" __global__ void rotate_f32(const float* in, float* out, int early) {
    __shared__ float slot[SUM_THREADS];
    const int t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    const int next = (t + 1) % blockDim.x;
    const float too_soon = slot[next];
    slot[t] = in[i];
    __syncthreads();
    out[i] = early ? too_soon : slot[next];
}

// Each thread writes gridDim, blockDim, blockIdx, threadIdx (12 values) as it sees them
// before and after a barrier (24 values) at its place in the grid; only the blocks
// with an odd linear index call the barrier, which is legal: it is uniform per block.
extern "C" __global__ void record_indices(unsigned* out) {
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned* mine = out + 24 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    for (int half = 0; half < 2; ++half) {
        const unsigned seen[12] = {gridDim.x,  gridDim.y,  gridDim.z,  blockDim.x,
                                   blockDim.y, blockDim.z, blockIdx.x, blockIdx.y,
                                   blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z};
        for (int k = 0; k < 12; ++k) {
            mine[12 * half + k] = seen[k];
        }
        if (half == 0 && block % 2 == 1) {
            __syncthreads();
        }
    }
}

// Threads outside [lo, hi) return at once; the others wait at a barrier: divergent
// unless [lo, hi) holds every thread of the block.
extern "C" __global__ void some_return_early(int* out, int lo, int hi) {
    const int t = threadIdx.x;
    if (t < lo || t >= hi) {
        return;
    }
    __syncthreads();
    out[t] = t;
}

// visit[b] = how many blocks started before block b (the order the blocks ran in),
// counted with atomicInc; *arrivals wraps back to 0 after the last block.
extern "C" __global__ void record_block_order(unsigned* visit, unsigned* arrivals) {
    if (threadIdx.x == 0) {
        const unsigned blocks = gridDim.x * gridDim.y;
        visit[blockIdx.x + gridDim.x * blockIdx.y] = atomicInc(arrivals, blocks - 1);
    }
}

// Odd threads reach the barrier twice, even threads once: divergent.
extern "C" __global__ void uneven_barriers(int* out) {
    for (int k = 0; k <= int(threadIdx.x % 2); ++k) {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}
"""

NAMES = (
    "block_sum_f32", "block_sum_f64", "transpose_f32", "rotate_f32", "record_indices",
    "some_return_early", "uneven_barriers", "record_block_order",
)
SUM_THREADS, TILE = 256, 16
SEQUENTIAL, UNPOISONED = "GPUNN_HOST_MUTANT_SEQUENTIAL", "GPUNN_HOST_MUTANT_UNPOISONED"


def _module(*defines) -> HostModule:
    try:
        return HostModule(CODE, NAMES, defines)
    except kernel_source.CompilerUnavailable as exc:
        missing_tool(str(exc))


@pytest.fixture(scope="module")
def shim():
    return _module()


# -- the checks, run on the shim and on its mutants ----------------------------------


def check_block_sums(module, dtype):
    blocks = 5
    values = np.random.default_rng(0).integers(-1000, 1000, blocks * SUM_THREADS).astype(dtype)
    sums = np.full(blocks, np.nan, dtype=dtype)
    name = "block_sum_" + {np.float32: "f32", np.float64: "f64"}[dtype]
    module.run(Launch(name, blocks, SUM_THREADS, (values, sums)))
    # Integers: exact in any order of summation.
    np.testing.assert_array_equal(sums, values.reshape(blocks, SUM_THREADS).sum(axis=1))


def check_transpose(module, rows, cols):
    matrix = np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32)
    out = np.full((cols, rows), np.nan, dtype=np.float32)
    grid = (-(-cols // TILE), -(-rows // TILE))
    module.run(Launch("transpose_f32", grid, (TILE, TILE), (matrix, out, np.int32(rows), np.int32(cols))))
    np.testing.assert_array_equal(out, matrix.T)


def _rotate(module, early, blocks=3, threads=64):
    values = np.arange(1, blocks * threads + 1, dtype=np.float32)
    out = np.zeros_like(values)
    module.run(Launch("rotate_f32", blocks, threads, (values, out, np.int32(early))))
    expected = np.roll(values.reshape(blocks, threads), -1, axis=1)
    return out.reshape(blocks, threads), expected


def check_early_reads_see_poison(module):
    """Reading a slot before the barrier that fills it gives NaN, in every block.

    The threads run in order within a barrier interval, so only the last thread of a
    block reads a slot already written (thread 0's); every other read is too early.
    Blocks 1 and 2 prove that each block starts from fresh poison, not from the
    slots block 0 filled.
    """
    out, expected = _rotate(module, early=True)
    assert np.isnan(out[:, :-1]).all()
    np.testing.assert_array_equal(out[:, -1], expected[:, -1])


# -- (a), (b), (c): right on the shim -------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_reduction_through_shared_memory(shim, dtype):
    check_block_sums(shim, dtype)


@pytest.mark.parametrize("rows,cols", [(37, 53), (16, 16), (1, 40), (53, 1)])
def test_tiled_transpose_with_2d_blocks(shim, rows, cols):
    check_transpose(shim, rows, cols)


def test_reads_after_the_barrier_see_the_other_threads_writes(shim):
    out, expected = _rotate(shim, early=False)
    np.testing.assert_array_equal(out, expected)


def test_reads_before_the_barrier_that_fills_shared_memory_see_poison(shim):
    check_early_reads_see_poison(shim)


# -- the same checks fail on the mutants ------------------------------------------------

CHECKS = {
    "reduction": lambda module: check_block_sums(module, np.float64),
    "transpose": lambda module: check_transpose(module, 37, 53),
    "poison": check_early_reads_see_poison,
}


@pytest.mark.parametrize(
    "defines,failing",
    [
        ((SEQUENTIAL,), {"reduction", "transpose"}),
        ((UNPOISONED,), {"poison"}),
        ((SEQUENTIAL, UNPOISONED), {"reduction", "transpose", "poison"}),  # the shim before fibers
    ],
)
def test_the_checks_fail_on_mutants_of_the_shim(defines, failing):
    mutant = _module(*defines)
    for name, check in CHECKS.items():
        if name in failing:
            with pytest.raises(AssertionError):
                check(mutant)
        else:
            check(mutant)


# -- (d): barrier divergence is an error, and the module works on ---------------------


@pytest.mark.parametrize(
    "lo,hi,waits,finished",
    [
        (16, 64, "(16,0,0)", "(0,0,0)"),  # thread 0 finishes first: found in a plain call
        (0, 16, "(0,0,0)", "(16,0,0)"),  # thread 0 waits: found between barrier intervals
    ],
)
def test_threads_returning_before_a_barrier_are_reported(shim, lo, hi, waits, finished):
    out = np.zeros(64, dtype=np.int32)
    launch = Launch("some_return_early", 2, 64, (out, np.int32(lo), np.int32(hi)))
    with pytest.raises(KernelLaunchError, match="barrier divergence in block") as info:
        shim.run(launch)
    message = str(info.value)
    assert f"thread {waits} waits" in message and f"thread {finished} finished" in message
    shim.run(launch._replace(args=(out, np.int32(0), np.int32(64))))
    np.testing.assert_array_equal(out, np.arange(64))


def test_threads_reaching_different_numbers_of_barriers_are_reported(shim):
    out = np.zeros(32, dtype=np.int32)
    with pytest.raises(KernelLaunchError, match=r"thread \(1,0,0\) waits"):
        shim.run(Launch("uneven_barriers", 1, 32, (out,)))


@pytest.mark.parametrize("block", [1025, (32, 33), (1, 1, 65)])
def test_launches_beyond_cudas_block_limits_are_refused(shim, block):
    with pytest.raises(KernelLaunchError, match="bad launch dimensions"):
        shim.run(Launch("some_return_early", 1, block, (np.zeros(1, np.int32), np.int32(0), np.int32(0))))


@pytest.mark.parametrize("extent", [0, (), (2, 0), (1, 1, 1, 1), 2**31])
def test_malformed_dimensions_are_refused(extent):
    with pytest.raises(ValueError, match="1 to 3 positive sizes"):
        kernel_source.dim3(extent)


# -- (e): every thread sees its own indices, in 1-D, 2-D and 3-D launches ----------------


def _expected_indices(grid, block):
    g, b = kernel_source.dim3(grid), kernel_source.dim3(block)
    rows = []
    for bz in range(g[2]):
        for by in range(g[1]):
            for bx in range(g[0]):
                for tz in range(b[2]):
                    for ty in range(b[1]):
                        for tx in range(b[0]):
                            rows.append([*g, *b, bx, by, bz, tx, ty, tz] * 2)
    return np.array(rows, dtype=np.uint32)


@pytest.mark.parametrize("grid,block", [(3, 64), ((3, 2), (8, 4)), ((2, 2, 2), (4, 2, 3)), (1, 1)])
def test_each_thread_sees_its_own_indices(shim, grid, block):
    expected = _expected_indices(grid, block)
    out = np.zeros_like(expected)
    shim.run(Launch("record_indices", grid, block, (out,)))
    np.testing.assert_array_equal(out, expected)


# -- (f): the order of the blocks ---------------------------------------------------------


def _block_order(module, grid):
    blocks = int(np.prod(kernel_source.dim3(grid)))
    visit, arrivals = np.full(blocks, 99, np.uint32), np.zeros(1, np.uint32)
    module.run(Launch("record_block_order", grid, 32, (visit, arrivals)))
    assert arrivals[0] == 0, "atomicInc wraps to 0 after the last block"
    return visit


def test_blocks_run_in_order_unless_shuffled(shim):
    np.testing.assert_array_equal(_block_order(shim, (7, 3)), np.arange(21))
    try:
        shim.shuffle_blocks(5)
        first, second = _block_order(shim, (7, 3)), _block_order(shim, (7, 3))
        shim.shuffle_blocks(6)
        other = _block_order(shim, (7, 3))
    finally:
        shim.shuffle_blocks(0)
    for order in (first, second, other):  # a permutation of the blocks, not the plain order
        assert sorted(order) == list(range(21)) and list(order) != list(range(21))
    assert list(first) != list(second), "each launch draws its own order"
    assert list(first) != list(other), "another seed, another order"
    np.testing.assert_array_equal(_block_order(shim, 21), np.arange(21))


# -- the same source is valid CUDA ---------------------------------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_the_test_kernels_compile_with_nvrtc(nvrtc_archs, arch):
    cubin = kernel_source.compile_for_arch(arch, CODE)
    for name in NAMES:
        assert name.encode() in cubin


class _GpuModule:
    """Runs a Launch of CODE's kernels on the GPU: NumPy arrays are copied there and back."""

    def __init__(self, cupy):
        self._cupy = cupy
        self._module = cupy.RawModule(code=CODE, options=kernel_source.RAWMODULE_OPTIONS)

    def run(self, launch: Launch) -> None:
        args = [self._cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in launch.args]
        kernel = self._module.get_function(launch.name)
        kernel(kernel_source.dim3(launch.grid), kernel_source.dim3(launch.block), tuple(args))
        for host, device in zip(launch.args, args):
            if isinstance(host, np.ndarray):
                host[...] = self._cupy.asnumpy(device)


@pytest.mark.gpu
def test_a_gpu_agrees_with_the_checks():
    from gpunn.compute.backend import BackendError, get_backend

    try:
        gpu = _GpuModule(get_backend("cupy").xp)
    except BackendError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")
    check_block_sums(gpu, np.float32)
    check_transpose(gpu, 37, 53)
    for grid, block in [(3, 64), ((3, 2), (8, 4)), ((2, 2, 2), (4, 2, 3))]:
        expected = _expected_indices(grid, block)
        out = np.zeros_like(expected)
        gpu.run(Launch("record_indices", grid, block, (out,)))
        np.testing.assert_array_equal(out, expected)
