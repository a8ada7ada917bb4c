"""Your own data, end to end: scaling kept by the model, labels as written, paths, errors, one vocabulary.

Each test here is one of the frictions a new user met with their own data (issue "Your
own data, end to end"); each failed before the change it checks.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.cli.main import cli
from rounding import assert_labels_agree, network_terms


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def blobs(n=240, features=6, labels=(1, 2, 3), scale=1.0, seed=0):
    """Separable classes with features of very different ranges (like raw wine or iris measurements)."""
    rng = np.random.default_rng(seed)
    y = np.array(labels)[rng.integers(0, len(labels), n)]
    centres = rng.normal(size=(len(labels), features)) * 3
    index = np.searchsorted(np.array(sorted(labels)), y)
    ranges = scale * 10.0 ** np.arange(features)
    X = (centres[index] + rng.normal(size=(n, features))) * ranges + ranges * 5
    return X, y


def write_csv(path, X, y, header=False):
    with open(path, "w") as f:
        if header:
            f.write("label," + ",".join(f"f{i}" for i in range(X.shape[1])) + "\n")
        for label, row in zip(y, X):
            f.write(f"{label}," + ",".join(f"{v:.6g}" for v in row) + "\n")


# -- preprocessing that is part of the model ---------------------------------------------------------
def test_raw_features_learn_with_the_cli_default_scaling(tmp_path):
    X, y = blobs()
    write_csv(tmp_path / "raw.csv", X, y)
    scaled = run("train", "--dataset", tmp_path / "raw.csv", "--epochs", 20, "--json", "--quiet",
                 "--backend", "numpy")
    unscaled = run("train", "--dataset", tmp_path / "raw.csv", "--epochs", 20, "--json", "--quiet",
                   "--backend", "numpy", "--scale", "none")
    assert scaled.exit_code == 0 and unscaled.exit_code == 0, scaled.output + unscaled.output
    assert last_json(scaled.stdout)["scaling"] == "standard"
    assert last_json(scaled.stdout)["test_accuracy"] > 0.95
    assert last_json(unscaled.stdout)["test_accuracy"] < 0.8  # what raw features did before


def test_the_run_says_in_one_line_what_scaling_it_did(tmp_path):
    X, y = blobs()
    write_csv(tmp_path / "raw.csv", X, y)
    result = run("train", "--dataset", tmp_path / "raw.csv", "--epochs", 1, "--backend", "numpy")
    lines = [line for line in result.stderr.splitlines() if line.startswith("scaling")]
    assert lines == ["scaling (auto): each of the 6 features standardised to mean 0 and standard deviation 1 "
                     "(the training set's)"]


def test_uint8_pixels_train_like_pixels_scaled_to_one_and_predict_from_raw_rows(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    images = np.clip(rng.normal(60, 30, (300, 8, 8)) + y[:, None, None] * 40, 0, 255).astype(np.uint8)
    np.savez(tmp_path / "u8.npz", X=images, y=y)
    np.savez(tmp_path / "f.npz", X=images.astype(np.float64) / 255, y=y)
    common = ["--epochs", 10, "--json", "--quiet", "--backend", "numpy", "--dtype", "float64"]
    raw = run("train", "--dataset", tmp_path / "u8.npz", "--output", tmp_path / "raw.npz", *common)
    pre = run("train", "--dataset", tmp_path / "f.npz", *common)
    assert raw.exit_code == 0 and pre.exit_code == 0, raw.output + pre.output
    assert last_json(raw.stdout)["scaling"] == "pixels" and last_json(pre.stdout)["scaling"] == "none"
    assert last_json(raw.stdout)["test_accuracy"] == pytest.approx(last_json(pre.stdout)["test_accuracy"], abs=0.01)
    model = gpunn.load(tmp_path / "raw.npz", backend="numpy")
    raw_rows = images.reshape(300, 64)[:20].astype(np.float64)
    scaled_model = gpunn.Network(model.sizes, backend="numpy", dtype="float64")
    scaled_model.set_weights(model.get_weights())
    # two computations (the model's scaling, or a division first): the rounding rule, the scaling one more term
    assert_labels_agree(model.predict(raw_rows), scaled_model.predict(raw_rows / 255),
                        scaled_model.predict_proba(raw_rows / 255), model.dtype, network_terms(model.sizes) + 2)


def test_python_api_does_not_scale_unasked_and_scales_when_asked():
    X, y = blobs(labels=(0, 1, 2))
    plain = gpunn.Network([6, 16, 3], backend="numpy")
    plain.fit(X, y, epochs=1)
    assert plain.scaler.identity
    auto = gpunn.Network([6, 16, 3], backend="numpy", scale="auto")
    auto.fit(X, y, epochs=1)
    assert auto.scaler.method == "standard"
    np.testing.assert_allclose(auto.scaler.offset, X.mean(axis=0))


def test_the_scaler_is_fitted_on_the_training_set_only_and_kept_in_the_model(tmp_path):
    X, y = blobs(labels=(0, 1, 2))
    net = gpunn.Network([6, 16, 3], backend="numpy", scale="minmax", dtype="float64")
    net.fit(X[:200], y[:200], epochs=2, validation_data=(X[200:] * 100, y[200:]))
    np.testing.assert_allclose(net.scaler.offset, X[:200].min(axis=0))
    net.save(tmp_path / "m.npz")
    loaded = gpunn.load(tmp_path / "m.npz", backend="numpy")
    assert loaded.scaler.method == "minmax"
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))  # exact: same weights and path


# -- labels as written ------------------------------------------------------------------------------
def test_labels_1_to_3_make_three_outputs_and_come_back_as_written(tmp_path):
    X, y = blobs(labels=(1, 2, 3))
    write_csv(tmp_path / "iris.csv", X, y)
    result = run("train", "--dataset", tmp_path / "iris.csv", "--epochs", 5, "--json", "--quiet",
                 "--backend", "numpy", "--output", tmp_path / "m.npz")
    assert result.exit_code == 0, result.output
    summary = last_json(result.stdout)
    assert summary["layers"] == [6, 64, 3] and summary["classes"] == [1, 2, 3]  # no phantom class 0
    model = gpunn.load(tmp_path / "m.npz", backend="numpy")
    assert set(model.predict(X)) <= {1, 2, 3}


def test_string_labels_round_trip_through_python(tmp_path):
    X, y = blobs(labels=(0, 1, 2))
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    net = gpunn.Network([6, 16, 3], backend="numpy", scale="standard", seed=1)
    net.fit(X, names, epochs=30, batch_size=16)
    assert list(net.classes) == ["setosa", "versicolor", "virginica"]
    assert np.mean(net.predict(X) == names) > 0.9
    # exact: evaluate and predict run the same forward pass; a loaded copy the same weights on the same path
    assert net.evaluate(X, names)["accuracy"] == np.mean(net.predict(X) == names)
    net.save(tmp_path / "m.npz")
    assert np.array_equal(gpunn.load(tmp_path / "m.npz", backend="numpy").predict(X), net.predict(X))
    with pytest.raises(gpunn.DataError, match="'daisy', which is not one of the network's classes"):
        net.evaluate(X[:2], ["setosa", "daisy"])


def test_more_labels_than_outputs_is_a_clear_error():
    X, y = blobs(labels=(1, 2, 3, 4))
    with pytest.raises(gpunn.DataError, match=r"4 distinct labels \(1, 2, 3, 4\) but the output layer has 3"):
        gpunn.Network([6, 8, 3], backend="numpy").fit(X, y, epochs=1)


# -- evaluate scores what it is given -----------------------------------------------------------------
def test_evaluate_dataset_scores_every_row_of_the_file(tmp_path):
    X, y = blobs(n=50)
    write_csv(tmp_path / "few.csv", X, y)
    train = run("train", "--dataset", tmp_path / "few.csv", "--epochs", 2, "--quiet", "--backend", "numpy",
                "--output", tmp_path / "m.npz")
    assert train.exit_code == 0, train.output
    for extra in ([], ["--test-split", "1.0"]):
        result = run("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "few.csv", "--json", *extra)
        assert result.exit_code == 0, result.output
        assert last_json(result.stdout)["samples"] == 50
    split = run("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "few.csv", "--test-split", "0.2", "--json")
    assert last_json(split.stdout)["samples"] == 10
    own = run("evaluate", tmp_path / "m.npz", "--json")  # no --dataset: the model's own test part
    assert last_json(own.stdout)["samples"] == 10


# -- paths in model files -----------------------------------------------------------------------------
def test_a_model_trained_in_one_folder_evaluates_and_resumes_from_another(tmp_path, monkeypatch):
    X, y = blobs(n=60)
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "sub" / "data.csv", X, y)
    monkeypatch.chdir(tmp_path / "sub")
    trained = run("train", "--dataset", "data.csv", "--epochs", 2, "--quiet", "--backend", "numpy",
                  "--output", "m.npz")
    assert trained.exit_code == 0, trained.output
    monkeypatch.chdir(tmp_path)
    assert run("evaluate", "sub/m.npz").exit_code == 0
    resumed = run("train", "--resume", "sub/m.npz", "--epochs", 3, "--quiet", "--backend", "numpy")
    assert resumed.exit_code == 0, resumed.output
    os.remove(tmp_path / "sub" / "data.csv")
    gone = run("evaluate", "sub/m.npz")
    assert gone.exit_code == 1
    assert "the data that sub/m.npz was trained on, is not there any more; pass --dataset" in gone.output


# -- resume keeps its file, its schedule and its epoch target ---------------------------------------------
def test_resume_without_output_saves_back_to_its_file_and_can_resume_again(tmp_path):
    path = tmp_path / "m.npz"
    common = ["--quiet", "--backend", "numpy", "--json"]
    assert run("train", "--epochs", 2, "--output", path, "--checkpoint-every", 1, *common).exit_code == 0
    first = run("train", "--resume", path, "--epochs", 3, *common)
    assert first.exit_code == 0, first.output
    assert gpunn.load(path).epochs_done == 3
    second = run("train", "--resume", path, "--epochs", 4, *common)
    assert second.exit_code == 0 and gpunn.load(path).epochs_done == 4


def test_resume_without_epochs_continues_to_the_runs_own_target(tmp_path):
    path = tmp_path / "m.npz"
    common = ["--quiet", "--backend", "numpy", "--json"]
    # an interrupted run: asked for 40 epochs, checkpointed after 2 (simulated by stopping early)
    assert run("train", "--epochs", 2, "--output", path, *common).exit_code == 0
    model = gpunn.load(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays["metadata"].tobytes())
    meta["extra"]["epochs"] = 4
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    assert model.epochs_done == 2
    result = run("train", "--resume", path, *common)
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["epochs"] == 4


# -- Python errors as clear as the CLI's ---------------------------------------------------------------
def test_python_errors_name_python_arguments():
    net = gpunn.Network([4, 3], backend="numpy")
    with pytest.raises(gpunn.DataError, match="3 labels but X has 5 samples"):
        net.fit(np.zeros((5, 4)), [0, 1, 2], epochs=1)
    with pytest.raises(gpunn.DataError, match="make sizes start with 5") as info:
        net.fit(np.zeros((5, 5)), [0, 1, 2, 0, 1], epochs=1)
    assert "--layers" not in str(info.value)


def test_gpunn_backend_is_the_python_default_and_named_when_wrong(monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "emulated")
    assert gpunn.Network([2, 2]).backend.name == "emulated"
    monkeypatch.setenv("GPUNN_BACKEND", "bogus")
    with pytest.raises(ValueError, match=r"unknown backend 'bogus' \(from \$GPUNN_BACKEND\)"):
        gpunn.Network([2, 2])
    result = run("train", "--epochs", 1)
    assert result.exit_code == 1 and "'bogus' (from $GPUNN_BACKEND)" in result.output


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    model = tmp_path / "m.npz"
    assert run("train", "--epochs", 1, "--quiet", "--backend", "numpy", "--output", model).exit_code == 0
    job = subprocess.run(f"{sys.executable} -m gpunn evaluate {model} | head -1", shell=True, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert job.stdout.count("\n") == 1 and "Error" not in job.stderr, job.stderr
    status = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m gpunn evaluate {model} | head -c1"],
                            capture_output=True, timeout=120)
    assert status.returncode == 0, status.stderr


# -- one vocabulary ----------------------------------------------------------------------------------------
def test_every_command_that_writes_a_file_takes_output(tmp_path):
    model = tmp_path / "m.npz"
    assert run("train", "--epochs", 1, "--quiet", "--backend", "numpy", "--output", model).exit_code == 0
    pytest.importorskip("matplotlib")
    result = run("plot", model, "--output", tmp_path / "c.png")
    assert result.exit_code == 0, result.output and (tmp_path / "c.png").exists()
    assert "--output" in run("bench", "--help").output


def test_epoch_lines_say_running_train_accuracy_and_the_summary_says_after_training():
    result = run("train", "--epochs", 1, "--backend", "numpy")
    assert "running train acc" in result.stderr
    assert "train accuracy" in result.stdout and "(after training)" in result.stdout


def test_patience_stops_early_and_keeps_the_best_weights():
    result = run("train", "--epochs", 200, "--patience", 2, "--min-delta", 0.5, "--json", "--quiet",
                 "--backend", "numpy")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["epochs"] <= 4


def test_fit_verbose_prints_the_cli_epoch_lines_and_validation_split_holds_out_the_last_samples(capsys):
    X, y = blobs(labels=(0, 1, 2))
    net = gpunn.Network([6, 16, 3], backend="numpy", scale="standard")
    history = net.fit(X, y, epochs=2, verbose=2, validation_split=0.25)
    err = capsys.readouterr().err
    assert err.count("running train acc") == 2 and "val acc" in err
    assert history.params["samples"] == 180 and "val_accuracy" in history.history
    net.fit(X, y, epochs=1)
    assert capsys.readouterr().err == ""  # verbose=0, the default, is silent


# -- one reader for train, evaluate and predict -------------------------------------------------------------
def test_predict_and_evaluate_read_the_training_csv_itself_header_and_all(tmp_path):
    X, y = blobs(n=80, labels=(1, 2, 3))
    write_csv(tmp_path / "train.csv", X, y, header=True)
    assert run("train", "--dataset", tmp_path / "train.csv", "--epochs", 20, "--quiet", "--backend", "numpy",
               "--output", tmp_path / "m.npz").exit_code == 0
    predicted = run("predict", tmp_path / "m.npz", tmp_path / "train.csv", "--json")
    assert predicted.exit_code == 0, predicted.output
    answer = last_json(predicted.stdout)
    assert len(answer["labels"]) == 80 and set(answer["labels"]) <= {1, 2, 3} and answer["classes"] == [1, 2, 3]
    # the command's backend is "auto" (a GPU where there is one): the rounding rule against NumPy, on the
    # values the file holds
    model = gpunn.load(tmp_path / "m.npz", backend="numpy")
    written = np.array([[float(f"{v:.6g}") for v in row] for row in X])
    assert_labels_agree(answer["labels"], model.predict(written), model.predict_proba(written), model.dtype,
                        network_terms(model.sizes))
    with open(tmp_path / "features.csv", "w") as f:  # the same rows without their labels
        f.writelines(",".join(f"{v:.6g}" for v in row) + "\n" for row in X)
    # exact: the same values through the same command, backend and code path
    assert last_json(run("predict", tmp_path / "m.npz", tmp_path / "features.csv", "--json").stdout) == answer
    evaluated = run("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "train.csv", "--json")
    assert evaluated.exit_code == 0 and last_json(evaluated.stdout)["samples"] == 80


def test_string_labels_round_trip_through_the_command_line(tmp_path):
    X, y = blobs(n=90, labels=(0, 1, 2))
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    write_csv(tmp_path / "iris.csv", X, names)
    trained = run("train", "--dataset", tmp_path / "iris.csv", "--epochs", 30, "--json", "--quiet",
                  "--backend", "numpy", "--output", tmp_path / "m.npz")
    assert trained.exit_code == 0, trained.output
    assert last_json(trained.stdout)["classes"] == ["setosa", "versicolor", "virginica"]
    predicted = run("predict", tmp_path / "m.npz", tmp_path / "iris.csv")
    header, *rows = predicted.stdout.strip().splitlines()
    assert header.split() == ["class", "setosa", "versicolor", "virginica"]
    assert np.mean([row.split()[0] == name for row, name in zip(rows, names)]) > 0.9


def test_predict_flattens_trailing_shapes_as_train_does(tmp_path):
    model = tmp_path / "m.npz"
    assert run("train", "--epochs", 2, "--quiet", "--backend", "numpy", "--output", model).exit_code == 0
    digits = gpunn.load_dataset("digits")
    images = digits.X_test[:3].reshape(3, 8, 8)
    np.save(tmp_path / "three.npy", images)
    np.save(tmp_path / "one.npy", images[0])
    np.savez(tmp_path / "three.npz", X=images, y=digits.y_test[:3])
    net = gpunn.load(model, backend="numpy")
    want, scores = net.predict(digits.X_test[:3]), net.predict_proba(digits.X_test[:3])
    for name, count in (("three.npy", 3), ("one.npy", 1), ("three.npz", 3)):
        result = run("predict", model, tmp_path / name, "--json")
        assert result.exit_code == 0, result.output
        # the command's backend is "auto" (a GPU where there is one): the rounding rule against NumPy
        assert_labels_agree(last_json(result.stdout)["labels"], want[:count], scores[:count], net.dtype,
                            network_terms(net.sizes), what=name)


def test_python_predict_takes_one_sample_as_a_1d_row():
    digits = gpunn.load_dataset("digits")
    net = gpunn.Network([64, 16, 10], backend="numpy")
    net.fit(digits.X_train[:100], digits.y_train[:100], epochs=1)
    assert net.predict(digits.X_test[0]).shape == (1,)
    assert net.predict(digits.X_test[0])[0] == net.predict(digits.X_test[:1])[0]  # exact: the same one-sample pass


def test_scaling_never_overflows_on_features_near_the_float_limits(tmp_path):
    import warnings

    X = np.array([[3e38, -3e38], [-3e38, 3e38], [0.0, 5.0], [1.0, 2.0]] * 5)
    y = np.array([0, 1, 0, 1] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw overflow warning from the statistics or the scaling
        for method, dtype in (("standard", "float32"), ("auto", "float32"), ("minmax", "float64")):
            net = gpunn.Network([2, 4, 2], backend="numpy", scale=method, dtype=dtype)
            net.fit(X, y, epochs=1)
            assert np.isfinite(net.scaler.factor).all() and (net.scaler.factor > 0).all()
        # x - min spans 6e38 here, past float32: a clean error naming the fix, not a warning
        with pytest.raises(gpunn.DataError, match="overflow float32; use float64"):
            gpunn.Network([2, 4, 2], backend="numpy", scale="minmax").fit(X, y, epochs=1)
    np.savez(tmp_path / "big.npz", X=X, y=y)
    result = run("train", "--dataset", tmp_path / "big.npz", "--epochs", 1, "--layers", ",4,", "--quiet",
                 "--backend", "numpy")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output.replace("Warning: training is stuck", "")
