"""The backend seam: specs, auto-selection, clear errors, and no CuPy at import time."""

import subprocess
import sys

import numpy as np
import pytest

from gpunn.compute.backend import BackendError, get_backend, parse_spec


def test_importing_gpunn_does_not_import_cupy():
    code = "import gpunn, gpunn.cli.main, sys; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("spec,expected", [
    ("auto", ("auto", None)), ("numpy", ("numpy", None)), ("@numpy", ("numpy", None)),
    ("cupy", ("cupy", 0)), ("cupy:3", ("cupy", 3)), ("CuPy:1", ("cupy", 1)), ("@cupy:2", ("cupy", 2)),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["tpu", "cupy:x", "numpy:1", "cupy:-1"])
def test_parse_spec_rejects_nonsense(spec):
    with pytest.raises(ValueError, match="backend"):
        parse_spec(spec)


def test_environment_variable_is_the_default(monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    assert "asked for numpy" in get_backend().reason


def test_numpy_backend():
    backend = get_backend("numpy")
    assert backend.xp is np and not backend.is_gpu and backend.label == "numpy"
    array = backend.asarray([[1, 2]], dtype=np.float32)
    assert array.dtype == np.float32 and array.flags.c_contiguous


def _cupy_runs() -> bool:
    try:
        get_backend("cupy")
        return True
    except BackendError:
        return False


@pytest.mark.skipif(_cupy_runs(), reason="a GPU is present: the no-GPU messages cannot be provoked")
def test_auto_falls_back_to_numpy_silently_and_says_why():
    backend = get_backend("auto")
    assert backend.name == "numpy"
    assert backend.reason.startswith("auto:")


@pytest.mark.skipif(_cupy_runs(), reason="a GPU is present: the no-GPU messages cannot be provoked")
def test_asking_for_cupy_without_a_gpu_says_why_and_what_to_do():
    with pytest.raises(BackendError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert "numpy" in message  # what to do
    assert any(word in message for word in ("not installed", "driver", "no CUDA device"))  # why


def test_missing_cupy_is_reported_as_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(BackendError, match="not installed.*gpunn\\[gpu\\]"):
        get_backend("cupy")
    assert get_backend("auto").name == "numpy"


def test_missing_device_number_is_named(monkeypatch):
    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            return 1

    class FakeCupy:
        class cuda:
            runtime = FakeRuntime

    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    with pytest.raises(BackendError, match="no CUDA device 3.*cupy:0"):
        get_backend("cupy:3")
