"""``gpunn train --task regression`` and the commands that use a regression model (evaluate, predict, plot,
export, explain)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.cli.main import cli


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def smooth_csv(tmp_path_factory):
    """The issue's smooth target sin a + b^2/2 - c: 600 rows, so the default split trains on 480."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (600, 3))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2 / 2 - X[:, 2]
    path = tmp_path_factory.mktemp("data") / "smooth.csv"
    np.savetxt(path, np.column_stack([y, X]), delimiter=",", header="target,a,b,c", comments="")
    return path


@pytest.fixture(scope="module")
def trained(smooth_csv, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "r.npz"
    result = run("train", "--dataset", smooth_csv, "--task", "regression", "--output", model, "--json", "--quiet",
                 "--backend", "numpy")
    assert result.exit_code == 0, result.output
    return model, json.loads(result.output.splitlines()[-1])


def test_train_then_evaluate_scores_r2_above_0_9(trained):
    model, summary = trained
    assert summary["task"] == "regression" and summary["output_activation"] == "identity"
    assert summary["layers"][-1] == 1 and summary["classes"] is None and "test_accuracy" not in summary
    result = run("evaluate", model, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output.splitlines()[-1])
    assert scores["samples"] == 120 and set(scores) >= {"loss", "mse", "mae", "r2"}
    assert scores["r2"] >= 0.9
    assert scores["r2"] == pytest.approx(summary["test_r2"], abs=1e-9)  # the same test split, the same model
    text = run("evaluate", model)
    assert text.exit_code == 0 and "R2" in text.output


def test_predict_prints_the_models_values(trained, smooth_csv):
    model, _ = trained
    result = run("predict", model, smooth_csv, "--json")
    assert result.exit_code == 0, result.output
    values = np.array(json.loads(result.output.splitlines()[-1])["predictions"])
    data = np.loadtxt(smooth_csv, delimiter=",", skiprows=1)
    net = gpunn.load(model)
    np.testing.assert_allclose(values, net.predict(data[:, 1:]), rtol=1e-12)
    plain = run("predict", model, smooth_csv)
    assert plain.exit_code == 0 and len(plain.output.splitlines()) == 600


def test_explain_and_export_take_a_regression_model(trained, tmp_path):
    model, _ = trained
    result = run("explain", "--model", model, "--sample", "3")
    assert result.exit_code == 0, result.output
    assert "identity" in result.output and "target standardised" in result.output
    pytest.importorskip("onnx", reason="onnx is an optional extra")
    exported = run("export", model, tmp_path / "r.onnx")
    assert exported.exit_code == 0 and "output prediction (batch)" in exported.output


def test_plot_draws_predicted_against_true(trained, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is an optional extra")
    model, _ = trained
    result = run("plot", model, "--out", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_regression_needs_numeric_targets_and_identity_outputs(smooth_csv, tmp_path):
    result = run("train", "--dataset", smooth_csv, "--task", "regression", "--output-activation", "softmax")
    assert result.exit_code == 2 and "--task regression trains identity outputs" in result.output
    result = run("train", "--dataset", smooth_csv, "--output-activation", "identity")
    assert result.exit_code == 2 and "add --task regression" in result.output
    result = run("train", "--dataset", "digits", "--task", "regression")
    assert result.exit_code == 1 and "classification data set" in result.output
    words = tmp_path / "words.csv"
    words.write_text("cat,1,2\ndog,3,4\ncat,5,6\ndog,7,8\ncat,9,10\n")
    result = run("train", "--dataset", words, "--task", "regression")
    assert result.exit_code == 1 and "numbers to regress on" in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line, no traceback
