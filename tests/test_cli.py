"""The command line, driven through click's CliRunner: results, options and one-line errors."""

import json

import pytest
from click.testing import CliRunner

from gpunn.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_train_json_summary():
    result = run("train", "--epochs", "3", "--json", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    for key in ("test_accuracy", "train_accuracy", "test_loss", "epochs", "seconds",
                "samples_per_second", "backend", "dtype"):
        assert key in summary
    assert summary["epochs"] == 3 and summary["backend"] == "numpy" and summary["dtype"] == "float32"
    assert summary["layers"] == [64, 64, 10]
    assert 0.5 < summary["test_accuracy"] <= 1


def test_train_prints_one_line_per_epoch_on_stderr():
    result = run("train", "--epochs", "2", "--backend", "numpy")
    assert result.exit_code == 0
    assert result.stderr.count("epoch ") == 2
    assert "samples/s" in result.stderr
    assert "test accuracy" in result.stdout


def test_train_default_reaches_target_accuracy():
    result = run("train", "--json", "--quiet", "--backend", "numpy")
    assert result.exit_code == 0
    assert last_json(result.stdout)["test_accuracy"] >= 0.96


def test_xor_smoke_run():
    result = run("train", "--dataset", "xor", "--layers", "2,4,2", "--epochs", "1500", "--batch-size", "4",
                 "--lr", "4", "--dtype", "float64", "--json", "--quiet", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["test_accuracy"] == 1.0


def test_hidden_only_layers_are_completed_from_the_data():
    result = run("train", "--layers", "16", "--epochs", "1", "--json", "--quiet", "--backend", "numpy")
    assert last_json(result.stdout)["layers"] == [64, 16, 10]


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs"),
    (["--lr", "-1"], "--lr"),
    (["--batch-size", "abc"], "--batch-size"),
    (["--layers", "64,x,10"], "positive integer"),
    (["--backend", "tpu"], "unknown backend"),
    (["--loss", "hinge"], "--loss"),
    (["--momentum", "1.5"], "--momentum"),
])
def test_bad_options_are_usage_errors(args, message):
    result = run("train", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args,message", [
    # hidden layers typed: only the ends are wrong, so the fix keeps the hidden layers and fixes the ends
    (["--layers", "10,30,10"], "the first size must be 64 and the last 10; e.g. --layers 64,30,10"),
    (["--layers", "64,30,5"], "the first size must be 64 and the last 10; e.g. --layers 64,30,10"),
    (["--layers", "63,30,20,11"], "e.g. --layers 64,30,20,10"),
    (["--layers", "64,100"], "e.g. --layers 64,100,10"),  # a hidden layer typed without the outputs
])
def test_layers_that_do_not_fit_the_data_are_usage_errors_with_a_valid_fix(args, message):
    result = run("train", "--epochs", "1", "--backend", "numpy", *args)
    assert result.exit_code == 2
    assert message in result.output
    suggested = result.output.split("e.g. --layers ")[1].split()[0]
    fixed = run("train", "--epochs", "1", "--backend", "numpy", "--layers", suggested, "--quiet")
    assert fixed.exit_code == 0, fixed.output


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nosuchset"], "nosuchset"),
])
def test_bad_data_is_a_one_line_runtime_error(args, message):
    result = run("train", "--epochs", "1", "--backend", "numpy", *args)
    assert result.exit_code == 1
    assert message in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1
    assert "Traceback" not in result.output


def test_info_names_the_backend_and_versions():
    result = run("info")
    assert result.exit_code == 0
    assert "auto backend:" in result.output and "numpy" in result.output


def test_info_shows_the_dense_setting_and_the_cached_picks(monkeypatch, tmp_path):
    from gpunn.training.autotune import TuningCache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GPUNN_DENSE", raising=False)
    result = run("info")
    assert "dense products: auto (measured per network shape" in result.output
    assert "cached picks (" in result.output and "none yet" in result.output
    TuningCache().put("NVIDIA H200 (sm_90), cupy 14.2.0", "784-30-10 batch 10 float32",
                      {"pick": "fused", "step_us": {"fused": 21.5, "cublas": 160.0}})
    monkeypatch.setenv("GPUNN_DENSE", "cublas")
    result = run("info")
    assert result.exit_code == 0
    assert "dense products: cublas (forced by GPUNN_DENSE)" in result.output
    assert "NVIDIA H200 (sm_90), cupy 14.2.0" in result.output
    assert "784-30-10 batch 10 float32: fused (cublas 160 us, fused 21.5 us per step)" in result.output
    monkeypatch.setenv("GPUNN_DENSE", "fastest")
    result = run("info")
    assert result.exit_code == 0 and "GPUNN_DENSE='fastest' is not a dense path" in result.output


def test_train_json_says_which_dense_and_step_path_ran():
    result = run("train", "--epochs", "1", "--json", "--quiet", "--backend", "emulated", "--dataset", "xor",
                 "--layers", "2,4,2", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert (summary["dense"], summary["step"]) == ("fused", "launches")


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "gpunn", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "gpunn" in done.stdout


def test_train_the_network_people_train_today():
    result = run("train", "--activation", "relu", "--output-activation", "softmax", "--optimizer", "adam",
                 "--lr", "0.003", "--batch-size", "32", "--epochs", "5", "--json", "--quiet", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert (summary["activation"], summary["output_activation"], summary["loss"], summary["optimizer"]) == (
        "relu", "softmax", "cross_entropy", "adam")
    assert summary["test_accuracy"] > 0.9 and summary["warnings"] == []


def test_a_stuck_run_warns_on_stderr_and_in_the_json():
    result = run("train", "--lr", "50", "--epochs", "3", "--json", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    warnings = last_json(result.stdout)["warnings"]
    assert len(warnings) == 1 and "--lr" in warnings[0]
    assert result.stderr.count("Warning: training is stuck") == 1
    assert "TrainingWarning" not in result.stderr  # gpunn's own line, not Python's warning


@pytest.mark.parametrize("args,message", [
    (["--output-activation", "softmax", "--loss", "quadratic"], "--loss cross_entropy"),
    (["--optimizer", "adam", "--momentum", "0.9"], "apply to --optimizer sgd"),
    (["--optimizer", "adamw", "--lr-scaling", "fan_in"], "apply to --optimizer sgd"),
    (["--nesterov"], "--nesterov needs a --momentum"),
    (["--activation", "swish"], "--activation"),
    (["--init", "lecun"], "--init"),
])
def test_options_that_make_no_sense_together_are_usage_errors(args, message):
    result = run("train", "--epochs", "1", "--backend", "numpy", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_resume_keeps_the_optimizer_and_its_state(tmp_path):
    common = ["--optimizer", "adamw", "--activation", "tanh", "--batch-size", "32", "--seed", "3", "--json",
              "--quiet", "--backend", "numpy", "--dtype", "float64"]
    straight = run("train", "--epochs", "4", "--output", str(tmp_path / "straight.npz"), *common)
    half = run("train", "--epochs", "2", "--output", str(tmp_path / "half.npz"), *common)
    resumed = run("train", "--resume", str(tmp_path / "half.npz"), "--epochs", "4", "--json", "--quiet",
                  "--backend", "numpy", "--output", str(tmp_path / "resumed.npz"))
    for result in (straight, half, resumed):
        assert result.exit_code == 0, result.output
    assert last_json(resumed.stdout)["optimizer"] == "adamw"
    assert last_json(resumed.stdout)["test_loss"] == last_json(straight.stdout)["test_loss"]


def test_a_builtin_data_set_name_stays_a_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    import numpy as np

    from test_data import mnist_like, write_mnist_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()
    write_mnist_folder(tmp_path / "mnist", mnist_like(n_train=30, n_test=10))
    result = run("train", "--dataset", "mnist", "--data-dir", "mnist", "--layers", "784,8,10", "--epochs", "1",
                 "--backend", "numpy", "--quiet", "--output", "m.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "m.npz") as archive:
        extra = json.loads(archive["metadata"].tobytes())["extra"]
    assert extra["dataset"] == "mnist" and extra["data_dir"] == str(tmp_path / "mnist")
    monkeypatch.chdir(tmp_path.parent)  # the model finds its data from anywhere
    assert run("evaluate", str(tmp_path / "m.npz")).exit_code == 0
