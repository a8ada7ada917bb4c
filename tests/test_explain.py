"""gpunn explain: its numbers against the mathematics recomputed with plain NumPy, its text, its errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.cli.main import cli
from gpunn.explain.step import explain_step, parameter_name
from rounding import assert_labels_agree, network_terms

WIDTH = 100
COMBINATIONS = [(activation, output, loss) for activation in ("sigmoid", "tanh", "relu")
                for output, loss in (("sigmoid", "quadratic"), ("sigmoid", "cross_entropy"),
                                     ("softmax", "cross_entropy"))]


def run(*args):
    return CliRunner().invoke(cli, ["explain", *map(str, args)])


def explain_json(*args) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- plain NumPy, written from the tutorial's formulas ------------------------------------------
def activate(kind, v):
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-v))
    if kind == "tanh":
        return np.tanh(v)
    if kind == "relu":
        return np.maximum(v, 0)
    e = np.exp(v - v.max())
    return e / e.sum()


def slope(kind, y):
    return {"sigmoid": y * (1 - y), "tanh": 1 - y**2, "relu": (y > 0).astype(float)}[kind]


def error(output, loss, y, t):
    if output == "softmax":
        return -np.sum(t * np.log(y))
    if loss == "quadratic":
        return np.sum(0.5 * (t - y) ** 2)
    return -np.sum(t * np.log(y) + (1 - t) * np.log(1 - y))


def forward(Ws, bs, x, activation, output):
    ys, vs = [], []
    y = x
    for layer, (W, b) in enumerate(zip(Ws, bs)):
        v = y @ W + b
        y = activate(output if layer == len(Ws) - 1 else activation, v)
        vs.append(v)
        ys.append(y)
    return vs, ys


def assert_same(got, want):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("activation,output,loss", COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
@pytest.mark.parametrize("layers", ["2,2,2", "2,3,3,2"])
def test_json_is_the_mathematics(activation, output, loss, layers):
    step = explain_json("--layers", layers, "--activation", activation, "--output-activation", output,
                        "--loss", loss, "--seed", 3)
    x, t, lr = np.array(step["x"]), np.array(step["t"]), step["lr"]
    Ws = [np.array(layer["W"]) for layer in step["layers"]]
    bs = [np.array(layer["b"]) for layer in step["layers"]]
    sizes = [int(n) for n in layers.split(",")]
    assert [W.shape for W in Ws] == list(zip(sizes[:-1], sizes[1:]))  # inputs x outputs
    vs, ys = forward(Ws, bs, x, activation, output)
    for layer, v, y in zip(step["layers"], vs, ys):
        assert_same(layer["v"], v)
        assert_same(layer["y"], y)
    # the command and this forward pass add up in their own orders: the rounding rule (one sample, no near-tie)
    assert_labels_agree([step["answer"]], [int(np.argmax(ys[-1]))], np.reshape(ys[-1], (1, -1)), "float64",
                        network_terms(sizes), other_scores=np.reshape(step["layers"][-1]["y"], (1, -1)))
    assert_same(step["error"], error(output, loss, ys[-1], t))
    assert_same(sum(step["errors"]), error(output, loss, ys[-1], t))

    # backprop by the chain rule, from the output layer back
    y_out = ys[-1]
    deltas = [(y_out - t) * y_out * (1 - y_out) if loss == "quadratic" and output == "sigmoid" else y_out - t]
    for layer in range(len(Ws) - 2, -1, -1):
        deltas.insert(0, (Ws[layer + 1] @ deltas[0]) * slope(activation, ys[layer]))
    inputs = [x, *ys[:-1]]
    for layer, delta in enumerate(deltas):
        assert_same(step["deltas"][layer], delta)
        assert_same(step["grad_W"][layer], np.outer(inputs[layer], delta))
        assert_same(step["grad_b"][layer], delta)
        assert_same(step["W_next"][layer], Ws[layer] - lr * np.outer(inputs[layer], delta))
        assert_same(step["b_next"][layer], bs[layer] - lr * delta)

    _, ys_after = forward([np.array(W) for W in step["W_next"]], [np.array(b) for b in step["b_next"]], x,
                          activation, output)
    assert_same(step["error_after"], error(output, loss, ys_after[-1], t))
    assert step["error_after"] < step["error"]
    assert step["fd_max_rel_err"] <= 1e-6
    assert step["fd_checked"] == step["n_params"] == sum(W.size + b.size for W, b in zip(Ws, bs))


def test_the_tutorial_defaults():
    step = explain_json()
    assert step["x"] == [0.05, 0.1] and step["t"] == [0.01, 0.99] and step["lr"] == 0.5
    assert (step["sizes"], step["activation"], step["loss"]) == ([2, 2, 2], "sigmoid", "quadratic")


def test_targets_as_class_index_or_vector():
    assert explain_json("--target", 0)["t"] == [1.0, 0.0]
    assert explain_json("--target", "0.2,0.7")["t"] == [0.2, 0.7]
    assert explain_json("--layers", "2,2,1", "--target", "0.9")["t"] == [0.9]
    assert explain_json("--layers", "2,2,1", "--target", "1")["t"] == [1.0]  # one output: a value, not a class
    assert explain_json("--output-activation", "softmax")["t"] == [0.0, 1.0]


def test_text_fits_100_columns_and_shows_every_neuron():
    result = run()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= WIDTH
    step = explain_json()
    text = result.output
    for names, layer in zip((["h1", "h2"], ["o0", "o1"]), step["layers"]):
        for neuron, v, y in zip(names, layer["v"], layer["y"]):
            (line,) = [line for line in lines if line.strip().startswith(neuron + " ") and " v = " in line]
            assert f"= {v:.4g} " in line and line.endswith(f"= {y:.4g}")
            if neuron.startswith("h"):
                assert line.split(" v = ")[1].startswith("0.05·")  # x1·w1 + x2·w2 + b, written out
    for section in ("1. Forward pass", "2. Error", "3. Backward pass", "4. Gradients", "5. Update", "6. Check"):
        assert section in text
    (total,) = [line for line in lines if line.strip().startswith("E = ")]
    assert total.endswith(f"= {step['error']:.4g}")
    assert "the network says 1" in text and "went downhill" in text and "backprop agrees" in text
    assert f"{step['fd_checked']} parameters" in text


def test_text_says_when_the_step_went_uphill():
    result = run("--target", "0.5,0.5", "--lr", 100)
    assert result.exit_code == 0
    assert "UP by" in result.output and "too large a step" in result.output
    assert max(map(len, result.output.splitlines())) <= WIDTH


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "digits.npz"
    result = CliRunner().invoke(cli, ["train", "--layers", "64,16,10", "--epochs", "2", "--batch-size", "20",
                                      "--backend", "numpy", "--quiet", "--output", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_model_explains_one_real_sample(digits_model):
    data = gpunn.load_dataset("digits")
    net = gpunn.load(digits_model, backend="numpy")
    step = explain_json("--model", digits_model, "--sample", 5)
    assert step["label"] == int(data.y_test[5]) and step["sample"] == 5
    assert_same(step["x"], data.X_test[5])
    assert step["t"] == np.eye(10)[data.y_test[5]].tolist()
    Ws = [np.array(layer["W"]) for layer in step["layers"]]
    np.testing.assert_array_equal(Ws[0], net.get_weights()[0].astype(np.float64))
    _, ys = forward(Ws, [np.array(layer["b"]) for layer in step["layers"]], data.X_test[5], "sigmoid", "sigmoid")
    assert_same(step["layers"][-1]["y"], ys[-1])
    # explain computes in float64, predict in the network's float32: the rounding rule (one sample, no near-tie)
    assert_labels_agree([step["answer"]], net.predict(data.X_test[5:6]), net.predict_proba(data.X_test[5:6]),
                        net.dtype, network_terms(net.sizes))
    assert step["fd_max_rel_err"] <= 1e-6

    result = run("--model", digits_model, "--sample", 5)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= WIDTH
    assert "as a 8x8 picture" in result.output and "64 values x1 ... x64" in result.output
    assert f"the true label is {step['label']}" in result.output
    assert "more (sum" in result.output  # 64 inputs per neuron: summarised, not 64 terms
    assert sum(line.lstrip().startswith(f"h{j} ") for line in lines for j in range(1, 17)) >= 16


def test_finite_differences_catch_a_wrong_gradient(monkeypatch):
    net = gpunn.Network([2, 3, 2], dtype="float64", backend="numpy")
    backward = gpunn.Network.backward

    def off_by_a_bit(self, ws, *args, **kwargs):
        backward(self, ws, *args, **kwargs)
        self.grads[4] *= 1.001

    monkeypatch.setattr(gpunn.Network, "backward", off_by_a_bit)
    step = explain_step(net, [0.05, 0.1], [0.01, 0.99])
    assert 5e-4 < step.fd_max_rel_err < 2e-3 and step.fd_worst == 4


def test_parameter_names():
    sizes = (2, 3, 2)
    assert parameter_name(sizes, 0) == "w(x1→h1)" and parameter_name(sizes, 5) == "w(x2→h3)"
    assert parameter_name(sizes, 8) == "b(h3)" and parameter_name(sizes, 9) == "w(h1→o0)"
    assert parameter_name(sizes, 16) == "b(o1)"
    assert parameter_name((2, 2, 2, 2), 6) == "w(h1.1→h2.1)"


@pytest.mark.parametrize("args,fragment", [
    (("--loss", "cross_entropy", "--target", "0.3,0.7"), "targets of 0 and 1 only"),
    (("--output-activation", "softmax", "--target", "0.5,0.5"), "a softmax network's target is one class"),
    (("--target", 5), "class 5 does not exist"),
    (("--input", "1,2,3"), "the input has 3 values but the network has 2 inputs"),
    (("--target", "0.5,1.5"), "between 0 and 1"),
    (("--layers", "2,2,1", "--output-activation", "softmax"), "a softmax layer of one output"),
])
def test_bad_samples_are_one_line_errors(args, fragment):
    result = run(*args)
    assert result.exit_code == 1 and result.output.startswith("Error:") and fragment in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_model_options_do_not_mix(digits_model):
    result = run("--model", digits_model, "--layers", "2,2,2", "--seed", 2)
    assert result.exit_code == 2 and "--layers, --seed describe a new network" in result.output
    assert run("--sample", 3).exit_code == 2
    result = run("--model", digits_model, "--sample", 10_000)
    assert result.exit_code == 1 and "beyond the 449 test samples" in result.output
    assert run("--input", "0.1,x").exit_code == 2


def test_model_with_scaled_inputs_and_its_own_classes(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) * [100, 5, 1000] + [500, 0, 2000]  # far from [0, 1]: standardised
    y = np.where(X[:, 0] / 100 + X[:, 2] / 1000 > 7, 7, 3)  # classes 3 and 7
    np.savez(tmp_path / "data.npz", X=X, y=y)
    model = tmp_path / "model.npz"
    result = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "data.npz"), "--layers", "3,4,2",
                                      "--epochs", "5", "--backend", "numpy", "--quiet", "--output", str(model)])
    assert result.exit_code == 0, result.output
    net = gpunn.load(model)
    data = gpunn.load_dataset(str(tmp_path / "data.npz"))
    step = explain_json("--model", model, "--sample", 2)
    assert_same(step["x"], net.scaler.transform(data.X_test[2:3])[0])  # what the input layer sees
    assert step["classes"] == [3, 7] and step["label"] == [3, 7].index(data.y_test[2])
    text = run("--model", model, "--sample", 2).output
    assert "scaled (standard)" in text and f"the true label is {data.y_test[2]}" in text
    said = step["classes"][step["answer"]]
    assert f"the network says {said}" in text
    # explain computes in float64, predict in the network's float32: the rounding rule (the scaling: 2 more terms)
    assert_labels_agree([said], net.predict(data.X_test[2:3]), net.predict_proba(data.X_test[2:3]), net.dtype,
                        network_terms(net.sizes) + 2)
