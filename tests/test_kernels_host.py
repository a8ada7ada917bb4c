"""The CUDA kernel sources, compiled for the CPU (gpunn.host_kernels), against the NumPy twins.

The comparisons and their tolerances are in kernel_cases.py; this module runs them on
HostKernels.  Needs only a host C++ compiler (skipped without one, failed on CI).
"""

import numpy as np
import pytest

from kernel_cases import KernelParity


class TestHostKernels(KernelParity):
    @pytest.fixture
    def kernels(self, host_kernels):
        return host_kernels

    @pytest.fixture
    def xp(self):
        return np


def test_emulated_backend_serves_host_kernels(host_kernels):
    from gpunn.backend import get_backend
    from gpunn.host_kernels import HostKernels

    assert isinstance(get_backend("emulated").kernels, HostKernels)

