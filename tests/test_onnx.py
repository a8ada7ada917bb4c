"""ONNX export: the graph is checked by onnx.checker and run by ONNX Runtime against gpunn itself.

Every hidden activation x output kind, in float32 and float64, with feature scaling in
the graph.  ONNX Runtime adds its products in its own order and has its own sigmoid, tanh
and exp, so it is compared by the rule of tests/rounding.py: probabilities within
``network_terms(sizes) + 2`` (the scaling's subtraction and product) times the dtype's eps
of ``Network.predict_proba``; labels equal ``Network.predict`` wherever the winning class
beats the runner-up by more than that, with near-ties counted and bounded.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

if not os.environ.get("CI"):  # under CI a missing onnx or onnxruntime fails the collection instead
    pytest.importorskip("onnxruntime", reason='onnx is not installed (pip install "gpunn[onnx]"); CI runs these')

import onnx
import onnxruntime

import gpunn
from gpunn.cli.main import cli
from gpunn.saving.onnx_export import OPSET
from rounding import assert_labels_agree, assert_values_agree, network_terms

STANDARD_OPS = {"Sub", "Mul", "Gemm", "Sigmoid", "Tanh", "Relu", "Softmax", "ArgMax", "Gather"}


@pytest.fixture(scope="module")
def digits():
    return gpunn.load_dataset("digits")


def trained(digits, n=300, epochs=2, **network):
    net = gpunn.Network([64, 24, 16, 10], backend="numpy", seed=3, **network)
    optimizer = "adam" if network.get("output_activation") == "softmax" else "sgd"
    # SGD's default step (the tutorial's 3.0) drives relu's unbounded units into saturating two sigmoid outputs
    # at once for 2% of the digits: labels decided by rounding, near-ties the rule does not let pass
    lr = 1.0 if optimizer == "sgd" and network.get("activation") == "relu" else None
    net.fit(digits.X_train[:n], digits.y_train[:n], epochs=epochs, optimizer=optimizer, lr=lr)
    return net


def run_onnx(path, X):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["probabilities", "label"]
    return session.run(None, {"input": X})


def assert_agrees(net, X, probabilities, labels, predict_proba=None, predict=None):
    """ONNX Runtime's outputs against gpunn's by the rounding rule (tests/rounding.py): two computations."""
    ours = (predict_proba or net.predict_proba)(X)
    terms = network_terms(net.sizes) + 2  # the graph's scaling: one subtraction, one product
    assert_values_agree(probabilities, ours, net.dtype, terms, what="ONNX Runtime's probabilities")
    assert_labels_agree(labels, (predict or net.predict)(X), ours, net.dtype, terms, what="ONNX Runtime's labels")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output_activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_onnx_runtime_agrees_with_gpunn(digits, tmp_path, activation, output_activation, dtype):
    net = trained(digits, activation=activation, output_activation=output_activation, dtype=dtype, scale="standard")
    path = tmp_path / "model.onnx"
    net.to_onnx(path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET
    ops = [node.op_type for node in model.graph.node]
    assert set(ops) <= STANDARD_OPS and ops[:2] == ["Sub", "Mul"]  # the scaling, then the layers
    assert ops.count("Gemm") == 3 and ops[-1] == "ArgMax"  # classes 0..9: the index is the label
    assert ("Softmax" in ops) == (output_activation == "softmax")
    X = digits.X_test.astype(dtype)
    probabilities, labels = run_onnx(path, X)
    assert probabilities.dtype == np.dtype(dtype) and labels.dtype == np.int64
    assert_agrees(net, X, probabilities, labels)


def test_the_batch_axis_is_dynamic(digits, tmp_path):
    net = trained(digits, activation="relu", output_activation="softmax")
    net.to_onnx(tmp_path / "m.onnx")
    for n in (1, 7, 449):
        probabilities, labels = run_onnx(tmp_path / "m.onnx", digits.X_test[:n].astype(np.float32))
        assert probabilities.shape == (n, 10) and labels.shape == (n,)


@pytest.mark.parametrize("classes", [["a", "b", "c"], [2, 7, 11]], ids=["strings", "integers"])
def test_labels_are_the_networks_classes(tmp_path, classes):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4)).astype(np.float32)
    y = np.array(classes)[np.arange(90) % 3]
    X[np.arange(90), np.arange(90) % 3] += 3  # learnable
    net = gpunn.Network([4, 8, 3], activation="tanh", output_activation="softmax", backend="numpy")
    net.fit(X, y, epochs=5, optimizer="adam", lr=0.05)
    net.to_onnx(tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    assert [node.op_type for node in model.graph.node][-2:] == ["ArgMax", "Gather"]
    assert [node.op_type for node in model.graph.node][0] == "Gemm"  # no scaling asked for: none in the graph
    probabilities, labels = run_onnx(tmp_path / "m.onnx", X)
    assert_agrees(net, X, probabilities, labels)
    assert set(labels.tolist()) == set(classes)


def test_labels_that_onnx_cannot_hold_are_refused(digits, tmp_path):
    net = trained(digits)
    with pytest.raises(ValueError, match="integers or strings"):
        net.to_onnx(tmp_path / "m.onnx", classes=np.linspace(0.5, 9.5, 10))
    with pytest.raises(ValueError, match="3 classes for a network with 10 output units"):
        net.to_onnx(tmp_path / "m.onnx", classes=["a", "b", "c"])
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_scikit_learn_estimator_exports_its_classes(digits, tmp_path):
    from gpunn.sklearn import MLPClassifier

    names = np.array(list("abcdefghij"))
    est = MLPClassifier((16,), max_iter=3, scale="standard", backend="numpy", random_state=0)
    est.fit(digits.X_train[:300], names[digits.y_train[:300]])
    est.to_onnx(tmp_path / "m.onnx")
    X = digits.X_test.astype(np.float32)
    probabilities, labels = run_onnx(tmp_path / "m.onnx", X)
    assert_agrees(est.network_, X, probabilities, labels, est.predict_proba, est.predict)


# -- gpunn export ------------------------------------------------------------------------------------------
def export(*args):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


@pytest.fixture(scope="module")
def model_file(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    trained(digits, activation="tanh", output_activation="softmax", scale="minmax").save(path)
    return path


def test_export_on_the_command_line(digits, model_file, tmp_path):
    out = tmp_path / "model.onnx"
    result = export(model_file, out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    net = gpunn.load(model_file)
    X = digits.X_test.astype(np.float32)
    probabilities, labels = run_onnx(out, X)
    assert_agrees(net, X, probabilities, labels)
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # written atomically: no temporary left


BAD_MODELS = {
    "truncated": lambda good, p: p.write_bytes(good.read_bytes()[:300]),
    "random bytes": lambda good, p: p.write_bytes(np.random.default_rng(1).bytes(999)),
    "foreign npz": lambda good, p: np.savez(p, x=np.ones(2)),
    "pickle": lambda good, p: p.write_bytes(b"\x80\x04\x95" + bytes(20)),
    "missing": lambda good, p: None,
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_a_bad_model_file_is_refused_exactly_as_evaluate_refuses_it(model_file, tmp_path, case):
    path = tmp_path / "model.npz"
    BAD_MODELS[case](model_file, path)
    refused = export(path, tmp_path / "out.onnx")
    evaluated = CliRunner().invoke(cli, ["evaluate", str(path)])
    assert refused.exit_code == evaluated.exit_code == 1
    assert refused.output == evaluated.output and refused.output.startswith("Error:")
    assert len(refused.output.splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("out, fragment", [
    ("model.npz", "give the ONNX file a .onnx name"),  # arguments swapped: the model is not overwritten
    ("no_such_folder/m.onnx", "there is no folder"),
])
def test_the_output_name_is_checked_before_the_model_is_read(model_file, tmp_path, out, fragment):
    result = export(tmp_path / "missing.npz", tmp_path / out)  # the model is never read: no "no such model"
    assert result.exit_code == 1 and result.output.startswith("Error:") and fragment in result.output, result.output
    before = model_file.read_bytes()
    assert export(model_file, model_file).exit_code == 1 and model_file.read_bytes() == before


def test_export_without_onnx_says_how_to_install(model_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = export(model_file, tmp_path / "m.onnx")
    assert result.exit_code == 1 and 'pip install "gpunn[onnx]"' in result.output
    assert len(result.output.splitlines()) == 1


def test_gpunn_and_its_command_line_do_not_import_onnx():
    code = "import sys, gpunn, gpunn.cli.main; print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
