"""Whole training runs on the kernel backends against the NumPy backend, epoch by epoch.

``emulated`` runs the CUDA kernel sources compiled for the CPU (no GPU needed), so this
checks that the GPU path's arithmetic trains the same network as NumPy.  The ``gpu``
tests do the same on a real device, with and without the CUDA graph.

Both runs start from the same weights (same seed) and use the same batch order
(``shuffle="host"``).  The kernel backends run both dense paths (``fused``: gpunn's
kernels only, the step a GPU captures as a CUDA graph; ``cublas``: library GEMMs).
The two round differently (the bias is folded into the GEMM on NumPy and added by a
kernel elsewhere, so sums run in another order), so they are compared by the rounding
rule of tests/rounding.py: losses and weights within the tolerance of the whole training
run (``training_terms``), and the trained networks' probabilities within one forward
pass's (``network_terms``), their labels wherever the winner is clear.
"""

import numpy as np
import pytest

import gpunn
from gpunn.compute.backend import BackendError, get_backend
from rounding import NEAR_TIE_FRACTION, assert_trainings_agree


def _digits(n_train=400):
    data = gpunn.load_dataset("digits")
    return data.X_train[:n_train], data.y_train[:n_train], data.X_test, data.y_test


SIZES, EPOCHS, BATCH = [64, 20, 10], 3, 10


def _train(backend, dtype, epochs=EPOCHS, **fit_options):
    X, y, X_test, y_test = _digits()
    net = gpunn.Network(SIZES, backend=backend, dtype=dtype, seed=11, init="scaled")
    history = net.fit(X, y, epochs=epochs, batch_size=BATCH, lr=2.0, momentum=0.5, shuffle="host",
                      validation_data=(X_test, y_test), **fit_options)
    return net, history.history


def _compare(reference, other, dtype):
    """Two trainings of the same network by computations that round differently, by the rounding rule."""
    (ref_net, ref_history), (net, history) = reference, other
    X, _, X_test, _ = _digits()
    assert_trainings_agree(net, history["loss"], ref_net, ref_history["loss"], X_test,
                           steps=EPOCHS * -(-len(X) // BATCH), batch_size=BATCH)
    # training accuracy counts answers on batches: at most the near-ties' share of them may flip
    assert history["accuracy"] == pytest.approx(ref_history["accuracy"], abs=NEAR_TIE_FRACTION)


@pytest.mark.parametrize("dense", ["fused", "cublas"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_kernels_train_like_numpy(dtype, dense):
    emulated = _train("emulated", dtype, dense=dense)
    assert emulated[0].history.params["dense"] == dense and emulated[0].history.params["step"] == "launches"
    _compare(_train("numpy", dtype), emulated, dtype)


def test_emulated_runs_repeat_bit_for_bit_whatever_order_the_blocks_run_in(host_kernels):
    """Two runs of the same fit, the kernels' blocks in different orders: identical losses and weights.

    Full batches of 4,096 samples make every training output delta a launch of 16
    blocks (the 1,000 validation samples: 4); a GPU may run them in any order, and so
    does the host executor here (:meth:`gpunn.compute.host_kernels.HostKernels.shuffle_blocks`).
    Nothing may depend on it: the loss sums go through the deterministic reduction.
    (With the blocks' sums added by floating-point atomics instead, the losses differ
    in their last bits.)
    """
    rng = np.random.default_rng(5)
    X, y = rng.random((5096, 8)), rng.integers(0, 10, 5096)
    runs = []
    try:
        for seed in (1, 2):
            host_kernels.shuffle_blocks(seed)  # the library's block order, for every HostKernels
            net = gpunn.Network([8, 16, 10], backend="emulated", dtype="float64", seed=3)
            history = net.fit(X[:4096], y[:4096], epochs=4, batch_size=4096, lr=1.0, dense="fused",
                              validation_data=(X[4096:], y[4096:]))
            runs.append((history.history, net.get_weights()))
    finally:
        host_kernels.shuffle_blocks(0)
    (first, first_weights), (second, second_weights) = runs
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert [float(x).hex() for x in first[key]] == [float(x).hex() for x in second[key]], key
    for a, b in zip(first_weights, second_weights):
        np.testing.assert_array_equal(a, b)


def _cupy_or_skip():
    try:
        return get_backend("cupy")
    except BackendError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")


#: (dense path, cuda_graph) -> the step path fit must report: only the fused step is captured
GPU_PATHS = {("fused", True): "graph", ("fused", False): "launches", ("cublas", True): "launches"}


@pytest.mark.gpu
@pytest.mark.parametrize("dense,cuda_graph", GPU_PATHS, ids=[f"{d}-graph{g}" for d, g in GPU_PATHS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_trains_like_numpy(dtype, dense, cuda_graph):
    _cupy_or_skip()
    with _no_capture_warning():
        gpu = _train("cupy", dtype, cuda_graph=cuda_graph, dense=dense)
    params = gpu[0].history.params
    assert (params["dense"], params["step"]) == (dense, GPU_PATHS[dense, cuda_graph])
    _compare(_train("numpy", dtype), gpu, dtype)


@pytest.mark.gpu
def test_cuda_graph_matches_kernel_by_kernel_launches():
    """The graph replays exactly the launches of the ordinary step: the same numbers, bit for bit."""
    _cupy_or_skip()
    with _no_capture_warning():
        graphed, graphed_history = _train("cupy", "float64", cuda_graph=True, dense="fused")
    plain, plain_history = _train("cupy", "float64", cuda_graph=False, dense="fused")
    assert graphed.history.params["step"] == "graph" and plain.history.params["step"] == "launches"
    for a, b in zip(graphed.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert graphed_history["loss"] == plain_history["loss"]


@pytest.mark.gpu
@pytest.mark.parametrize("dense", ["fused", "cublas"])
def test_gpu_runs_repeat_bit_for_bit(dense):
    """No floating-point atomics anywhere in the step: a rerun gives the same bits (default shuffling)."""
    _cupy_or_skip()
    X, y, X_test, y_test = _digits(1348)
    runs = []
    for _ in range(2):
        net = gpunn.Network([64, 20, 10], backend="cupy", dtype="float32", seed=5)
        history = net.fit(X, y, epochs=2, batch_size=300, lr=1.0, dense=dense, validation_data=(X_test, y_test))
        runs.append((history.history, net.get_weights()))
    (first, first_weights), (second, second_weights) = runs
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert first[key] == second[key], key
    for a, b in zip(first_weights, second_weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_capture_is_not_attempted_where_it_cannot_succeed(monkeypatch):
    """A cuBLAS step is never captured (CuPy would refuse): no attempt, no warm-up, no warning."""
    _cupy_or_skip()
    from gpunn.training.cuda_graph import GraphedStep

    def no_capture(self):
        raise AssertionError("capture attempted for a step that calls cuBLAS")

    monkeypatch.setattr(GraphedStep, "capture", no_capture)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        net, history = _train("cupy", "float32", epochs=1, cuda_graph=True, dense="cublas")
    assert net.history.params["step"] == "launches"


@pytest.mark.gpu
def test_a_graph_captured_outside_its_stream_replays_the_step():
    """GraphedStep makes its own stream current: captured from anywhere, the graph does the work."""
    backend = _cupy_or_skip()
    from gpunn.training.cuda_graph import GraphedStep
    from gpunn.training.device_step import DeviceStep
    from gpunn.training.optim import SGD

    cp = backend.xp
    X, y, _, _ = _digits(40)
    results = []
    for graphed in (True, False):
        net = gpunn.Network([64, 20, 10], backend="cupy", dtype="float64", seed=4)
        net.dense = "fused"
        net.optimizer = SGD(net.backend, net.layout, net.dtype, lr=0.5)
        data = net.device_samples(X, y)
        order = cp.arange(40, dtype=np.int64)
        body = DeviceStep(net, data, order, 10, cp.zeros((), np.float64), cp.zeros((), np.int64))
        stream = cp.cuda.Stream(non_blocking=True)
        cp.cuda.Device().synchronize()
        if graphed:
            step = GraphedStep(body, stream)
            step.capture()  # called with the legacy default stream current
            step.run_epoch(4)
            stream.synchronize()
        else:
            with stream:
                body.run_epoch(4)
            stream.synchronize()
        assert int(body.step) == 4  # below, exact: the same kernels, launched by the graph or one by one
        results.append(cp.asnumpy(net.params))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.gpu
def test_gpu_accepts_python_lists():
    _cupy_or_skip()
    net = gpunn.Network([2, 3, 2], backend="cupy", seed=0)
    history = net.fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [1, 1, 0], epochs=1, batch_size=2)
    assert np.isfinite(history.history["loss"][0])
    assert net.predict([[0.0, 1.0]]).shape == (1,)


@pytest.mark.gpu
def test_the_autotuner_times_both_paths_on_the_device_and_caches_the_pick(tmp_path):
    _cupy_or_skip()
    from gpunn.training import autotune

    net = gpunn.Network([784, 30, 10], backend="cupy", seed=0)
    seconds = autotune.measure_on_device(net, 10, warmup=1, timed=5)
    assert set(seconds) == {"fused", "cublas"} and all(0 < s < 1 for s in seconds.values())
    cache = autotune.TuningCache(tmp_path / "tuning.json")
    decision = autotune.pick_dense(net, 10, "auto", cache=cache)
    assert decision.source == "measured" and decision.path in ("fused", "cublas")
    assert autotune.pick_dense(net, 10, "auto", cache=cache) == (decision.path, "cached")


@pytest.mark.gpu
def test_gpu_accepts_cupy_arrays_and_evaluates_like_predict():
    backend = _cupy_or_skip()
    X, y, X_test, y_test = _digits()
    cp = backend.xp
    net = gpunn.Network([64, 20, 10], backend="cupy", seed=1, init="scaled")
    net.fit(cp.asarray(X), cp.asarray(y), epochs=2, batch_size=32, lr=2.0)
    result = net.evaluate(cp.asarray(X_test), cp.asarray(y_test))
    # exact: evaluate and predict run the same forward pass on the same chunks and device
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
