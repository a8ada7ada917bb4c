"""The CUDA kernels on a GPU (gpunn.cuda_kernels.CupyKernels) against the NumPy twins.

The same comparisons as test_kernels_host.py (kernel_cases.py).  Marked ``gpu``: skipped
where ``get_backend("cupy")`` finds no device; run them with ``pytest -m gpu``.
"""

import pytest

from kernel_cases import KernelParity

pytestmark = pytest.mark.gpu


class TestCupyKernels(KernelParity):
    @pytest.fixture
    def kernels(self, cupy_kernels):
        return cupy_kernels

    @pytest.fixture
    def xp(self, cupy_kernels):
        import cupy

        return cupy


def test_kernel_module_is_built_once_per_device(cupy_kernels):
    from gpunn import cuda_kernels

    again = cuda_kernels.CupyKernels(0)
    assert again._functions is cupy_kernels._functions


def test_launches_can_be_captured_in_a_cuda_graph(cupy_kernels):
    import cupy
    import numpy as np

    z = cupy.zeros((4, 300), cupy.float32)
    b = cupy.ones(4, cupy.float32)
    cupy_kernels.bias_sigmoid(cupy.zeros_like(z), b)  # warm up outside the capture
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        cupy_kernels.bias_sigmoid(z, b)
        graph = stream.end_capture()
        graph.launch()
    stream.synchronize()
    np.testing.assert_allclose(cupy.asnumpy(z), 1 / (1 + np.exp(-1.0)), rtol=1e-6)
