"""The networks people train today: activations, softmax, Adam/AdamW/Nesterov, stuck runs, model files.

The optimizers are checked step by step against PyTorch's own (``torch.optim``) in
float64; the kernel backend (``emulated``: the CUDA sources compiled for the CPU) must
train every kind of network like NumPy; model files keep the optimizer's state so that
resuming is exact; files written before the activations existed still load.
"""

import json
import warnings

import numpy as np
import pytest

import gpunn
from gpunn.training.optim import lr_scaling_rates
from gpunn.training.loop import TrainingWarning
from rounding import assert_trainings_agree

KINDS = {
    "sigmoid-sgd": dict(network={}, fit=dict(lr=2.0, momentum=0.5)),
    "tanh-nesterov": dict(network=dict(activation="tanh"), fit=dict(lr=0.5, momentum=0.9, nesterov=True)),
    "relu-softmax-adam": dict(network=dict(activation="relu", output_activation="softmax"),
                              fit=dict(optimizer="adam", lr=3e-3, weight_decay=1e-4)),
    "relu-sigmoid-ce-adamw": dict(network=dict(activation="relu", loss="cross_entropy"),
                                  fit=dict(optimizer="adamw", lr=3e-3)),
}


@pytest.fixture(scope="module")
def digits():
    return gpunn.load_dataset("digits")


def train(digits, kind, backend="numpy", dtype="float64", epochs=3, net=None, n=300):
    spec = KINDS[kind]
    net = net or gpunn.Network([64, 16, 10], backend=backend, dtype=dtype, seed=5, **spec["network"])
    history = net.fit(digits.X_train[:n], digits.y_train[:n], epochs=epochs, batch_size=10, shuffle="host",
                      validation_data=(digits.X_test, digits.y_test), **spec["fit"])
    return net, history


# -- every kind trains, and trains alike on the kernel backend ------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_learns_the_digits(digits, kind):
    _, history = train(digits, kind, dtype="float32", epochs=8, n=len(digits.y_train))
    assert history.history["val_accuracy"][-1] > 0.9, history.history["val_accuracy"]
    assert history.warnings == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_emulated_kernels_train_every_kind_like_numpy(digits, kind, dtype):
    reference, ref_history = train(digits, kind, "numpy", dtype)
    emulated, history = train(digits, kind, "emulated", dtype)
    assert_trains_alike(digits, emulated, history, reference, ref_history)


def assert_trains_alike(digits, net, history, reference, ref_history, epochs=3, n=300):
    """The rounding rule (tests/rounding.py) for two of :func:`train`'s runs on different backends."""
    assert_trainings_agree(net, history.history["loss"], reference, ref_history.history["loss"], digits.X_test,
                           steps=epochs * -(-n // 10), batch_size=10)


def test_softmax_outputs_are_probabilities(digits):
    net, _ = train(digits, "relu-softmax-adam", epochs=1)
    p = net.predict_proba(digits.X_test)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert (p >= 0).all()
    result = net.evaluate(digits.X_test, digits.y_test)
    # exact: evaluate counts the argmax of the same forward pass and the same softmax operations
    assert result["accuracy"] == np.mean(p.argmax(axis=1) == digits.y_test)
    assert result["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(p)), digits.y_test])), rel=1e-9)


# -- the optimizers against PyTorch's ---------------------------------------------------------------------
TORCH_CASES = {
    "sgd-nesterov": ("sgd", dict(lr=0.3, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "sgd-momentum": ("sgd", dict(lr=0.3, momentum=0.5, weight_decay=0.0)),
    "adam": ("adam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adam-l2": ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    "adamw": ("adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)),
}


@pytest.mark.parametrize("backend", ["numpy", "emulated"])
@pytest.mark.parametrize("case", TORCH_CASES)
def test_optimizer_steps_equal_pytorchs(case, backend):
    torch = pytest.importorskip("torch")  # in the test extra; skipped only outside it
    from gpunn.training.optim import make_optimizer

    name, settings = TORCH_CASES[case]
    net = gpunn.Network([7, 5, 3], backend=backend, dtype="float64", seed=2)
    ours = make_optimizer(name, net.backend, net.layout, net.dtype, dict(settings))
    param = torch.tensor(np.array(net.params), dtype=torch.float64, requires_grad=True)
    theirs = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]([param], **settings)
    rng = np.random.default_rng(0)
    m = 8
    for step in range(6):
        summed = rng.normal(scale=3.0, size=net.params.shape)  # gpunn's gradients are batch sums
        ours.step(net.params, summed.copy(), m)
        param.grad = torch.tensor(summed / m)
        theirs.step()
        np.testing.assert_allclose(net.params, param.detach().numpy(), rtol=1e-10, atol=1e-13,
                                   err_msg=f"step {step + 1}")


# -- step sizes that survive width --------------------------------------------------------------------
def test_lr_scaling_rates():
    assert lr_scaling_rates([64, 64, 10], "fan_in") == [1.0, 1.0]  # the digits: the tutorial's eta
    assert lr_scaling_rates([784, 512, 512, 10], "fan_in") == pytest.approx(
        [(64 / 784) ** 0.5, (64 / 512) ** 0.5, 64 / 512])
    assert lr_scaling_rates([784, 30, 10], "none") == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown lr scaling"):
        lr_scaling_rates([2, 2], "layerwise")


def test_fan_in_scaling_is_on_only_when_lr_is_left_out(digits):
    X, y = digits.X_train[:50], digits.y_train[:50]
    net = gpunn.Network([64, 400, 10], backend="numpy", seed=0)
    net.fit(X, y, epochs=1)
    assert net.optimizer.layer_rates == lr_scaling_rates([64, 400, 10], "fan_in")
    assert net.history.params["lr_scaling"] == "fan_in" and net.history.params["lr"] == 3.0
    net.fit(X, y, epochs=1, lr=3.0)  # an explicit lr: plain SGD, as torch.optim.SGD computes it
    assert net.optimizer.layer_rates is None and net.history.params["lr_scaling"] == "none"
    net.fit(X, y, epochs=1, lr=3.0, lr_scaling="fan_in")  # unless asked for
    assert net.optimizer.layer_rates is not None


def test_per_layer_rates_move_each_layer_by_its_own_step(digits):
    """With rates r_l, one plain SGD step moves layer l by r_l times the unscaled step."""
    X, y = digits.X_train[:10], digits.y_train[:10]
    for backend in ("numpy", "emulated"):
        plain = gpunn.Network([64, 100, 10], backend=backend, dtype="float64", seed=1)
        scaled = gpunn.Network([64, 100, 10], backend=backend, dtype="float64", seed=1)
        start = plain.get_weights()
        plain.fit(X, y, epochs=1, batch_size=10, lr=3.0, shuffle=False)
        scaled.fit(X, y, epochs=1, batch_size=10, shuffle=False)  # lr left out: fan_in rates
        rates = lr_scaling_rates([64, 100, 10], "fan_in")
        assert rates[1] < 1
        for index, (p, s, s0) in enumerate(zip(plain.get_weights(), scaled.get_weights(), start)):
            np.testing.assert_allclose(s - s0, rates[index // 2] * (p - s0), rtol=1e-9, atol=1e-14)


# -- a stuck run is never reported as a normal one --------------------------------------------------------
def test_a_collapsed_run_is_diagnosed_within_two_epochs(digits):
    net = gpunn.Network([64, 64, 10], backend="numpy", seed=0)
    with pytest.warns(TrainingWarning, match=r"stuck .* lower the learning rate .*now 50"):
        history = net.fit(digits.X_train, digits.y_train, epochs=4, lr=50.0)
    assert len(history.warnings) == 1 and "after epoch 2" in history.warnings[0]


def test_a_learning_run_has_no_warnings(digits):
    net = gpunn.Network([64, 64, 10], backend="numpy", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        history = net.fit(digits.X_train, digits.y_train, epochs=2)
    assert history.warnings == []


def test_a_nan_loss_names_the_fix():
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    net = gpunn.Network([2, 2], activation="relu", output_activation="softmax", backend="numpy", seed=0)
    net.params[0] = np.inf
    with pytest.raises(gpunn.TrainingDiverged, match="lower the learning rate"):
        net.fit(X, [0, 1], epochs=2, batch_size=2, optimizer="adam")


def test_options_that_do_not_belong_to_the_optimizer_are_refused(digits):
    net = gpunn.Network([64, 10], backend="numpy")
    with pytest.raises(ValueError, match="momentum and nesterov are SGD options"):
        net.fit(digits.X_train[:10], digits.y_train[:10], optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="Nesterov momentum needs a momentum"):
        net.fit(digits.X_train[:10], digits.y_train[:10], nesterov=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        net.fit(digits.X_train[:10], digits.y_train[:10], optimizer="rmsprop")


# -- model files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "emulated"])
@pytest.mark.parametrize("kind", ["relu-softmax-adam", "tanh-nesterov", "relu-sigmoid-ce-adamw"])
def test_resume_is_bit_identical_for_every_optimizer(digits, tmp_path, kind, backend):
    straight, _ = train(digits, kind, backend, epochs=4)
    half, _ = train(digits, kind, backend, epochs=2)
    half.save(tmp_path / "half.npz")
    loaded = gpunn.load(tmp_path / "half.npz", backend=backend)
    assert (loaded.activation, loaded.output_activation, loaded.loss) == (
        straight.activation, straight.output_activation, straight.loss)
    resumed, history = train(digits, kind, backend, epochs=2, net=loaded)
    # exact: the same steps on the same backend and code path round identically
    assert np.array_equal(resumed.params, straight.params)
    assert history.epoch == [0, 1, 2, 3]


def test_files_of_format_1_still_load_and_resume(digits, tmp_path):
    """A sigmoid network trained by SGD and saved before activations and optimizers had names."""
    net, _ = train(digits, "sigmoid-sgd", epochs=2)
    net.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays["metadata"].tobytes())
    meta["format_version"] = 1
    for key in ("activation", "output_activation"):
        del meta[key]
    meta["optimizer"] = {k: meta["optimizer"][k] for k in ("name", "lr", "momentum", "weight_decay")}
    meta["training"] = {k: meta["training"][k] for k in ("lr", "momentum", "weight_decay", "batch_size")}
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)

    old = gpunn.load(tmp_path / "old.npz", backend="numpy")
    assert (old.activation, old.output_activation, old.optimizer.name) == ("sigmoid", "sigmoid", "sgd")
    resumed, _ = train(digits, "sigmoid-sgd", epochs=1, net=old)
    straight, _ = train(digits, "sigmoid-sgd", epochs=3)
    assert np.array_equal(resumed.params, straight.params)  # exact: same steps, same backend and code path


@pytest.mark.gpu
@pytest.mark.parametrize("kind", KINDS)
def test_gpu_trains_every_kind_like_numpy(digits, kind):
    from gpunn.compute.backend import BackendError, get_backend

    try:
        get_backend("cupy")
    except BackendError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")
    reference, ref_history = train(digits, kind, "numpy", "float64")
    gpu, history = train(digits, kind, "cupy", "float64")
    assert_trains_alike(digits, gpu, history, reference, ref_history)


def test_a_diverging_weight_decay_is_named_as_the_cause(digits):
    net = gpunn.Network([64, 16, 10], backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw NumPy overflow warnings either
        with pytest.raises(gpunn.TrainingDiverged, match=r"lower the weight decay .*now 10"):
            net.fit(digits.X_train, digits.y_train, epochs=2, weight_decay=10.0)


@pytest.mark.parametrize("backend", ["numpy", "emulated"])
@pytest.mark.parametrize("kind", ["sigmoid-sgd", "relu-softmax-adam"])
def test_fit_trains_when_called_and_split_fits_equal_one_fit(digits, kind, backend):
    once, _ = train(digits, kind, backend, epochs=5)
    split, _ = train(digits, kind, backend, epochs=2)
    before = split.params.copy()
    _, history = train(digits, kind, backend, epochs=3, net=split)
    assert not np.array_equal(split.params, before), "the second fit trained"
    assert history.epoch == [0, 1, 2, 3, 4]
    assert np.array_equal(split.params, once.params)  # exact: same steps, same backend and code path
