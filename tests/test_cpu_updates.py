"""The compiled single-pass optimizer updates (gpunn.compute.cpu_updates) against the NumPy twins.

Every optimizer mode (kernel_cases' SGD_MODES and ADAM_MODES), both dtypes, and every
instruction-set level this CPU can run (the build the trainer picks, and the lower ones
it could fall back to).  The loops do the twins' IEEE operations in the twins' order,
so the tolerances are kernel_cases': ``sgd`` and ``adam``.  One difference is meant:
on x86 the float32 loops flush subnormals to zero, as the GPU kernels do (tested below).
Needs the host C++ compiler (skipped without one, failed on CI).
"""

import platform

import numpy as np
import pytest

import gpunn
from gpunn.compute import cpu_updates as cu
from gpunn.compute.backend import get_backend
from gpunn.compute.kernel_source import CompilerUnavailable
from gpunn.compute.ops import NumpyKernels
from gpunn.training.optim import update_kernels
from kernel_cases import ADAM_MODES, DTYPES, SGD_MODES, assert_close, eps, missing_tool


@pytest.fixture(scope="module")
def best():
    """The updates the trainer uses on this machine (built for its widest vectors)."""
    try:
        return cu.build()
    except CompilerUnavailable as exc:
        missing_tool(str(exc))


@pytest.fixture(scope="module", params=[1, 3, 4], ids=["baseline", "x86-64-v3", "x86-64-v4"])
def updates(request, best):
    """The updates built for each level up to this CPU's (higher ones cannot run here)."""
    if request.param > best.isa_level:
        pytest.skip(f"this CPU runs level {best.isa_level}, not {request.param}")
    built = cu.build(request.param)
    assert built.isa_level == request.param
    return built


@pytest.fixture
def rng(request):
    return np.random.default_rng(abs(hash(request.node.name)) % 2**32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 15, 771, 10_000])
@pytest.mark.parametrize("mode", SGD_MODES)
@pytest.mark.parametrize("scaled", [False, True], ids=["one-rate", "per-layer-rates"])
def test_sgd_update_matches_the_twin(updates, rng, scaled, mode, size, dtype):
    hyper = SGD_MODES[mode]
    theta = rng.normal(size=size).astype(dtype)
    grad = rng.normal(scale=10.0, size=size).astype(dtype)
    velocity = rng.normal(scale=0.1, size=size).astype(dtype)
    lr_scale = rng.uniform(0.1, 1.0, size=size).astype(dtype) if scaled else None
    lr, inv_m = 0.3, 1.0 / 32
    theta_ref, velocity_ref = theta.copy(), velocity.copy()
    NumpyKernels().sgd_update(theta_ref, grad.copy(), velocity_ref, lr, inv_m, lr_scale=lr_scale, **hyper)
    grad_before = grad.copy()
    updates.sgd_update(theta, grad, velocity, lr, inv_m, lr_scale=lr_scale, **hyper)
    scale = np.abs(theta_ref).max() + np.abs(theta - theta_ref).max()
    assert_close(theta, theta_ref, atol=4 * eps(dtype) * scale, what="theta")
    assert_close(velocity, velocity_ref, atol=4 * eps(dtype) * np.abs(velocity_ref).max(), what="velocity")
    np.testing.assert_array_equal(grad, grad_before, err_msg="the compiled update leaves grad alone")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_without_momentum_never_touches_the_velocity(best, rng, dtype):
    theta, grad = rng.normal(size=300).astype(dtype), rng.normal(size=300).astype(dtype)
    theta_ref = theta.copy()
    NumpyKernels().sgd_update(theta_ref, grad.copy(), None, 0.1, 0.5, weight_decay=1e-3)
    poisoned = np.full(300, np.nan, dtype)
    best.sgd_update(theta, grad, poisoned, 0.1, 0.5, weight_decay=1e-3)
    assert_close(theta, theta_ref, atol=8 * eps(dtype) * np.abs(theta_ref).max(), what="theta")
    assert np.isnan(poisoned).all(), "velocity was written with momentum 0"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 15, 771, 10_000])
@pytest.mark.parametrize("mode", ADAM_MODES)
def test_adam_update_matches_the_twin(updates, rng, mode, size, dtype):
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, **ADAM_MODES[mode])
    theta = rng.normal(size=size).astype(dtype)
    m, v = np.zeros(size, dtype), np.zeros(size, dtype)
    ref = [theta.copy(), m.copy(), v.copy()]
    step = np.zeros((), np.int32)
    bound = updates.bind_adam(theta, np.zeros(size, dtype), m, v, step, **hyper)
    twin = NumpyKernels()
    for _ in range(3):  # three steps: the bias corrections change with the step number
        grad = rng.normal(scale=10.0, size=size).astype(dtype)
        before = ref[0].copy()
        twin.advance_step(step)
        twin.adam_update(ref[0], grad.copy(), ref[1], ref[2], step, 1.0 / 16, **hyper)
        bound._buffers[1][...] = grad  # the bound call reads the gradient buffer it was given
        bound(1.0 / 16)
        scale = np.abs(before).max() + np.abs(ref[0] - before).max()
        assert_close(theta, ref[0], atol=8 * eps(dtype) * scale, what="theta")
        assert_close(m, ref[1], atol=8 * eps(dtype) * np.abs(ref[1]).max(), what="m")
        assert_close(v, ref[2], atol=8 * eps(dtype) * np.abs(ref[2]).max(), what="v")


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_moments_never_go_subnormal_as_on_the_gpu(best, dtype):
    """A weight whose gradient is always 0: m shrinks by beta1 per step towards the subnormals.

    The twin takes m into the subnormals.  The float32 loops on x86 flush subnormal
    results to zero, as the GPU does: the step ``0.1 (0 - m)`` becomes 0 once it would
    be subnormal, so m stays a (tiny) normal number.  float64 keeps IEEE subnormals.
    Either way m differs by a few smallest normals, and theta not at all.
    """
    tiny = np.finfo(dtype).smallest_normal
    theta, grad = np.ones(64, dtype), np.zeros(64, dtype)
    m, v = np.full(64, tiny * 40, dtype), np.full(64, 1e-6, dtype)
    ref = [theta.copy(), m.copy(), v.copy()]
    step = np.array(50, np.int32)
    for _ in range(60):  # m *= 0.9 per step: below the smallest normal after ~35 steps
        NumpyKernels().adam_update(ref[0], grad.copy(), ref[1], ref[2], step, 1.0, 1e-3, 0.9, 0.999, 1e-8)
        best.adam_update(theta, grad, m, v, step, 1.0, 1e-3, 0.9, 0.999, 1e-8)
    assert (0 < ref[1]).all() and (ref[1] < tiny).all(), "the twin keeps subnormal moments"
    if dtype == np.float32 and platform.machine().lower() in ("x86_64", "amd64"):
        assert (m >= tiny).all() and (m < 10 * tiny).all(), "m stops at the smallest normals"
    else:
        np.testing.assert_array_equal(m, ref[1])
    np.testing.assert_array_equal(theta, ref[0])
    np.testing.assert_array_equal(v, ref[2])


def test_adam_update_takes_the_twins_arguments(best, rng):
    theta, grad = rng.normal(size=50), rng.normal(size=50)
    m, v, step = np.zeros(50), np.zeros(50), np.array(1, np.int32)
    ref = [theta.copy(), m.copy(), v.copy()]
    NumpyKernels().adam_update(ref[0], grad.copy(), ref[1], ref[2], step, 0.5, 1e-3, 0.9, 0.999, 1e-8, 1e-2, True)
    best.adam_update(theta, grad, m, v, step, 0.5, 1e-3, 0.9, 0.999, 1e-8, 1e-2, True)
    assert_close(theta, ref[0], atol=8 * eps(np.float64) * 2 * np.abs(ref[0]).max(), what="theta")


def test_bad_buffers_are_refused(best):
    good = np.zeros(8, np.float32)
    step = np.ones((), np.int32)
    for theta, grad in [(good, np.zeros(8, np.float64)), (good, np.zeros(9, np.float32)),
                        (good, np.zeros(16, np.float32)[::2]), (np.zeros(8, np.int32), np.zeros(8, np.int32))]:
        with pytest.raises(TypeError, match="C-contiguous float32 or float64"):
            best.sgd_update(theta, grad, None, 0.1, 1.0)
        with pytest.raises(TypeError, match="C-contiguous float32 or float64"):
            best.adam_update(theta, grad, good, good, step, 1.0, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError, match="step counter"):
        best.adam_update(good, good.copy(), good.copy(), good.copy(), np.ones((), np.int64), 1.0, 1e-3, 0.9,
                         0.999, 1e-8)
    with pytest.raises(TypeError, match="velocity"):
        best.sgd_update(good, good.copy(), None, 0.1, 1.0, momentum=0.9)


def test_the_mode_picks_the_numpy_backends_updates(best, monkeypatch):
    numpy, emulated = get_backend("numpy"), get_backend("emulated")
    monkeypatch.setenv("GPUNN_CPU_UPDATES", "numpy")
    assert update_kernels(numpy) is numpy.kernels
    monkeypatch.setenv("GPUNN_CPU_UPDATES", "compiled")
    assert isinstance(update_kernels(numpy), cu.CpuUpdates)
    monkeypatch.setenv("GPUNN_CPU_UPDATES", "auto")
    assert isinstance(update_kernels(numpy), cu.CpuUpdates)
    assert update_kernels(emulated) is emulated.kernels, "the emulated backend runs its own kernels"
    monkeypatch.setenv("GPUNN_CPU_UPDATES", "fast")
    with pytest.raises(ValueError, match="GPUNN_CPU_UPDATES='fast' is not one of auto, compiled, numpy"):
        update_kernels(numpy)


def test_without_a_compiler_auto_falls_back_and_compiled_says_why(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-gpunn")
    monkeypatch.setattr(cu, "_best", cu._best.__wrapped__)  # no cached build
    monkeypatch.setenv("GPUNN_CPU_UPDATES", "auto")
    assert cu.cpu_updates() is None
    monkeypatch.setenv("GPUNN_CPU_UPDATES", "compiled")
    with pytest.raises(CompilerUnavailable, match="no-such-compiler-gpunn"):
        cu.cpu_updates()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer,options", [
    ("adam", {}), ("adamw", {}), ("adam", dict(weight_decay=1e-3)),
    ("sgd", dict(lr=0.1, momentum=0.9)), ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("sgd", dict(lr=0.1, weight_decay=1e-3)),
], ids=["adam", "adamw", "adam+l2", "momentum", "nesterov+decay", "decay"])
def test_training_with_either_update_gives_the_same_network(best, monkeypatch, optimizer, options, dtype):
    """Two epochs of a relu/softmax net: the compiled and the NumPy updates agree to float rounding."""
    rng = np.random.default_rng(3)
    X, y = rng.random((300, 12)), rng.integers(0, 4, 300)
    params = {}
    for mode in ("numpy", "compiled"):
        monkeypatch.setenv("GPUNN_CPU_UPDATES", mode)
        net = gpunn.Network([12, 16, 4], activation="relu", output_activation="softmax", backend="numpy",
                            dtype=dtype, seed=2)
        net.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer, **options)
        params[mode] = net.params.copy()
    # ~20 steps, each within a few ulps of the parameters' scale; the steps do not amplify
    # a difference (Adam's step is bounded by lr), so 64 ulps of the largest parameter
    scale = np.abs(params["numpy"]).max()
    assert_close(params["compiled"], params["numpy"], atol=64 * eps(np.dtype(dtype)) * scale, what="parameters")


@pytest.mark.parametrize("optimizer,options", [("adam", {}), ("sgd", dict(lr=0.1, momentum=0.9))])
def test_a_changed_hyper_parameter_takes_effect_at_the_next_step(best, monkeypatch, optimizer, options):
    """scikit-learn's partial_fit sets ``weight_decay`` on a live optimizer: the bound update follows."""
    rng = np.random.default_rng(5)
    X, y = rng.random((64, 6)), rng.integers(0, 3, 64)
    params = {}
    for mode in ("numpy", "compiled"):
        monkeypatch.setenv("GPUNN_CPU_UPDATES", mode)
        net = gpunn.Network([6, 5, 3], backend="numpy", dtype="float64", seed=1)
        net.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer, **options)
        net.optimizer.weight_decay = 0.5
        net.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer, weight_decay=0.5, **options)
        params[mode] = net.params.copy()
    assert isinstance(net.optimizer.updates, cu.CpuUpdates)
    assert net.optimizer._bound[2][-2 if optimizer == "adam" else 2] == 0.5
    assert_close(params["compiled"], params["numpy"], atol=64 * eps(np.float64) * np.abs(params["numpy"]).max())


def test_a_level_the_compiler_refuses_falls_back_to_the_next_one_down(best, monkeypatch):
    """A compiler without ``-march=x86-64-v4`` (or v3) still gives the fastest build it can make."""
    if best.isa_level < 3:
        pytest.skip(f"this CPU runs level {best.isa_level}: no level above the baseline to refuse")
    monkeypatch.setitem(cu.LEVEL_FLAGS, 4, ("-march=no-such-level-gpunn",))
    assert cu.build().isa_level == 3
    monkeypatch.setitem(cu.LEVEL_FLAGS, 3, ("-march=no-such-level-gpunn",))
    assert cu.build().isa_level == 1
