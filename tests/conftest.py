"""Fixtures shared by gpunn's test modules, one section per concern."""

from __future__ import annotations

import os

import pytest

# scikit-learn's array-API estimator check (tests/test_sklearn.py) runs only with this set, and SciPy reads
# it once, when first imported: set here, before any test module imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

from kernel_cases import missing_tool

# -- fused kernels: compilers and devices ----------------------------------------------
# Used by test_kernels_host.py, test_kernels_compile.py and test_gpu_kernels.py.


@pytest.fixture(scope="session")
def host_kernels():
    """The CUDA kernels compiled for this CPU (built once per session, then cached on disk)."""
    from gpunn.compute.host_kernels import HostKernels
    from gpunn.compute.kernel_source import CompilerUnavailable

    try:
        return HostKernels()
    except CompilerUnavailable as exc:
        missing_tool(str(exc))


@pytest.fixture(scope="session")
def nvrtc_archs():
    """The sm_XX numbers the installed NVRTC supports (no GPU needed), once CuPy finds the CUDA headers.

    A missing NVRTC or missing headers (CudaHeadersUnavailable, a CompilerUnavailable) skip the
    tests that compile with NVRTC, and fail them under CI.
    """
    from gpunn.compute.kernel_source import CompilerUnavailable, nvrtc_options, supported_archs

    try:
        archs = supported_archs()
        nvrtc_options(f"sm_{archs[-1]}")  # finds the headers, as every compilation must
        return archs
    except CompilerUnavailable as exc:
        missing_tool(str(exc))


@pytest.fixture(scope="session")
def cupy_kernels():
    """CupyKernels on device 0; skips the test where no CUDA device answers."""
    from gpunn.compute.backend import BackendError, get_backend

    try:
        backend = get_backend("cupy")
    except BackendError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")
    return backend.kernels


# -- the autotuner's cache --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _private_tuning_cache(monkeypatch, tmp_path):
    """Every test keeps its dense-path picks in its own folder, never in the user's cache."""
    from gpunn.training import autotune

    monkeypatch.setattr(autotune, "cache_path", lambda: tmp_path / autotune.CACHE_FILE)
