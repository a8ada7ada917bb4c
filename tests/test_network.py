"""The network's maths: gradients against finite differences, a hand-computed example, learning."""

import math

import numpy as np
import pytest

import gpunn
from gpunn.nn.losses import one_hot, softmax_cross_entropy
from gpunn.compute.ops import ACTIVATIONS, NumpyKernels, sigmoid

from helpers import batch_gradient, reference_loss
from rounding import assert_labels_agree, assert_values_agree, network_terms


def min_hidden_margin(net, X):
    """The smallest |z| over a ReLU network's hidden weighted sums (the kink is at 0)."""
    a, margin = np.asarray(X, dtype=np.float64).T, np.inf
    weights = net.get_weights()
    for W, b in zip(weights[:-2:2], weights[1:-2:2]):
        z = W.T @ a + b[:, None]
        margin = min(margin, np.abs(z).min())
        a = np.maximum(z, 0)
    return margin


def random_problem(sizes, n=7, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    return X, y


OUTPUTS = [("sigmoid", "quadratic"), ("sigmoid", "cross_entropy"), ("softmax", "cross_entropy")]


@pytest.mark.parametrize("output,loss", OUTPUTS, ids=["-".join(o) for o in OUTPUTS])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes", [[3, 2], [4, 5, 3], [5, 4, 6, 3], [3, 6, 5, 4, 2]])
@pytest.mark.parametrize("backend", ["numpy", "emulated"])  # folded bias; bias kernel + CUDA sources
def test_gradient_matches_finite_differences(activation, output, loss, sizes, backend):
    net = gpunn.Network(sizes, activation=activation, output_activation=output, loss=loss, backend=backend,
                        dtype="float64", seed=3)
    X, y = random_problem(sizes)
    # Nonzero biases everywhere: with He's zero biases a unit whose inputs are all dead
    # ReLUs sits exactly on the kink at z = 0, where no finite difference can agree.
    net.params += np.random.default_rng(4).normal(scale=0.1, size=net.params.shape)
    if activation == "relu":  # a step of 1e-5 in one parameter moves any z by far less than 1e-4
        assert min_hidden_margin(net, X) > 1e-4, "a pre-activation sits within a finite-difference step of a kink"
    grad, loss_sum, _ = batch_gradient(net, X, y)
    assert loss_sum == pytest.approx(reference_loss(net, X, y), rel=1e-12)
    base = net.params.copy()
    eps = 1e-5  # central differences: truncation ~eps^2, rounding ~1e-16/eps
    numeric = np.empty_like(grad)
    for i in range(base.size):
        net.params[...] = base
        net.params[i] += eps
        up = reference_loss(net, X, y)
        net.params[i] -= 2 * eps
        down = reference_loss(net, X, y)
        numeric[i] = (up - down) / (2 * eps)
    net.params[...] = base
    relative = np.linalg.norm(grad - numeric) / max(np.linalg.norm(grad), np.linalg.norm(numeric))
    assert relative < 1e-6
    # and element by element, for every parameter whose gradient is not tiny
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


def test_hand_computed_2_2_1_network():
    """Every number of one forward and backward pass, written out neuron by neuron."""
    net = gpunn.Network([2, 2, 1], backend="numpy", dtype="float64")
    W1 = np.array([[0.15, 0.25], [0.20, 0.30]])  # W1[i, j]: input i -> hidden j
    b1 = np.array([0.35, 0.35])
    W2 = np.array([[0.40], [0.45]])
    b2 = np.array([0.60])
    net.set_weights([W1, b1, W2, b2])
    x = (0.05, 0.10)
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731 - the textbook formula, on purpose
    h = [s(x[0] * W1[0, j] + x[1] * W1[1, j] + b1[j]) for j in range(2)]
    out = s(h[0] * W2[0, 0] + h[1] * W2[1, 0] + b2[0])
    assert net.predict_proba(np.array([x]))[0, 0] == pytest.approx(out, rel=1e-14)

    # target class 0 on a single output unit means t = 1
    d_out = (out - 1.0) * out * (1 - out)
    d_hidden = [d_out * W2[j, 0] * h[j] * (1 - h[j]) for j in range(2)]
    expected = [
        x[0] * d_hidden[0], x[0] * d_hidden[1],  # dE/dW1 row for input 0
        x[1] * d_hidden[0], x[1] * d_hidden[1],  # row for input 1
        d_hidden[0], d_hidden[1],                # dE/db1
        h[0] * d_out, h[1] * d_out,              # dE/dW2
        d_out,                                   # dE/db2
    ]
    grad, loss_sum, correct = batch_gradient(net, np.array([x]), np.array([0]))
    np.testing.assert_allclose(grad, expected, rtol=1e-12)
    assert loss_sum == pytest.approx(0.5 * (1 - out) ** 2, rel=1e-14)
    assert correct == 1


def test_xor_is_learned():
    data = gpunn.load_dataset("xor")
    net = gpunn.Network([2, 4, 2], backend="numpy", dtype="float64", seed=0)
    net.fit(data.X_train, data.y_train, epochs=1500, batch_size=4, lr=4.0)
    assert (net.predict(data.X_test) == data.y_test).all()


def test_digits_learned_and_history_keys():
    data = gpunn.load_dataset("digits")
    net = gpunn.Network([64, 30, 10], init="scaled", backend="numpy", seed=1)
    history = net.fit(data.X_train, data.y_train, epochs=5, batch_size=10, lr=3.0,
                      validation_data=(data.X_test, data.y_test))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert all(len(v) == 5 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    result = net.evaluate(data.X_test, data.y_test)
    # exact: evaluate, the validation record and predict run the same forward pass on the same chunks
    assert result["accuracy"] == history.history["val_accuracy"][-1]
    assert result["accuracy"] == np.mean(net.predict(data.X_test) == data.y_test)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_gives_bit_identical_weights(dtype):
    data = gpunn.load_dataset("digits")
    runs = []
    for _ in range(2):
        net = gpunn.Network([64, 20, 10], backend="numpy", dtype=dtype, seed=7)
        net.fit(data.X_train[:300], data.y_train[:300], epochs=3, batch_size=16, lr=1.0, momentum=0.5)
        runs.append(net.get_weights())
    for a, b in zip(*runs):
        assert a.dtype == np.dtype(dtype)
        assert np.array_equal(a, b)
    other = gpunn.Network([64, 20, 10], backend="numpy", dtype=dtype, seed=8)
    assert not np.array_equal(other.get_weights()[0], runs[0][0])


def test_last_partial_batch_is_trained_on():
    """With 5 samples and batch 4 the fifth sample must move the weights too."""
    rng = np.random.default_rng(0)
    X, y = rng.random((5, 3)), np.array([0, 1, 0, 1, 0])
    net = gpunn.Network([3, 2], backend="numpy", dtype="float64", seed=0)
    start = net.params.copy()
    net.fit(X, y, epochs=1, batch_size=4, lr=1.0, shuffle=False)
    # replay by hand: one step on samples 0..3, then one on sample 4
    ref = gpunn.Network([3, 2], backend="numpy", dtype="float64", seed=0)
    for rows in (slice(0, 4), slice(4, 5)):
        grad, _, _ = batch_gradient(ref, X[rows], y[rows])
        m = len(X[rows])
        ref.params[...] -= 1.0 / m * grad
    assert not np.array_equal(net.params, start)
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-12)


def test_one_hot_labels_equal_integer_labels():
    data = gpunn.load_dataset("digits")
    X, y = data.X_train[:100], data.y_train[:100]
    results = []
    for labels in (y, one_hot(y, 10).T):
        net = gpunn.Network([64, 10, 10], backend="numpy", seed=4)
        net.fit(X, labels, epochs=2, batch_size=10, lr=1.0)
        results.append(net.get_weights())
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_momentum_and_weight_decay_change_the_path():
    data = gpunn.load_dataset("digits")
    X, y = data.X_train[:200], data.y_train[:200]
    finals = []
    for momentum, decay in ((0.0, 0.0), (0.9, 0.0), (0.0, 0.01)):
        net = gpunn.Network([64, 10, 10], backend="numpy", dtype="float64", seed=4)
        net.fit(X, y, epochs=2, batch_size=10, lr=0.5, momentum=momentum, weight_decay=decay)
        finals.append(net.params.copy())
    assert not np.allclose(finals[0], finals[1])
    assert not np.allclose(finals[0], finals[2])
    # weight decay pulls the weights towards zero
    assert np.linalg.norm(finals[2]) < np.linalg.norm(finals[0])


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_divergence_stops_with_the_epoch_named():
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    net = gpunn.Network([2, 2], backend="numpy", seed=0)
    net.params[0] = np.inf  # poison one weight: the loss becomes NaN at once
    with pytest.raises(gpunn.TrainingDiverged, match="epoch 1"):
        net.fit(X, [0, 1], epochs=3, batch_size=2, lr=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_twin_never_overflows(dtype):
    z = np.array([[-1e4, -100, -30, 0, 30, 100, 1e4]], dtype=dtype)
    b = np.zeros(1, dtype=dtype)
    with np.errstate(all="raise"):
        NumpyKernels().bias_act(z, b, "sigmoid")
    assert z[0, 0] == 0 and z[0, -1] == 1 and z[0, 3] == 0.5
    assert np.all((z >= 0) & (z <= 1))


def test_fused_twins_equal_plain_formulas():
    rng = np.random.default_rng(5)
    k = NumpyKernels()
    z = rng.normal(size=(6, 9)) * 5
    b = rng.normal(size=6)
    expected = 1 / (1 + np.exp(-(z + b[:, None])))
    k.bias_act(z, b, "sigmoid")
    np.testing.assert_allclose(z, expected, rtol=1e-13, atol=1e-15)
    for activation, formula in (("tanh", np.tanh), ("relu", lambda v: np.where(v > 0, v, 0.0))):
        z = rng.normal(size=(6, 9)) * 5
        expected = formula(z + b[:, None])
        k.bias_act(z, b, activation)
        np.testing.assert_allclose(z, expected, rtol=1e-14, atol=1e-15)

    g, a = rng.normal(size=(4, 5)), rng.random((4, 5))
    for activation, derivative in (("sigmoid", a * (1 - a)), ("tanh", 1 - a * a), ("relu", np.ones_like(a))):
        expected, got = g * derivative, g.copy()
        k.act_backward(got, a, activation)
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    got = g.copy()
    k.act_backward(got, np.where(a > 0.5, a, 0.0), "relu")
    np.testing.assert_array_equal(got, np.where(a > 0.5, g, 0.0))

    z = rng.normal(size=(5, 8)) * 30
    labels = rng.integers(0, 5, 8).astype(np.int32)
    want_loss, want_delta = softmax_cross_entropy(z, one_hot(labels, 5))
    delta, loss_sum, correct = np.full_like(z, np.nan), np.array(0.0), np.array(0, dtype=np.int64)
    p = z.copy()
    k.output_delta(p, labels, delta, loss_sum, correct, "softmax_cross_entropy")
    np.testing.assert_allclose(delta, want_delta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(p, want_delta + one_hot(labels, 5), rtol=1e-12, atol=1e-15)
    assert float(loss_sum) == pytest.approx(want_loss, rel=1e-13)
    assert int(correct) == int((z.argmax(axis=0) == labels).sum())

    a, labels = rng.random((5, 8)), rng.integers(0, 5, 8).astype(np.int32)
    t = one_hot(labels, 5)
    for loss, formula in (("quadratic", lambda: (0.5 * ((a - t) ** 2).sum(), (a - t) * a * (1 - a))),
                          ("cross_entropy", lambda: (-(t * np.log(a) + (1 - t) * np.log(1 - a)).sum(), a - t))):
        delta = np.full_like(a, np.nan)
        loss_sum, correct = np.array(1.5), np.array(2, dtype=np.int64)
        k.output_delta(a, labels, delta, loss_sum, correct, loss)
        want_loss, want_delta = formula()
        np.testing.assert_allclose(delta, want_delta, rtol=1e-14)
        assert float(loss_sum) == pytest.approx(1.5 + want_loss, rel=1e-13)
        assert int(correct) == 2 + int((a.argmax(axis=0) == labels).sum())

    theta, grad, v = rng.normal(size=20), rng.normal(size=20), rng.normal(size=20)
    want_v = 0.9 * v + (grad / 4 + 0.01 * theta)
    want_theta = theta - 0.5 * want_v
    k.sgd_update(theta, grad.copy(), v, 0.5, 0.25, 0.9, 0.01)
    np.testing.assert_allclose(v, want_v, rtol=1e-14)
    np.testing.assert_allclose(theta, want_theta, rtol=1e-14)


def test_bad_inputs_are_clear_errors():
    net = gpunn.Network([4, 3], backend="numpy")
    with pytest.raises(gpunn.DataError, match="3 features per sample but the network's input layer has 4"):
        net.fit(np.zeros((5, 3)), np.zeros(5, dtype=int), epochs=1)
    with pytest.raises(gpunn.DataError, match=r"4 distinct labels \(0, 1, 2, 7\) but the output layer has 3"):
        net.fit(np.zeros((5, 4)), np.array([0, 1, 2, 7, 0]), epochs=1)
    with pytest.raises(gpunn.DataError, match="NaN or infinite"):
        net.fit(np.full((2, 4), np.nan), np.array([0, 1]), epochs=1)
    with pytest.raises(ValueError, match="unknown loss"):
        gpunn.Network([4, 3], loss="hinge", backend="numpy")
    with pytest.raises(ValueError, match="unknown activation"):
        gpunn.Network([4, 3], activation="swish", backend="numpy")
    with pytest.raises(ValueError, match="softmax output layer is trained with loss cross_entropy"):
        gpunn.Network([4, 3], output_activation="softmax", loss="quadratic", backend="numpy")
    with pytest.raises(ValueError, match="unsupported dtype"):
        gpunn.Network([4, 3], dtype="float16", backend="numpy")
    with pytest.raises(ValueError, match="at least one unit"):
        gpunn.Network([4, 0, 3], backend="numpy")


def test_get_weights_shapes_and_flat_views():
    net = gpunn.Network([5, 4, 3], backend="numpy", seed=0)
    W1, b1, W2, b2 = net.get_weights()
    assert (W1.shape, b1.shape, W2.shape, b2.shape) == ((5, 4), (4,), (4, 3), (3,))
    assert net.params.size == 5 * 4 + 4 + 4 * 3 + 3
    # the per-layer views share the flat buffer
    net.weights[1][0, 0] = 42.0
    assert 42.0 in net.params
    assert np.shares_memory(net.biases[0], net.params)


def test_initialisers():
    def first_layer(init, activation="sigmoid"):
        net = gpunn.Network([400, 300, 10], activation=activation, init=init, backend="numpy", dtype="float64")
        return net.get_weights()[:2], net.init

    (W, b), _ = first_layer("normal")
    assert W.std() == pytest.approx(1.0, rel=0.02) and b.std() == pytest.approx(1.0, rel=0.25)
    (W, b), _ = first_layer("scaled")
    assert W.std() == pytest.approx(1 / math.sqrt(400), rel=0.02) and b.std() == pytest.approx(1.0, rel=0.25)
    (W, b), _ = first_layer("xavier")
    assert W.std() == pytest.approx(math.sqrt(2 / 700), rel=0.02) and not b.any()
    (W, b), _ = first_layer("he")
    assert W.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02) and not b.any()
    # the default depends on the activation, in Python as on the command line
    assert [first_layer(None, act)[1] for act in ("sigmoid", "tanh", "relu")] == ["scaled", "xavier", "he"]


def test_predict_matches_reference_forward():
    net = gpunn.Network([64, 12, 10], backend="numpy", dtype="float64", seed=9)
    X = np.random.default_rng(0).random((2100, 64))  # more than one evaluation chunk
    a = X.T
    weights = net.get_weights()
    for W, b in zip(weights[::2], weights[1::2]):
        a = sigmoid(W.T @ a + b[:, None])
    # two computations (the bias folded into one GEMM, or added after it): the rounding rule
    terms = network_terms(net.sizes)
    assert_values_agree(net.predict_proba(X), a.T, net.dtype, terms)
    assert_labels_agree(net.predict(X), a.argmax(axis=0), a.T, net.dtype, terms)


def test_a_float64_inference_copy_answers_each_sample_whatever_the_others():
    """float32 outputs may move by an ulp with a sample's place in the batch (a BLAS's edge columns); a
    float64 copy's stay within float64's rounding, and it computes the float32 network's function."""
    data = gpunn.load_dataset("digits")
    net = gpunn.Network([64, 24, 10], backend="numpy", seed=2, scale="standard")
    net.fit(data.X_train[:300], data.y_train[:300], epochs=2)
    copy = net.inference_copy("float64")
    assert copy.dtype == np.float64 and net.inference_copy(np.float32) is net and copy.scaler is net.scaler
    np.testing.assert_array_equal(copy.params, net.params.astype(np.float64))  # float32 -> float64 is exact
    X = np.concatenate([data.X_test] * 3)[:1025]  # two evaluation chunks, the second of one sample
    order = np.random.default_rng(0).permutation(len(X))
    terms = network_terms(net.sizes)
    proba = copy.predict_proba(X)
    assert proba.dtype == np.float64
    assert_values_agree(copy.predict_proba(X[order]), proba[order], "float64", terms)
    assert_values_agree(proba, net.predict_proba(X), "float32", terms)
    assert_labels_agree(copy.predict(X), net.predict(X), proba, "float32", terms)
