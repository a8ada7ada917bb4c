"""Regression networks (identity outputs, the squared error) and sample weights, on every backend.

The kernel backends are checked against NumPy as ``test_training_backends.py`` checks
classification (same seed, ``shuffle="host"``; float64 to rtol 1e-9, float32 loss to
rtol 1e-3 and predictions to 1e-3 of the targets' spread).
"""

import numpy as np
import pytest

import gpunn
from gpunn.compute.backend import BackendError, get_backend
from gpunn.errors import DataError
from gpunn.training.callbacks import EarlyStopping, ModelCheckpoint


def smooth(n=600, seed=0, scale=1.0, offset=0.0):
    """The issue's smooth three-feature target, sin a + b^2/2 - c, optionally on a raw scale."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 3))
    y = (np.sin(X[:, 0]) + X[:, 1] ** 2 / 2 - X[:, 2]) * scale + offset
    return X[:480], y[:480], X[480:], y[480:]


def regressor(backend="numpy", dtype="float64", outputs=1, **kwargs):
    return gpunn.Network([3, 24, outputs], activation="tanh", output_activation="identity", backend=backend,
                         dtype=dtype, seed=4, **kwargs)


def _train(backend, dtype, epochs=4, weights=None, outputs=1, **fit_options):
    X, y, X_test, y_test = smooth()
    if outputs == 2:
        y, y_test = np.stack([y, -2 * y + 1], axis=1), np.stack([y_test, -2 * y_test + 1], axis=1)
    net = regressor(backend, dtype, outputs)
    history = net.fit(X, y, epochs=epochs, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.5, shuffle="host",
                      validation_data=(X_test, y_test), sample_weight=weights, **fit_options)
    return net, history.history


def _compare(reference, other, dtype):
    (ref_net, ref_history), (net, history) = reference, other
    _, _, X_test, _ = smooth()
    if dtype == "float64":
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-9)
        for a, b in zip(net.get_weights(), ref_net.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-3)
        np.testing.assert_allclose(net.predict(X_test), ref_net.predict(X_test), atol=1e-3 * 3)
    assert "accuracy" not in history and set(history) >= {"loss", "val_loss", "val_mse", "val_mae", "val_r2"}


def test_raw_scale_targets_train_as_well_as_scaled_ones():
    """Targets x 1000 + 5000 learn to the same R^2: the network trains on standardised targets."""
    scores = []
    for scale, offset in ((1.0, 0.0), (1000.0, 5000.0)):
        X, y, X_test, y_test = smooth(scale=scale, offset=offset)
        net = regressor()
        net.fit(X, y, epochs=60, batch_size=16, optimizer="adam", lr=3e-3)
        result = net.evaluate(X_test, y_test)
        assert set(result) == {"loss", "mse", "mae", "r2"}
        scores.append(result["r2"])
        predicted = net.predict(X_test)
        assert predicted.shape == y_test.shape and predicted.dtype == np.float64
        np.testing.assert_allclose(result["mse"], np.mean((predicted - y_test) ** 2), rtol=1e-12)
        np.testing.assert_allclose(result["mae"], np.mean(np.abs(predicted - y_test)), rtol=1e-12)
    assert min(scores) > 0.97
    assert scores[0] == pytest.approx(scores[1], abs=1e-3)


def test_metrics_are_scikit_learns():
    metrics = pytest.importorskip("sklearn.metrics")
    X, y, X_test, y_test = smooth()
    Y, Y_test = np.stack([y, 3 * y ** 2], 1), np.stack([y_test, 3 * y_test ** 2], 1)
    net = regressor(outputs=2)
    net.fit(X, Y, epochs=20, batch_size=16, optimizer="adam", lr=3e-3)
    result, predicted = net.evaluate(X_test, Y_test), net.predict(X_test)
    assert predicted.shape == (120, 2)
    assert result["r2"] == pytest.approx(metrics.r2_score(Y_test, predicted), rel=1e-12)
    assert result["mse"] == pytest.approx(metrics.mean_squared_error(Y_test, predicted), rel=1e-12)
    assert result["mae"] == pytest.approx(metrics.mean_absolute_error(Y_test, predicted), rel=1e-12)


@pytest.mark.parametrize("dense", ["fused", "cublas"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_kernels_train_regression_like_numpy(dtype, dense):
    emulated = _train("emulated", dtype, dense=dense)
    _compare(_train("numpy", dtype), emulated, dtype)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_weighted_training_on_emulated_kernels_is_numpys(task):
    """Sample weights on the kernel backends: the same weighted losses and weights as NumPy."""
    weights = np.random.default_rng(1).uniform(0, 3, 480)
    if task == "regression":
        runs = [_train(backend, "float64", weights=weights, outputs=2) for backend in ("numpy", "emulated")]
        _compare(*runs, "float64")
        return
    X, y, _, _ = smooth()
    labels = (y > np.median(y)).astype(int) + (X[:, 0] > 0)
    runs = []
    for backend in ("numpy", "emulated"):
        net = gpunn.Network([3, 12, 3], activation="relu", output_activation="softmax", backend=backend,
                            dtype="float64", seed=2)
        runs.append((net, net.fit(X, labels, epochs=3, batch_size=16, optimizer="adam", lr=1e-2, shuffle="host",
                                  sample_weight=weights).history))
    np.testing.assert_allclose(runs[1][1]["loss"], runs[0][1]["loss"], rtol=1e-9)
    for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "emulated"])
def test_a_weight_of_two_is_a_duplicated_sample(backend):
    """Full-batch gradient descent: weight 2 on some samples equals training on them twice.

    The targets' standardisation is fitted with the weights too, so the two runs see
    the same targets, the same loss and the same gradients (to float64 rounding).
    """
    X, y, _, _ = smooth()
    X, y = X[:60], y[:60]
    weights = np.where(np.arange(60) % 3 == 0, 2.0, 1.0)
    twice = np.arange(60)[weights == 2]
    runs = []
    for data, w in (((X, y), weights), ((np.concatenate([X, X[twice]]), np.concatenate([y, y[twice]])), None)):
        net = regressor(backend)
        history = net.fit(*data, epochs=5, batch_size=len(data[0]), optimizer="sgd", lr=0.1, sample_weight=w,
                          shuffle=False)
        runs.append((net, history.history["loss"]))
    (weighted, weighted_loss), (duplicated, duplicated_loss) = runs
    np.testing.assert_allclose(weighted.target_scaling.mean, duplicated.target_scaling.mean, rtol=1e-12)
    np.testing.assert_allclose(weighted_loss, duplicated_loss, rtol=1e-9)
    for a, b in zip(weighted.get_weights(), duplicated.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_sample_weight_is_checked():
    X, y, _, _ = smooth()
    with pytest.raises(DataError, match="479 weights"):
        regressor().fit(X, y, epochs=1, sample_weight=np.ones(479))
    with pytest.raises(DataError, match="non-negative"):
        regressor().fit(X, y, epochs=1, sample_weight=-np.ones(480))
    with pytest.raises(DataError, match="non-zero weight"):
        regressor().fit(X, y, epochs=1, sample_weight=np.zeros(480))


def test_identity_outputs_take_the_quadratic_loss_only():
    with pytest.raises(ValueError, match="identity output layer .* quadratic"):
        gpunn.Network([3, 4, 1], output_activation="identity", loss="cross_entropy")
    with pytest.raises(ValueError, match="no classes"):
        gpunn.Network([3, 4, 2], output_activation="identity", classes=[0, 1])
    net = gpunn.Network([3, 4, 1], output_activation="identity")
    assert net.loss == "quadratic" and net.task == "regression"
    assert gpunn.Network([3, 4, 2]).task == "classification"


def test_bad_targets_are_refused_in_one_line():
    X, y, _, _ = smooth()
    with pytest.raises(DataError, match="real numbers"):
        regressor().fit(X, np.array(["a"] * 480), epochs=1)
    with pytest.raises(DataError, match="NaN"):
        regressor().fit(X, np.where(np.arange(480) == 3, np.nan, y), epochs=1)
    with pytest.raises(DataError, match="2 target columns .* 1 output units"):
        regressor().fit(X, np.stack([y, y], 1), epochs=1)
    net = regressor()
    with pytest.raises(DataError):
        net.fit(X, y[:-1], epochs=1)
    assert net.target_scaling is None  # a failed first fit fits nothing


def test_history_callbacks_and_model_file(tmp_path):
    X, y, X_test, y_test = smooth(scale=50.0)
    net = regressor()
    stop = EarlyStopping(patience=2)
    checkpoint = ModelCheckpoint(tmp_path / "best.npz", monitor="val_r2", save_best_only=True)
    history = net.fit(X, y, epochs=200, batch_size=16, optimizer="adam", lr=0.05,
                      validation_data=(X_test, y_test), callbacks=[stop, checkpoint])
    assert len(history.epoch) < 200 and not history.warnings  # early stopping ended it; nothing diagnosed
    best = gpunn.load(tmp_path / "best.npz")
    assert best.task == "regression" and best.evaluate(X_test, y_test)["r2"] == pytest.approx(
        max(history.history["val_r2"]), abs=1e-9)
    net.save(tmp_path / "last.npz")
    back = gpunn.load(tmp_path / "last.npz")
    np.testing.assert_array_equal(back.predict(X_test), net.predict(X_test))
    more = back.fit(X, y, epochs=1, batch_size=16, optimizer="adam", lr=0.05, validation_data=(X_test, y_test))
    assert len(more.epoch) == len(history.epoch) + 1


def test_a_stuck_regression_is_diagnosed_and_a_learning_one_is_not():
    X, y, _, _ = smooth()
    with pytest.warns(gpunn.training.loop.TrainingWarning, match="mean target"):
        dead = gpunn.Network([3, 8, 1], activation="relu", output_activation="identity", seed=0)
        dead.set_weights([np.full((3, 8), -5.0), np.full(8, -50.0), np.zeros((8, 1)), np.zeros(1)])
        dead.fit(X, y, epochs=2, batch_size=16, lr=0.01)
    net = regressor()
    history = net.fit(X, y, epochs=2, batch_size=16, optimizer="adam", lr=1e-2)
    assert not history.warnings


def test_onnx_prediction_agrees_with_predict(tmp_path):
    """ONNX Runtime's prediction against gpunn's by the rounding rule (tests/rounding.py): the forward pass,
    the feature scaling (two operations) and the standardisation undone (two more), times the targets' size."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra")
    from rounding import assert_values_agree, network_terms

    X, y, X_test, y_test = smooth(scale=100.0, offset=7.0)
    for dtype, outputs in (("float32", 1), ("float64", 2)):
        targets = y if outputs == 1 else np.stack([y, y ** 2], 1)
        net = regressor(dtype=dtype, outputs=outputs, scale="standard")
        net.fit(X, targets, epochs=3, batch_size=16, optimizer="adam", lr=1e-2)
        net.to_onnx(tmp_path / "r.onnx")
        session = onnxruntime.InferenceSession(str(tmp_path / "r.onnx"))
        assert [o.name for o in session.get_outputs()] == ["prediction"]
        (got,) = session.run(None, {"input": X_test.astype(dtype)})
        want = net.predict(X_test)
        assert got.shape == want.shape
        assert_values_agree(got, want, dtype, network_terms(net.sizes) + 4, scale=float(np.abs(targets).max()),
                            what="ONNX Runtime's predictions")


def test_onnx_multilabel_labels_are_the_indicator_rows(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra")
    from rounding import assert_values_agree, network_terms, tolerance

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    Y = (X[:, :3] > 0).astype(int)
    net = gpunn.Network([4, 12, 3], activation="relu", loss="cross_entropy", multilabel=True, seed=1)
    net.fit(X, Y, epochs=5, batch_size=20, optimizer="adam", lr=1e-2)
    net.to_onnx(tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    probabilities, labels = session.run(None, {"input": X.astype(np.float32)})
    ours = net.predict_proba(X)
    terms = network_terms(net.sizes)
    assert_values_agree(probabilities, ours, net.dtype, terms, what="ONNX Runtime's probabilities")
    clear = np.abs(ours - 0.5) > 2 * tolerance(net.dtype, terms)  # labels compared where 0.5 is not in doubt
    assert labels.shape == (300, 3) and clear.mean() > 0.99
    np.testing.assert_array_equal(labels[clear], net.predict(X)[clear])


def _cupy_or_skip():
    try:
        return get_backend("cupy")
    except BackendError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")


@pytest.mark.gpu
@pytest.mark.parametrize("dense,cuda_graph", [("fused", True), ("fused", False), ("cublas", True)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_trains_regression_like_numpy(dtype, dense, cuda_graph):
    _cupy_or_skip()
    weights = np.random.default_rng(1).uniform(0, 3, 480)
    gpu = _train("cupy", dtype, cuda_graph=cuda_graph, dense=dense, weights=weights, outputs=2)
    _compare(_train("numpy", dtype, weights=weights, outputs=2), gpu, dtype)


def _rewritten(good, path, **fields):
    """``good`` copied to ``path`` with metadata fields replaced (the arrays kept)."""
    import json

    with np.load(good, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents["metadata"].tobytes())
    meta.update(fields)
    contents["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **contents)
    return path


@pytest.mark.parametrize("fields, fragment", [
    ({"classes": [0]}, "regression network"),
    ({"targets": {"mean": [0.0, 1.0], "std": [1.0, 1.0], "ndim": 2}}, "2 means"),
    ({"targets": {"mean": [0.0], "std": [0.0], "ndim": 1}}, r"targets.std.0 must be a finite number in \(0, inf\)"),
    ({"targets": None}, "keeps its targets' standardisation"),
    ({"history": {"epoch": [0], "history": {"loss": [0.1]}, "params": {}}}, "seconds"),
    ({"output_activation": "sigmoid"}, "standardise a regression network's targets"),
    ({"multilabel": True}, "multilabel"),
])
def test_inconsistent_regression_files_are_refused(tmp_path, fields, fragment):
    X, y, _, _ = smooth()
    net = regressor()
    net.fit(X, y, epochs=1, batch_size=32)
    net.save(tmp_path / "good.npz")
    bad = _rewritten(tmp_path / "good.npz", tmp_path / "bad.npz", **fields)
    with pytest.raises(gpunn.errors.ModelFileError, match=fragment):
        gpunn.load(bad)


def test_multilabel_networks_train_alike_on_numpy_and_emulated_and_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    Y = (X[:, :3] > 0).astype(int)
    runs = []
    for backend in ("numpy", "emulated"):
        net = gpunn.Network([4, 12, 3], activation="relu", loss="cross_entropy", multilabel=True,
                            backend=backend, dtype="float64", seed=1)
        runs.append((net, net.fit(X, Y, epochs=5, batch_size=20, optimizer="adam", lr=1e-2, shuffle="host").history))
    np.testing.assert_allclose(runs[1][1]["loss"], runs[0][1]["loss"], rtol=1e-9)
    assert runs[0][1]["accuracy"] == runs[1][1]["accuracy"]  # subset accuracy: the same outputs, well apart
    net = runs[0][0]
    assert net.predict(X).shape == (200, 3) and set(np.unique(net.predict(X))) <= {0, 1}
    net.save(tmp_path / "m.npz")
    back = gpunn.load(tmp_path / "m.npz")
    assert back.multilabel and np.array_equal(back.predict(X), net.predict(X))
    with pytest.raises(ValueError, match="multilabel network has sigmoid outputs"):
        gpunn.Network([4, 3], output_activation="softmax", multilabel=True)


def test_sparse_input_trains_and_predicts_as_dense():
    scipy_sparse = pytest.importorskip("scipy.sparse", reason="SciPy is an optional extra (with scikit-learn)")
    rng = np.random.default_rng(0)
    X = rng.random((300, 5))
    X[X < 0.6] = 0
    y = X @ np.arange(1.0, 6.0)
    nets = []
    for features in (scipy_sparse.csr_matrix(X), X):
        net = gpunn.Network([5, 8, 1], output_activation="identity", dtype="float64", seed=1)
        net.fit(features, y, epochs=2, batch_size=16, validation_data=(features[:30], y[:30]))
        nets.append(net)
    np.testing.assert_array_equal(nets[0].params, nets[1].params)
    np.testing.assert_array_equal(nets[0].predict(scipy_sparse.csc_matrix(X)), nets[1].predict(X))
