"""Parity cases for the fused kernels: one set of comparisons, run against every implementation.

:class:`KernelParity` holds the test methods.  A test module subclasses it and provides
two fixtures, ``kernels`` (the implementation under test: ``HostKernels`` or
``CupyKernels``) and ``xp`` (the array module its arrays live in).  Every method feeds
fresh random inputs to that implementation and to :class:`gpunn.compute.ops.NumpyKernels`, the
twin that defines the semantics, and compares.  Outputs that are not also inputs are
filled with NaN first, so an element the kernel forgets to write fails the comparison.

Test modules import this file by name: tests/ has no ``__init__.py``, so pytest's default
(``prepend``) import mode puts tests/ on ``sys.path``.

Tolerances (one place, with their reasons):

* ``sigmoid``, ``tanh``: the host and NumPy compute ``0.5*tanh(0.5*z) + 0.5`` (``tanh(z)``)
  with the same operations, but glibc's ``tanhf``/``tanh`` and NumPy's own (SIMD) tanh
  differ by up to one ulp (measured: at most 1 eps of absolute difference over 800k
  samples); CUDA documents ``tanhf`` to 2 ulp.  Outputs lie in [-1, 1], so the check is
  absolute: ``atol = 4 eps`` (4.8e-7 in float32, 8.9e-16 in float64).  ``relu`` and
  ``identity`` (one comparison, one addition) must agree to the last bit.
* ``exact``: every ``<activation>_backward`` and the sigmoid outputs' deltas do the same
  IEEE multiplications and subtractions in the same order as the twin (no library
  function), so they must agree to the last bit.  On the GPU that holds only because
  these operations are written with explicitly rounded intrinsics (``__fmul_rn``,
  ``__fsub_rn``, ...: gpunn_math.cuh), which no compiler contracts into an FMA: NVRTC's
  default ``--fmad=true`` fused tanh's ``1 - a*a`` otherwise.  test_kernels_compile.py
  checks the PTX of these kernels for anything an FMA could come from.
* ``softmax``: ``exp`` (glibc against NumPy's SIMD exp, 1-2 ulp; CUDA's ``expf`` 2 ulp)
  feeds the sum and the quotients, and the kernel adds the K classes up one after the
  other where NumPy may sum a contiguous column pairwise (a relative error of up to
  K eps between them), so probabilities and deltas (in [-1, 1]) are compared absolutely
  at ``atol = (8 + K) eps``, the loss as ``loss`` below.
* ``adam``: the bias corrections use ``pow`` in double on both sides; each of the step's
  roundings is half an ulp of its term, ``atol = 8 eps * (max|theta| + max|step|)``.
* ``loss``: the per-element terms agree to an ulp of T (``logf`` vs NumPy's log; the
  quadratic twin sums in T with BLAS ``dot``), and both sides add them up in a different
  order.  float32: ``rtol = 1e-5``; float64: ``rtol = 1e-12`` (worst case n*eps for
  n = 10^4 positive terms is 2.2e-12; measured below 1e-15).
* ``sgd``: the twin's plain step rounds ``lr*inv_m`` first, the kernel rounds
  ``grad*inv_m`` first, and the GPU may fuse ``theta - lr*g`` into an FMA; each rounding
  is half an ulp of its term, so ``atol = 4 eps * (max|theta| + max|step|)``.
* ``chain`` (forward then output delta): a one-ulp difference in ``a`` near 1 becomes a
  large *relative* error in ``1 - a``, and so in ``a(1 - a)``; the chained delta is
  compared absolutely, ``atol = 8 eps`` (|delta| <= 1, its derivative in ``a`` <= 2).
* ``dense`` (the fused products against BLAS and the twin's epilogue): a dot product of
  n terms computed in any order (or with FMAs) is within ``(n/2) eps sum|a_i b_i|`` of the
  exact one, so two such computations differ by at most ``n eps sum|a_i b_i|``; the
  check is ``|got - want| <= 2 n eps (|A| |B|) + ACTIVATION_ATOL eps`` element by
  element (every activation and derivative here has slope at most 1, so an error in
  the sum is not magnified).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from gpunn.compute import kernel_source
from gpunn.compute.backend import to_numpy
from gpunn.compute.ops import ACTIVATIONS, OBJECTIVES, REFERENCE_ACTIVATIONS, NumpyKernels
from rounding import assert_labels_agree

SHAPES = [(1, 1), (3, 257), (10, 1000), (1, 4096), (4096, 1)]
SHAPE_IDS = [f"{r}x{c}" for r, c in SHAPES]
DTYPES = [np.float32, np.float64]
SGD_MODES = {
    "plain": dict(momentum=0.0, weight_decay=0.0),
    "momentum": dict(momentum=0.9, weight_decay=0.0),
    "weight_decay": dict(momentum=0.0, weight_decay=1e-3),
    "momentum+weight_decay": dict(momentum=0.5, weight_decay=5e-4),
    "nesterov": dict(momentum=0.9, weight_decay=1e-3, nesterov=True),
}
ADAM_MODES = {
    "adam": dict(weight_decay=0.0, decoupled=False),
    "adam+l2": dict(weight_decay=1e-2, decoupled=False),
    "adamw": dict(weight_decay=1e-2, decoupled=True),
}
#: Absolute tolerance of each forward activation, in units of eps (see the module docstring).
ACTIVATION_ATOL = {"sigmoid": 4, "tanh": 4, "relu": 0, "identity": 0}
#: Dense layers (inputs, units, samples): every dimension below, at and across a tile
#: (16) and an inner-dimension stage (32) of the tiled products.
LAYER_SHAPES = [(1, 1, 1), (7, 13, 29), (30, 10, 10), (100, 64, 64), (257, 129, 29)]
LAYER_IDS = ["x".join(map(str, shape)) for shape in LAYER_SHAPES]


def missing_tool(reason: str) -> None:
    """Skip a test (or a test module) whose tool is missing, but fail it on CI (``$CI`` set), where it must exist."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} [CI is set: a missing tool is a failure there]", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def assert_close(actual, expected, *, atol=0.0, rtol=0.0, what=""):
    np.testing.assert_allclose(to_numpy(actual), expected, rtol=rtol, atol=atol, err_msg=what)


def assert_exact(actual, expected, what=""):
    np.testing.assert_array_equal(to_numpy(actual), expected, err_msg=what)


LOSS_RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_product_close(actual, expected, a, b, dtype, extra_atol=0.0, what=""):
    """``actual`` agrees with ``expected`` = f(a @ b) to the rounding of the products (``dense`` above)."""
    depth = a.shape[1]
    bound = 2 * depth * eps(dtype) * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    got = to_numpy(actual).astype(np.float64)
    assert not np.isnan(got).any(), f"{what}: NaN left in the output (an element was not written)"
    excess = np.abs(got - expected) - (bound + extra_atol)
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, f"{what}: off by {abs(got - expected)[worst]:.3g} at {worst}, bound {bound[worst]:.3g}"


def activations(rng, shape, dtype, activation="sigmoid") -> np.ndarray:
    """Outputs of ``activation`` over its range, with exact 0s (and 1s) and some tied maxima."""
    a = REFERENCE_ACTIVATIONS[activation][0](rng.normal(scale=3.0, size=shape)).astype(dtype)
    rows, cols = shape
    if rows > 1 and cols > 2:
        a[0, ::3] = 1.0  # saturated outputs: cross-entropy hits its floor where t = 0
        a[rows - 1, ::3] = 1.0  # ... and ties with row 0: argmax must pick row 0
        a[:, 1::5] = 0.0  # whole columns of zeros: ties everywhere, argmax is 0
    return a


def logits(rng, shape, dtype) -> np.ndarray:
    """Output-layer weighted sums for a softmax: wide spread, some huge, some tied."""
    z = rng.normal(scale=6.0, size=shape).astype(dtype)
    rows, cols = shape
    if rows > 1 and cols > 2:
        z[0, ::4] = 800.0  # exp would overflow without the max shift
        z[rows - 1, ::4] = 800.0  # ... and a tie: argmax must pick row 0
        z[:, 2::7] = -300.0  # whole columns equal: uniform probabilities, argmax 0
    return z


class KernelParity:
    """The comparisons against the NumPy twins; subclasses provide ``kernels`` and ``xp``."""

    @pytest.fixture
    def rng(self, request):
        # Fresh inputs for every test, reproducible from the test's name.
        return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))

    @pytest.fixture
    def numpy_kernels(self):
        return NumpyKernels()

    # -- forward ------------------------------------------------------------------
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
    @pytest.mark.parametrize("activation", ACTIVATIONS)
    def test_bias_act(self, kernels, xp, numpy_kernels, rng, activation, shape, dtype):
        z = rng.normal(scale=4.0, size=shape).astype(dtype)
        b = rng.normal(size=shape[0]).astype(dtype)
        expected = z.copy()
        numpy_kernels.bias_act(expected, b, activation)
        z_dev = xp.array(z)
        kernels.bias_act(z_dev, xp.array(b), activation)
        assert_close(z_dev, expected, atol=ACTIVATION_ATOL[activation] * eps(dtype), what=activation)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_bias_sigmoid_saturates_without_nan(self, kernels, xp, numpy_kernels, dtype):
        z = np.array([[-1e4, -200.0, -20.0, 0.0, 1.5, -3.0, 20.0, 200.0, 1e4]], dtype)
        b = np.zeros(1, dtype)
        expected = z.copy()
        numpy_kernels.bias_act(expected, b, "sigmoid")
        z_dev = xp.array(z)
        kernels.bias_act(z_dev, xp.array(b), "sigmoid")
        got = to_numpy(z_dev)
        assert not np.isnan(got).any()
        assert got[0, 0] == 0.0 and got[0, 1] == 0.0
        assert got[0, -1] == 1.0 and got[0, -2] == 1.0
        assert got[0, 3] == 0.5
        assert_close(got, expected, atol=4 * eps(dtype), what="sigmoid")

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_relu_keeps_nan_and_zeroes_negatives(self, kernels, xp, numpy_kernels, dtype):
        z = np.array([[-1e30, -1.0, -0.0, 0.0, 2.5, np.nan, np.inf, -np.inf]], dtype)
        expected = z.copy()
        numpy_kernels.bias_act(expected, np.zeros(1, dtype), "relu")
        z_dev = xp.array(z)
        kernels.bias_act(z_dev, xp.zeros(1, dtype), "relu")
        assert_exact(z_dev, expected, "relu")
        assert np.isnan(to_numpy(z_dev)[0, 5])

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
    def test_softmax_columns(self, kernels, xp, numpy_kernels, rng, shape, dtype):
        z = logits(rng, shape, dtype)
        expected = z.copy()
        numpy_kernels.softmax_(expected)
        z_dev = xp.array(z)
        kernels.softmax_(z_dev)
        assert_close(z_dev, expected, atol=(8 + shape[0]) * eps(dtype), what="softmax")
        np.testing.assert_allclose(to_numpy(z_dev).sum(axis=0), 1.0, rtol=shape[0] * 4 * eps(dtype))

    # -- the fused dense products -------------------------------------------------
    @staticmethod
    def _layer(rng, shape, dtype):
        """A layer's [W; b] block and its input [A_prev; 1] (with the row of ones)."""
        inputs, units, samples = shape
        wb = rng.normal(scale=1 / np.sqrt(inputs), size=(inputs + 1, units)).astype(dtype)
        a_in = np.ones((inputs + 1, samples), dtype)
        a_in[:-1] = rng.normal(size=(inputs, samples))
        return wb, a_in

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", LAYER_SHAPES, ids=LAYER_IDS)
    @pytest.mark.parametrize("activation", ACTIVATIONS)
    def test_dense_forward(self, kernels, xp, numpy_kernels, rng, activation, shape, dtype):
        wb, a_in = self._layer(rng, shape, dtype)
        z = xp.full((shape[1], shape[2]), np.nan, dtype)
        kernels.dense_forward(xp.array(wb), xp.array(a_in), z, activation)
        expected = np.empty((shape[1], shape[2]), np.float64)
        numpy_kernels.dense_forward(wb.astype(np.float64), a_in.astype(np.float64), expected, activation)
        assert_product_close(z, expected, wb.T, a_in, dtype, ACTIVATION_ATOL[activation] * eps(dtype),
                             f"act([W; b]^T [A; 1]), {activation}")

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", LAYER_SHAPES, ids=LAYER_IDS)
    @pytest.mark.parametrize("activation", ACTIVATIONS)
    def test_dense_backward(self, kernels, xp, numpy_kernels, rng, activation, shape, dtype):
        inputs, units, samples = shape
        w = rng.normal(size=(inputs, units)).astype(dtype)
        delta = rng.normal(size=(units, samples)).astype(dtype)
        a_below = activations(rng, (inputs, samples), dtype, activation)
        delta_below = xp.full((inputs, samples), np.nan, dtype)
        kernels.dense_backward(xp.array(w), xp.array(delta), xp.array(a_below), delta_below, activation)
        expected = np.empty((inputs, samples), np.float64)
        numpy_kernels.dense_backward(w.astype(np.float64), delta.astype(np.float64), a_below.astype(np.float64),
                                     expected, activation)
        assert_product_close(delta_below, expected, w, delta, dtype, what=f"(W delta) * {activation}'")

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", LAYER_SHAPES, ids=LAYER_IDS)
    def test_dense_weight_grad(self, kernels, xp, numpy_kernels, rng, shape, dtype):
        inputs, units, samples = shape
        _, a_in = self._layer(rng, shape, dtype)
        delta = rng.normal(size=(units, samples)).astype(dtype)
        grad = xp.full((inputs + 1, units), np.nan, dtype)
        kernels.dense_weight_grad(xp.array(a_in), xp.array(delta), grad)
        expected = np.empty((inputs + 1, units), np.float64)
        numpy_kernels.dense_weight_grad(a_in.astype(np.float64), delta.astype(np.float64), expected)
        assert_product_close(grad, expected, a_in, delta.T, dtype, what="[A; 1] delta^T")
        # the bias gradient (last row) is the sum of the deltas over the batch
        np.testing.assert_allclose(to_numpy(grad)[-1], delta.astype(np.float64).sum(axis=1),
                                   rtol=0, atol=2 * samples * eps(dtype) * np.abs(delta).sum(axis=1).max())

    def test_dense_kernels_refuse_mismatched_shapes(self, kernels, xp):
        f32 = np.float32
        with pytest.raises(ValueError, match="a_in has 4 rows"):
            kernels.dense_forward(xp.zeros((3, 2), f32), xp.zeros((4, 5), f32), xp.zeros((2, 5), f32), "relu")
        with pytest.raises(ValueError, match="z has shape"):
            kernels.dense_forward(xp.zeros((3, 2), f32), xp.zeros((3, 5), f32), xp.zeros((2, 4), f32), "relu")
        with pytest.raises(ValueError, match="unknown activation"):
            kernels.dense_backward(xp.zeros((3, 2), f32), xp.zeros((2, 5), f32), xp.zeros((3, 5), f32),
                                   xp.zeros((3, 5), f32), "swish")
        with pytest.raises(ValueError, match="grad has shape"):
            kernels.dense_weight_grad(xp.zeros((3, 5), f32), xp.zeros((2, 5), f32), xp.zeros((2, 3), f32))
        with pytest.raises(TypeError, match="mixed dtypes"):
            kernels.dense_weight_grad(xp.zeros((3, 5), f32), xp.zeros((2, 5)), xp.zeros((3, 2), f32))

    # -- backward -----------------------------------------------------------------
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
    @pytest.mark.parametrize("activation", ACTIVATIONS)
    def test_act_backward(self, kernels, xp, numpy_kernels, rng, activation, shape, dtype):
        g = rng.normal(size=shape).astype(dtype)
        a = activations(rng, shape, dtype, activation)
        expected = g.copy()
        numpy_kernels.act_backward(expected, a, activation)
        g_dev = xp.array(g)
        kernels.act_backward(g_dev, xp.array(a), activation)
        assert_exact(g_dev, expected, f"g * {activation}'")

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
    @pytest.mark.parametrize("objective", OBJECTIVES)
    @pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
    def test_output_delta(self, kernels, xp, numpy_kernels, rng, weighted, objective, shape, dtype):
        softmax = objective == "softmax_cross_entropy"
        regression = objective == "squared_error"
        if regression:  # identity outputs and float targets of any size
            a = rng.normal(scale=3.0, size=shape).astype(dtype)
            targets = rng.normal(scale=2.0, size=shape).astype(dtype)
        elif objective == "multilabel_cross_entropy":  # sigmoid outputs, 0/1 rows of several labels
            a = activations(rng, shape, dtype)
            targets = rng.integers(0, 2, size=shape).astype(dtype)
            targets[:, ::5] = (a[:, ::5] > 0.5)  # some samples entirely right
        else:
            a = logits(rng, shape, dtype) if softmax else activations(rng, shape, dtype)
            targets = None
        labels = rng.integers(0, shape[0], size=shape[1]).astype(np.int32)
        weights = rng.uniform(0.0, 3.0, size=shape[1]).astype(dtype) if weighted else None
        if weighted:
            weights[::7] = 0.0  # a weight of 0 silences a sample entirely
        # Nonzero starting totals: the kernel must add to them, not overwrite them.
        expected = self._output_delta(numpy_kernels, np, a, labels, objective, targets=targets, weights=weights)
        actual = self._output_delta(kernels, xp, a, labels, objective, targets=targets, weights=weights)
        if softmax:
            atol = (8 + shape[0]) * eps(dtype) * (1.0 if weights is None else max(1.0, float(weights.max())))
            assert_close(actual[0], expected[0], atol=atol, what="delta")
            assert_close(actual[3], expected[3], atol=atol, what="probabilities")
            assert np.isfinite(actual[1]), "the log-sum-exp loss must stay finite"
            # The kernel counts the argmax of its own probabilities (its exp rounds unlike NumPy's): the
            # labels it counts are compared by the rounding rule (tests/rounding.py), at the same tolerance.
            # Tied logits (made on purpose) stay exactly tied on both sides: the first class, compared exactly.
            got, want = actual[3].argmax(axis=0), expected[3].argmax(axis=0)
            assert_labels_agree(got, want, expected[3].T, dtype, 8 + shape[0], other_scores=actual[3].T)
            assert int(actual[2]) == 7 + int(np.sum(got == labels)), "correct: the argmax of its probabilities"
        else:
            assert_exact(actual[0], expected[0], "delta")
            # exact: both count the argmax of the same given outputs
            assert int(actual[2]) == int(expected[2]), "correct"
        assert_close(actual[1], expected[1], rtol=LOSS_RTOL[dtype], what="loss_sum")
        if regression:  # the reference formula, and no correct answers counted
            want = (a.astype(np.float64) - targets) ** 2 * (1.0 if weights is None else weights.astype(np.float64))
            assert actual[1] == pytest.approx(1.5 + 0.5 * want.sum(), rel=LOSS_RTOL[dtype])
            assert actual[2] == 7

    @staticmethod
    def _output_delta(kernels, xp, a, labels, objective, start_loss=1.5, start_correct=7, targets=None,
                      weights=None):
        """(delta, loss sum, correct count, outputs afterwards) from one output_delta call."""
        delta = xp.full(a.shape, np.nan, a.dtype)
        loss_sum = xp.array(np.array(start_loss, np.float64))
        correct = xp.array(np.array(start_correct, np.int64))
        outputs = xp.array(a)
        kernels.output_delta(outputs, xp.array(labels), delta, loss_sum, correct, objective,
                             targets=None if targets is None else xp.array(targets),
                             weights=None if weights is None else xp.array(weights))
        return to_numpy(delta), float(to_numpy(loss_sum)), int(to_numpy(correct)), to_numpy(outputs)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_softmax_loss_is_exact_for_extreme_logits(self, kernels, xp, numpy_kernels, dtype):
        # The label's probability underflows to 0, yet the loss is the true -log p = 1000.
        z = np.array([[1000.0, 0.0], [0.0, 0.0]], dtype)  # columns: samples
        labels = np.array([1, 0], np.int32)
        delta, loss, correct, p = self._output_delta(kernels, xp, z, labels, "softmax_cross_entropy", 0.0, 0)
        assert loss == pytest.approx(1000.0 + np.log(2.0), rel=1e-6)
        assert correct == 1  # sample 1 ties at 0.5/0.5: the first class wins, and it is its label
        assert_close(p, np.array([[1.0, 0.5], [0.0, 0.5]]), atol=4 * eps(dtype), what="probabilities")

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_forward_then_output_delta(self, kernels, xp, numpy_kernels, rng, dtype):
        # The real sequence: saturating forward pass, then the quadratic delta from its output.
        shape = (10, 1000)
        z = rng.normal(scale=12.0, size=shape).astype(dtype)
        b = rng.normal(size=shape[0]).astype(dtype)
        labels = rng.integers(0, shape[0], size=shape[1]).astype(np.int32)
        a_ref = z.copy()
        numpy_kernels.bias_act(a_ref, b, "sigmoid")
        expected = self._output_delta(numpy_kernels, np, a_ref, labels, "quadratic")
        a_dev = xp.array(z)
        kernels.bias_act(a_dev, xp.array(b), "sigmoid")
        actual = self._output_delta(kernels, xp, to_numpy(a_dev), labels, "quadratic")
        assert_close(actual[0], expected[0], atol=8 * eps(dtype), what="chained delta")
        assert_close(actual[1], expected[1], rtol=LOSS_RTOL[dtype], what="chained loss")

    # -- update -------------------------------------------------------------------
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("size", [1, 771, 10_000, 4096])
    @pytest.mark.parametrize("mode", SGD_MODES)
    @pytest.mark.parametrize("scaled", [False, True], ids=["one-rate", "per-layer-rates"])
    def test_sgd_update(self, kernels, xp, numpy_kernels, rng, scaled, mode, size, dtype):
        hyper = SGD_MODES[mode]
        theta = rng.normal(size=size).astype(dtype)
        grad = rng.normal(scale=10.0, size=size).astype(dtype)
        velocity = rng.normal(scale=0.1, size=size).astype(dtype)
        lr_scale = rng.uniform(0.1, 1.0, size=size).astype(dtype) if scaled else None
        lr, inv_m = 0.3, 1.0 / 32

        theta_ref, velocity_ref = theta.copy(), velocity.copy()
        numpy_kernels.sgd_update(theta_ref, grad.copy(), velocity_ref, lr, inv_m, lr_scale=lr_scale, **hyper)
        theta_dev, velocity_dev = xp.array(theta), xp.array(velocity)
        kernels.sgd_update(theta_dev, xp.array(grad), velocity_dev, lr, inv_m,
                           lr_scale=None if lr_scale is None else xp.array(lr_scale), **hyper)

        scale = np.abs(theta).max() + np.abs(theta - theta_ref).max()
        assert_close(theta_dev, theta_ref, atol=4 * eps(dtype) * scale, what="theta")
        assert_close(velocity_dev, velocity_ref, atol=4 * eps(dtype) * np.abs(velocity_ref).max(),
                     what="velocity")

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_sgd_update_without_momentum_ignores_velocity(self, kernels, xp, numpy_kernels, rng, dtype):
        theta = rng.normal(size=300).astype(dtype)
        grad = rng.normal(size=300).astype(dtype)
        theta_ref = theta.copy()
        numpy_kernels.sgd_update(theta_ref, grad.copy(), None, 0.1, 0.5)
        poisoned_velocity = xp.full(300, np.nan, dtype)
        for velocity in (None, poisoned_velocity):
            theta_dev = xp.array(theta)
            kernels.sgd_update(theta_dev, xp.array(grad), velocity, 0.1, 0.5)
            assert_close(theta_dev, theta_ref, atol=4 * eps(dtype) * 2 * np.abs(theta).max(), what="theta")
        assert np.isnan(to_numpy(poisoned_velocity)).all(), "velocity was written with momentum 0"

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("size", [1, 771, 10_000])
    @pytest.mark.parametrize("mode", ADAM_MODES)
    def test_adam_update(self, kernels, xp, numpy_kernels, rng, mode, size, dtype):
        hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, **ADAM_MODES[mode])
        theta = rng.normal(size=size).astype(dtype)
        m = np.zeros(size, dtype)
        v = np.zeros(size, dtype)
        theta_dev, m_dev, v_dev = xp.array(theta), xp.array(m), xp.array(v)
        step, step_dev = np.zeros((), np.int32), xp.zeros((), np.int32)
        for _ in range(3):  # three steps: the bias corrections change with the step number
            grad = rng.normal(scale=10.0, size=size).astype(dtype)
            before = theta.copy()
            numpy_kernels.advance_step(step)
            numpy_kernels.adam_update(theta, grad.copy(), m, v, step, 1.0 / 16, **hyper)
            kernels.advance_step(step_dev)
            kernels.adam_update(theta_dev, xp.array(grad), m_dev, v_dev, step_dev, 1.0 / 16, **hyper)
            scale = np.abs(before).max() + np.abs(theta - before).max()
            assert_close(theta_dev, theta, atol=8 * eps(dtype) * scale, what="theta")
            assert_close(m_dev, m, atol=8 * eps(dtype) * np.abs(m).max(), what="m")
            assert_close(v_dev, v, atol=8 * eps(dtype) * np.abs(v).max(), what="v")
        assert int(to_numpy(step_dev)) == 3

    # -- launch shapes and argument checks ------------------------------------------
    def test_grid_stride_loops_cover_more_elements_than_threads(
        self, kernels, xp, numpy_kernels, rng, monkeypatch
    ):
        monkeypatch.setattr(kernel_source, "MAX_BLOCKS", 2)  # 512 threads for 10,000 elements
        shape, dtype = (10, 1000), np.float64
        z = rng.normal(size=shape).astype(dtype)
        b = rng.normal(size=shape[0]).astype(dtype)
        expected = z.copy()
        numpy_kernels.bias_act(expected, b, "sigmoid")
        z_dev = xp.array(z)
        kernels.bias_act(z_dev, xp.array(b), "sigmoid")
        assert_close(z_dev, expected, atol=4 * eps(dtype), what="sigmoid")

        g = rng.normal(size=shape).astype(dtype)
        expected_g = g.copy()
        numpy_kernels.act_backward(expected_g, expected, "sigmoid")
        g_dev = xp.array(g)
        kernels.act_backward(g_dev, xp.array(expected), "sigmoid")
        assert_exact(g_dev, expected_g, "g * a(1 - a)")

        a = activations(rng, (3, 2000), dtype)
        labels = rng.integers(0, 3, size=2000).astype(np.int32)
        ref = self._output_delta(numpy_kernels, np, a, labels, "cross_entropy")
        got = self._output_delta(kernels, xp, a, labels, "cross_entropy")
        assert_exact(got[0], ref[0], "delta")
        assert_close(got[1], ref[1], rtol=LOSS_RTOL[dtype], what="loss_sum")
        assert got[2] == ref[2]  # exact: both count the argmax of the same given outputs

        theta = rng.normal(size=5000).astype(dtype)
        grad = rng.normal(size=5000).astype(dtype)
        theta_ref = theta.copy()
        numpy_kernels.sgd_update(theta_ref, grad.copy(), None, 0.1, 0.25, weight_decay=0.01)
        theta_dev = xp.array(theta)
        kernels.sgd_update(theta_dev, xp.array(grad), None, 0.1, 0.25, weight_decay=0.01)
        assert_close(theta_dev, theta_ref, atol=8 * eps(dtype) * np.abs(theta).max(), what="theta")

    # -- CUDA-graph helpers: gather by a device-side step counter ----------------------
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("rows,n_total,batch,cols,first", [
        (1, 1, 1, 1, 0), (3, 1000, 257, 257, 0), (784, 300, 10, 4, 3), (5, 4096, 4096, 4096, 0),
    ])
    def test_gather_batch_follows_the_step_counter(self, kernels, xp, numpy_kernels, rng,
                                                   rows, n_total, batch, cols, first, dtype):
        src = rng.normal(size=(rows, n_total)).astype(dtype)
        labels = rng.integers(0, 10, n_total).astype(np.int32)
        order = rng.permutation(n_total).astype(np.int64)
        src_d, labels_d, order_d = xp.array(src), xp.array(labels), xp.array(order)
        step = xp.zeros((), np.int32)
        steps = n_total // batch
        for expected_step in range(steps):
            out = xp.full((rows, cols), np.nan, dtype)
            labels_out = xp.full(cols, -1, np.int32)
            kernels.gather_batch(src_d, labels_d, order_d, step, out, labels_out, batch, first)
            want = np.full((rows, cols), np.nan, dtype)
            want_labels = np.full(cols, -1, np.int32)
            numpy_kernels.gather_batch(src, labels, order, np.array(expected_step, np.int32),
                                       want, want_labels, batch, first)
            assert_exact(out, want, f"gathered batch {expected_step}")
            assert_exact(labels_out, want_labels, f"gathered labels {expected_step}")
            kernels.advance_step(step)
            assert int(step) == expected_step + 1, "advance_step"

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_gather_columns_follows_the_step_counter(self, kernels, xp, numpy_kernels, rng, dtype):
        rows, n_total, batch = 3, 50, 8
        src = rng.normal(size=(rows, n_total)).astype(dtype)
        order = rng.permutation(n_total).astype(np.int64)
        src_d, order_d = xp.array(src), xp.array(order)
        step = xp.zeros((), np.int32)
        for expected_step in range(n_total // batch):
            out = xp.full((rows, batch - 2), np.nan, dtype)
            kernels.gather_columns(src_d, order_d, step, out, batch, first=2)
            want = np.full((rows, batch - 2), np.nan, dtype)
            numpy_kernels.gather_columns(src, order, np.array(expected_step, np.int32), want, batch, first=2)
            assert_exact(out, want, f"gathered columns {expected_step}")
            kernels.advance_step(step)

    def test_squared_error_needs_targets(self, kernels, xp):
        z32 = xp.zeros((2, 3), np.float32)
        with pytest.raises((ValueError, TypeError)):
            kernels.output_delta(z32, xp.zeros(3, np.int32), z32.copy(), xp.zeros((), np.float64),
                                 xp.zeros((), np.int64), "squared_error", targets=xp.zeros((2, 4), np.float32))

    def test_bad_arguments_are_refused(self, kernels, xp):
        z32 = xp.zeros((2, 3), np.float32)
        with pytest.raises(TypeError):
            kernels.bias_act(xp.zeros((2, 3), np.int32), xp.zeros(2, np.int32), "sigmoid")
        with pytest.raises(TypeError):
            kernels.bias_act(z32, xp.zeros(2, np.float64), "relu")
        with pytest.raises(ValueError):
            kernels.bias_act(z32, xp.zeros(3, np.float32), "tanh")
        with pytest.raises(ValueError):
            kernels.bias_act(z32, xp.zeros(2, np.float32), "swish")
        with pytest.raises(ValueError):
            kernels.act_backward(z32.T, xp.zeros((3, 2), np.float32), "sigmoid")  # not C-contiguous
        with pytest.raises(ValueError):
            kernels.output_delta(z32, xp.zeros(3, np.int32), z32.copy(), xp.zeros((), np.float64),
                                 xp.zeros((), np.int64), "hinge")
        with pytest.raises(ValueError):
            kernels.sgd_update(xp.zeros(4, np.float32), xp.zeros(4, np.float32), None, 0.1, 1.0, nesterov=True)
        with pytest.raises(TypeError):
            kernels.output_delta(z32, xp.zeros(3, np.int64), z32.copy(), xp.zeros((), np.float64),
                                 xp.zeros((), np.int64))
