"""The fused operations on a GPU: gpunn's CUDA kernels, built by CuPy and launched on CuPy arrays.

:class:`CupyKernels` has the methods of :class:`gpunn.ops.NumpyKernels`.  The kernel source
(:func:`gpunn.kernel_source.kernel_code`) is compiled once per device by ``cupy.RawModule``
(CuPy also caches the binary on disk) and its functions are looked up once; the
launches are planned by :mod:`gpunn.kernel_source`, exactly as for the host emulation.

Every launch goes to the current stream of the kernels' device and nothing here waits
for the GPU or reads device memory, so a training step made of these calls can be
captured in a CUDA graph.  Scalars (learning rate, ...) must be host numbers.

Only :mod:`gpunn.backend` imports this module, when a CuPy backend is chosen.
"""

from __future__ import annotations

import cupy

from . import kernel_source as ks

#: device id -> {kernel name: cupy RawKernel}; one compiled module per device.
_MODULES: dict[int, dict[str, object]] = {}


def _kernel_functions(device_id: int) -> dict[str, object]:
    functions = _MODULES.get(device_id)
    if functions is None:
        with cupy.cuda.Device(device_id):
            module = cupy.RawModule(code=ks.kernel_code(), options=ks.RAWMODULE_OPTIONS)
            functions = {name: module.get_function(name) for name in ks.KERNEL_NAMES}
        _MODULES[device_id] = functions
    return functions


class CupyKernels:
    """The fused operations of :class:`gpunn.ops.NumpyKernels` on CuPy arrays of one device."""

    def __init__(self, device_id: int = 0):
        self.device_id = device_id
        self._functions = _kernel_functions(device_id)

    def _run(self, launch: ks.Launch) -> None:
        with cupy.cuda.Device(self.device_id):
            self._functions[launch.name]((launch.grid,), (launch.block,), launch.args)

    def bias_sigmoid(self, z, b) -> None:
        """z <- sigmoid(z + b[:, None]) in place."""
        self._run(ks.plan_bias_sigmoid(z, b))

    def sigmoid_backward(self, g, a) -> None:
        """g <- g * a * (1 - a) in place."""
        self._run(ks.plan_sigmoid_backward(g, a))

    def output_delta(self, a, labels, delta, loss_sum, correct, loss="quadratic", targets=None):
        """The output layer's delta, added to the loss sum and correct count (``targets`` is not needed)."""
        self._run(ks.plan_output_delta(a, labels, delta, loss_sum, correct, loss))

    def sgd_update(self, theta, grad, velocity, lr, inv_m, momentum=0.0, weight_decay=0.0):
        """One SGD step over the flat parameter buffer, in place (``grad`` is left unchanged)."""
        self._run(ks.plan_sgd_update(theta, grad, velocity, lr, inv_m, momentum, weight_decay))

    def gather_batch(self, src, labels_src, order, step, out, labels_out, batch, first=0):
        """Gather the batch the device counter ``step`` points at (see ``plan_gather_batch``)."""
        self._run(ks.plan_gather_batch(src, labels_src, order, step, out, labels_out, batch, first))

    def advance_step(self, step):
        """step += 1 on the device."""
        self._run(ks.plan_advance_step(step))
