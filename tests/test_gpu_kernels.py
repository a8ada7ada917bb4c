"""The CUDA kernels on a GPU (gpunn.compute.cuda_kernels.CupyKernels) against the NumPy twins.

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
    from gpunn.compute import cuda_kernels

    again = cuda_kernels.CupyKernels(0)
    assert again._functions is cupy_kernels._functions


def test_launches_can_be_captured_in_a_cuda_graph(cupy_kernels):
    """A recorded launch does nothing until the graph is launched; then it does the work.

    The inputs are made on the legacy default stream, so the device is synchronized
    before the non-blocking capture stream reads them (it does not wait for that stream).
    """
    import cupy
    import numpy as np

    z = cupy.zeros((4, 300), cupy.float32)
    b = cupy.ones(4, cupy.float32)
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        cupy_kernels.bias_act(z, b, "sigmoid")
        graph = stream.end_capture()
        stream.synchronize()
        assert float(z[0, 0]) == 0.0, "capturing must not run the kernel"
        graph.launch()
    stream.synchronize()
    np.testing.assert_allclose(cupy.asnumpy(z), 1 / (1 + np.exp(-1.0)), rtol=1e-6)


def test_a_fused_layer_and_its_epilogue_kernels_capture_without_a_warm_up(cupy_kernels):
    """The dense kernels are loaded when the kernels are made: the first launch ever can be recorded."""
    import cupy
    import numpy as np

    wb = cupy.asarray(np.full((4, 3), 0.5, np.float32))
    a_in = cupy.ones((4, 5), cupy.float32)
    z, delta = cupy.zeros((3, 5), cupy.float32), cupy.zeros((3, 5), cupy.float32)
    labels = cupy.zeros(5, cupy.int32)
    loss, correct = cupy.zeros((), cupy.float64), cupy.zeros((), cupy.int64)
    cupy.cuda.Device().synchronize()  # everything the graph touches exists before the capture
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        cupy_kernels.dense_forward(wb, a_in, z, "identity")
        cupy_kernels.output_delta(z, labels, delta, loss, correct, "softmax_cross_entropy")
        graph = stream.end_capture()
        for _ in range(3):
            graph.launch()
    stream.synchronize()
    # z = [W; b]^T [A; 1] = 2 everywhere: uniform probabilities, loss log 3 per sample, 5 samples, 3 replays
    assert float(loss) == pytest.approx(15 * np.log(3.0), rel=1e-6)
    assert int(correct) == 15  # exact: equal logits give equal probabilities on any device; class 0 wins the ties
    assert int(cupy_kernels._scratch.arrivals[0]) == 0, "the block counter is back at 0 after each replay"
