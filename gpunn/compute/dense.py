"""How a kernel backend computes a layer's three products: gpunn's fused kernels or the library GEMM.

A training step of a fully connected network is, per layer, three matrix products,
each followed by a cheap elementwise epilogue:

* forward: ``A = act([W; b]^T [A_prev; 1])``;
* the delta one layer down: ``delta_below = (W delta) * act'(A_below)``;
* the weight gradient: ``grad = [A_prev; 1] delta^T`` (the bias gradient as its last row).

Two ways to run them on the kernel backends (``cupy`` and ``emulated``), chosen per
network (:attr:`gpunn.nn.mlp.MLP.dense`):

``fused`` (:class:`FusedProducts`)
    gpunn's own kernels (``dense_forward_<act>``, ``dense_backward_<act>``,
    ``dense_weight_grad``), each product and its epilogue in one launch, tiled
    through shared memory.  A step made of these holds no library call, so on a GPU
    it can be captured as one CUDA graph (:mod:`gpunn.training.cuda_graph`); fastest for
    narrow layers and small batches, where each launch does microseconds of work.
``cublas`` (:class:`LibraryProducts`)
    the array module's ``matmul`` (cuBLAS through CuPy on a GPU; NumPy's BLAS on the
    ``emulated`` backend) followed by gpunn's epilogue kernels (``bias_<act>``,
    ``<act>_backward``).  Fastest for wide layers.  CuPy refuses every cuBLAS call
    while a stream is being captured (CuPy 14.2, ``cupy_backends/cuda/libs/cublas.pyx``,
    ``setStream``: ``runtime.streamIsCapturing`` then ``NotImplementedError``;
    cupy/cupy#6290), so a step on this path is launched kernel by kernel.

Which one a GPU uses is measured on the device (:mod:`gpunn.training.autotune`) or forced
with ``GPUNN_DENSE=fused|cublas``.  The NumPy backend has neither: it folds the bias
into its own BLAS products (:class:`gpunn.nn.layout.RowLayout`).
"""

from __future__ import annotations

import os

#: The environment variable that forces a dense path: ``fused``, ``cublas`` or ``auto``.
ENV_VAR = "GPUNN_DENSE"
PATHS = ("fused", "cublas")
CHOICES = (*PATHS, "auto")


def requested(value: str | None = None) -> str:
    """The dense path asked for: ``value``, else ``$GPUNN_DENSE``, else ``auto``; ValueError for others."""
    text = (value or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if text not in CHOICES:
        source = "dense" if value else ENV_VAR
        raise ValueError(f"{source}={text!r} is not a dense path: use fused, cublas or auto")
    return text


def default_path(backend) -> str:
    """The path of a kernel-backend network until :func:`gpunn.training.loop.fit` picks one for its batch size.

    ``$GPUNN_DENSE`` when it names a path; else ``cublas`` on a GPU (nothing has been
    measured yet, and inference over large chunks is GEMM-bound) and ``fused`` on the
    ``emulated`` backend (it exists to run gpunn's kernels).
    """
    asked = requested()
    if asked != "auto":
        return asked
    return "cublas" if backend.is_gpu else "fused"


class FusedProducts:
    """Each product and its epilogue as one of gpunn's fused kernels: no library call."""

    name = "fused"
    #: a step made only of gpunn kernels can be recorded in a CUDA graph
    capturable = True

    def __init__(self, backend):
        self.kernels = backend.kernels

    def forward(self, wb, a_in, z, activation) -> None:
        """z <- act([W; b]^T [A_prev; 1]); ``a_in`` carries the row of ones."""
        self.kernels.dense_forward(wb, a_in, z, activation)

    def backward(self, w, delta, a_below, delta_below, activation) -> None:
        """delta_below <- (W delta) * act'(a_below)."""
        self.kernels.dense_backward(w, delta, a_below, delta_below, activation)

    def weight_grad(self, a_in, delta, grad) -> None:
        """grad <- [A_prev; 1] delta^T."""
        self.kernels.dense_weight_grad(a_in, delta, grad)


class LibraryProducts:
    """Each product by the array module's ``matmul`` (cuBLAS through CuPy), then gpunn's epilogue kernel."""

    name = "cublas"
    capturable = False  # CuPy refuses cuBLAS during stream capture (see the module docstring)

    def __init__(self, backend):
        self.xp = backend.xp
        self.kernels = backend.kernels

    def forward(self, wb, a_in, z, activation) -> None:
        # W^T A_prev by the library, then the bias and activation by bias_<act>
        self.xp.matmul(wb[:-1].T, a_in[:-1], out=z)  # out= by keyword: cupy.matmul takes no positional out
        self.kernels.bias_act(z, wb[-1], activation)

    def backward(self, w, delta, a_below, delta_below, activation) -> None:
        self.xp.matmul(w, delta, out=delta_below)
        self.kernels.act_backward(delta_below, a_below, activation)

    def weight_grad(self, a_in, delta, grad) -> None:
        self.xp.matmul(a_in, delta.T, out=grad)


_CLASSES = {cls.name: cls for cls in (FusedProducts, LibraryProducts)}


def products(name: str, backend):
    """The :class:`FusedProducts` or :class:`LibraryProducts` of ``backend`` for path ``name``."""
    try:
        return _CLASSES[name](backend)
    except KeyError:
        raise ValueError(f"unknown dense path {name!r}: use {' or '.join(PATHS)}") from None
