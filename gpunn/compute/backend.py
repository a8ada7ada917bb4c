"""Choose where the arrays live: NumPy on the CPU or CuPy on an NVIDIA GPU.

This is the only module that imports CuPy, and it does so lazily: importing gpunn
never imports cupy and never touches a device.  Everything else asks a
:class:`Backend` for its array module (``backend.xp``) and its fused kernels
(``backend.kernels``), and never needs to know which one it got.

Backend specifications users can type (``--backend``, ``GPUNN_BACKEND`` or the API):

``auto``
    CuPy on device 0 when cupy imports and a device answers, otherwise NumPy, silently.
``numpy``
    NumPy on the host.
``cupy`` / ``cupy:N``
    CuPy on device N (default 0).  Where that cannot run, :class:`BackendError`
    says why (not installed, no driver, no device N) and what to do.
``emulated``
    NumPy arrays, but every fused operation runs the CUDA kernel sources compiled
    for the host CPU (see :mod:`gpunn.compute.host_kernels`).  For testing the kernels on
    machines without a GPU; slow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENV_VAR = "GPUNN_BACKEND"


class BackendError(RuntimeError):
    """A backend was asked for that cannot run here; the message says what to do."""


@dataclass
class Backend:
    """One place for arrays to live and the fused operations that work on them.

    Attributes:
        name: ``"numpy"``, ``"cupy"`` or ``"emulated"``.
        xp: the array module (``numpy`` or ``cupy``).
        device_id: the CUDA device ordinal for CuPy, else ``None``.
        reason: why this backend was chosen (shown by ``gpunn info``).
    """

    name: str
    xp: Any
    device_id: int | None = None
    reason: str = ""
    _kernels: Any = field(default=None, repr=False)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    @property
    def label(self) -> str:
        """The spec that selects this backend again, e.g. ``cupy:0``."""
        return f"cupy:{self.device_id}" if self.is_gpu else self.name

    @property
    def kernels(self):
        """The fused operations for this backend (built on first use, then cached)."""
        if self._kernels is None:
            if self.name == "numpy":
                from gpunn.compute.ops import NumpyKernels

                self._kernels = NumpyKernels()
            elif self.name == "emulated":
                from gpunn.compute.host_kernels import HostKernels

                self._kernels = HostKernels()
            else:
                from gpunn.compute.cuda_kernels import CupyKernels

                self._kernels = CupyKernels(self.device_id)
        return self._kernels

    def device(self):
        """A context manager that makes this backend's device current (a no-op on the CPU)."""
        if self.is_gpu:
            return self.xp.cuda.Device(self.device_id)
        return _NullContext()

    def asarray(self, array, dtype=None):
        """Copy ``array`` (NumPy or CuPy) to this backend, C-contiguous."""
        with self.device():
            if self.is_gpu:
                return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=dtype))
            return np.ascontiguousarray(to_numpy(array), dtype=dtype)

    def take(self, a, indices, out, axis=None):
        """``out[...] = a.take(indices, axis)`` without allocating.

        NumPy's default ``mode="raise"`` buffers ``out`` (an allocation per call), so
        NumPy gets ``mode="clip"`` (the indices are in range by construction); CuPy's
        ``take`` has no ``mode`` and writes ``out`` directly.
        """
        if self.is_gpu:
            return self.xp.take(a, indices, axis=axis, out=out)
        return a.take(indices, axis=axis, out=out, mode="clip")

    def synchronize(self) -> None:
        """Wait for queued device work (used only at epoch ends and for timing)."""
        if self.is_gpu:
            with self.device():
                self.xp.cuda.get_current_stream().synchronize()


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def is_cupy_array(array) -> bool:
    """Whether ``array`` is a CuPy array (told by its type's module: CuPy is never imported here)."""
    return type(array).__module__.startswith("cupy") and hasattr(array, "get")


def to_numpy(array) -> np.ndarray:
    """A NumPy array for ``array`` (NumPy, CuPy, or anything np.asarray takes), copying from the GPU for CuPy."""
    if isinstance(array, np.ndarray):
        return array
    if is_cupy_array(array):
        return array.get()
    return np.asarray(array)


def _import_cupy():
    """Import cupy, or raise BackendError explaining how to install it."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendError(
            f"CuPy is not installed ({exc}); install it with `pip install \"gpunn[gpu]\"` "
            "(cupy-cuda13x; use cupy-cuda12x on CUDA 12 drivers) or use --backend numpy"
        ) from None
    except Exception as exc:  # a broken CUDA install can raise anything at import
        raise BackendError(f"CuPy failed to import: {exc}; use --backend numpy") from None
    return cupy


def _device_count(cupy) -> int:
    """Number of CUDA devices, or BackendError saying why there are none."""
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        text = str(exc)
        if "insufficient" in text.lower() or "driver" in text.lower():
            why = f"no usable NVIDIA driver ({text})"
        else:
            why = f"no CUDA device answered ({text})"
        raise BackendError(
            f"CuPy is installed but cannot run: {why}; check `nvidia-smi`, or use --backend numpy"
        ) from None


def parse_spec(spec: str | None) -> tuple[str, int | None]:
    """Split a backend spec into (kind, device); raise ValueError for nonsense."""
    source = "" if spec else f" (from ${ENV_VAR})" if os.environ.get(ENV_VAR) else ""
    raw = spec or os.environ.get(ENV_VAR) or "auto"
    text = raw.strip().lower()
    if text.startswith("@"):  # chainer-style "@numpy" / "@cupy:0"
        text = text[1:]
    kind, _, dev = text.partition(":")
    if kind not in ("auto", "numpy", "cupy", "emulated"):
        raise ValueError(f"unknown backend {raw!r}{source}: use auto, numpy, cupy, cupy:N or emulated")
    if dev and kind != "cupy":
        raise ValueError(f"backend {raw!r}{source} takes no device number; use cupy:N for a GPU")
    if dev:
        if not (dev.isascii() and dev.isdigit()):
            raise ValueError(f"bad device number in backend {raw!r}{source}: use cupy:N with N = 0, 1, ...")
        return kind, int(dev)
    return kind, (0 if kind == "cupy" else None)


def get_backend(spec: str | Backend | None = None) -> Backend:
    """Resolve a backend spec (or ``$GPUNN_BACKEND``, else ``auto``) to a :class:`Backend`."""
    if isinstance(spec, Backend):
        return spec
    kind, device = parse_spec(spec)
    if kind == "numpy":
        return Backend("numpy", np, reason="asked for numpy")
    if kind == "emulated":
        return Backend("emulated", np, reason="asked for the host-emulated CUDA kernels")
    if kind == "cupy":
        cupy = _import_cupy()
        count = _device_count(cupy)
        if device >= count:
            raise BackendError(
                f"no CUDA device {device}: this machine has {count} "
                f"(valid: cupy:0 .. cupy:{count - 1}); pick one of those"
                if count
                else "no CUDA device found; use --backend numpy"
            )
        return Backend("cupy", cupy, device, reason=f"asked for cupy:{device}")
    # auto
    try:
        cupy = _import_cupy()
        count = _device_count(cupy)
    except BackendError as exc:
        return Backend("numpy", np, reason=f"auto: {exc}".split("; ")[0])
    if count < 1:
        return Backend("numpy", np, reason="auto: CuPy imports but no CUDA device is present")
    return Backend("cupy", cupy, 0, reason=f"auto: CuPy found {count} CUDA device(s)")
