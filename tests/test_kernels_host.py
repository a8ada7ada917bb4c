"""The CUDA kernel sources, compiled for the CPU (gpunn.compute.host_kernels), against the NumPy twins.

The comparisons and their tolerances are in kernel_cases.py; this module runs them on
HostKernels.  Needs only a host C++ compiler (skipped without one, failed on CI).
"""

import numpy as np
import pytest

from kernel_cases import KernelParity, activations, logits


class TestHostKernels(KernelParity):
    @pytest.fixture
    def kernels(self, host_kernels):
        return host_kernels

    @pytest.fixture
    def xp(self):
        return np


def test_emulated_backend_serves_host_kernels(host_kernels):
    from gpunn.compute.backend import get_backend
    from gpunn.compute.host_kernels import HostKernels

    assert isinstance(get_backend("emulated").kernels, HostKernels)



@pytest.mark.parametrize("objective", ["quadratic", "softmax_cross_entropy", "squared_error",
                                       "multilabel_cross_entropy"])
def test_output_delta_totals_do_not_depend_on_the_order_of_the_blocks(host_kernels, objective):
    """12 blocks of 256 samples, run in four different orders: the same loss to the last bit.

    A GPU runs blocks in no promised order; the totals are added up per block and
    then block by block in index order, never by floating-point atomics.
    """
    rng = np.random.default_rng(7)
    shape = (10, 3000)
    a = logits(rng, shape, np.float64) if objective == "softmax_cross_entropy" else activations(rng, shape, np.float64)
    labels = rng.integers(0, 10, shape[1]).astype(np.int32)
    targets = rng.integers(0, 2, shape).astype(np.float64)  # the float-target objectives' (0/1 fits both)
    weights = rng.uniform(0, 2, shape[1])
    totals = set()
    try:
        for seed in (0, 1, 2, 3):
            host_kernels.shuffle_blocks(seed)
            loss_sum, correct = np.array(0.25), np.array(3, np.int64)
            host_kernels.output_delta(a.copy(), labels, np.empty_like(a), loss_sum, correct, objective,
                                      targets=targets, weights=weights)
            totals.add((float(loss_sum).hex(), int(correct)))
    finally:
        host_kernels.shuffle_blocks(0)
    assert len(totals) == 1, totals
    assert host_kernels._scratch.arrivals[0] == 0, "the block counter is ready for the next launch"
