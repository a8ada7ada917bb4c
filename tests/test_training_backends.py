"""Whole training runs on the kernel backends against the NumPy backend, epoch by epoch.

``emulated`` runs the CUDA kernel sources compiled for the CPU (no GPU needed), so this
checks that the GPU path's arithmetic trains the same network as NumPy.  The ``gpu``
tests do the same on a real device, with and without the CUDA graph.

Both runs start from the same weights (same seed) and use the same batch order
(``shuffle="host"``).  Tolerances: float64 agrees to rounding (the bias is folded into
the GEMM on NumPy and added by a kernel elsewhere, so sums run in another order):
rtol 1e-9 after a few epochs.  float32: per-epoch loss within rtol 1e-3, and the
trained networks give the same answer on >= 99.9 % of the test samples.
"""

import numpy as np
import pytest

import gpunn
from gpunn.backend import BackendError, get_backend


def _digits(n_train=400):
    data = gpunn.load_dataset("digits")
    return data.X_train[:n_train], data.y_train[:n_train], data.X_test, data.y_test


def _train(backend, dtype, epochs=3, **fit_options):
    X, y, X_test, y_test = _digits()
    net = gpunn.Network([64, 20, 10], backend=backend, dtype=dtype, seed=11, init="scaled")
    history = net.fit(X, y, epochs=epochs, batch_size=10, lr=2.0, momentum=0.5, shuffle="host",
                      validation_data=(X_test, y_test), **fit_options)
    return net, history.history


def _compare(reference, other, dtype):
    (ref_net, ref_history), (net, history) = reference, other
    _, _, X_test, _ = _digits()
    if dtype == "float64":
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-9)
        for a, b in zip(net.get_weights(), ref_net.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-3)
        agree = np.mean(net.predict(X_test) == ref_net.predict(X_test))
        assert agree >= 0.999
    assert history["accuracy"] == pytest.approx(ref_history["accuracy"], abs=0.01)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_kernels_train_like_numpy(dtype):
    _compare(_train("numpy", dtype), _train("emulated", dtype), dtype)


def _cupy_or_skip():
    try:
        return get_backend("cupy")
    except BackendError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_trains_like_numpy(dtype, cuda_graph):
    _cupy_or_skip()
    with _no_capture_warning():
        gpu = _train("cupy", dtype, cuda_graph=cuda_graph)
    _compare(_train("numpy", dtype), gpu, dtype)


@pytest.mark.gpu
def test_cuda_graph_matches_kernel_by_kernel_launches():
    """The graph replays exactly the launches of the ordinary step: same numbers, bit for bit."""
    _cupy_or_skip()
    with _no_capture_warning():
        graphed, graphed_history = _train("cupy", "float64", cuda_graph=True)
    plain, plain_history = _train("cupy", "float64", cuda_graph=False)
    for a, b in zip(graphed.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert graphed_history["accuracy"] == plain_history["accuracy"]


@pytest.mark.gpu
def test_gpu_accepts_cupy_arrays_and_evaluates_like_predict():
    backend = _cupy_or_skip()
    X, y, X_test, y_test = _digits()
    cp = backend.xp
    net = gpunn.Network([64, 20, 10], backend="cupy", seed=1, init="scaled")
    net.fit(cp.asarray(X), cp.asarray(y), epochs=2, batch_size=32, lr=2.0)
    result = net.evaluate(cp.asarray(X_test), cp.asarray(y_test))
    assert result["accuracy"] == pytest.approx(np.mean(net.predict(X_test) == y_test))


class _no_capture_warning:
    """Fails the test if training fell back from the CUDA graph (capture failed)."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self.records = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        failures = [str(r.message) for r in self.records if "CUDA graph capture failed" in str(r.message)]
        assert not failures, failures
        return False
