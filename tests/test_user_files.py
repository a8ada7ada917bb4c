"""Your CSV as it comes, and a command line that speaks the user's language (issue 25).

Each test is one friction a user met with a file as pandas or a spreadsheet writes it, or
with the words of the command line; each failed before the change it checks.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.cli.main import cli

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def iris_like(n=150, seed=0):
    """Three separable classes of four measurements, named as iris's species."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    X = rng.normal(size=(n, 4)) * 0.3 + np.array([[5, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3, 5.6, 2]])[y]
    return X, y, np.array(["setosa", "versicolor", "virginica"])[y]


def write(path, header, rows, delimiter=","):
    lines = ([delimiter.join(header)] if header else []) + [delimiter.join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def train(*args):
    return run("train", "--epochs", 30, "--backend", "numpy", *args)


# -- 1. the label column: found by name, by being the only text, or given ----------------------------------
def test_label_last_named_species_trains_without_options_and_says_which_column(tmp_path):
    X, _, names = iris_like()
    path = write(tmp_path / "iris_lastcol.csv", [*IRIS_NAMES, "species"],
                 [[*np.round(x, 2), name] for x, name in zip(X, names)])
    result = train("--dataset", path)
    assert result.exit_code == 0, result.output
    assert "label: column 5 ('species') of iris_lastcol.csv, named like a label" in result.stderr
    assert float(result.stdout.split("test accuracy ")[1].split()[0]) > 0.8
    assert "label:" not in train("--dataset", path, "--quiet").stderr  # --quiet silences the line


def test_the_only_text_column_is_the_label_and_label_takes_a_name_or_a_number(tmp_path):
    X, _, names = iris_like()
    rows = [[*np.round(x[:2], 2), name, *np.round(x[2:], 2)] for x, name in zip(X, names)]
    path = write(tmp_path / "middle.csv", ["a", "b", "kind", "c", "d"], rows)
    found = train("--dataset", path, "--json")
    assert found.exit_code == 0, found.output
    assert "column 3 ('kind')" in found.stderr and "the only column that is not numbers" in found.stderr
    assert last_json(found.stdout)["classes"] == ["setosa", "versicolor", "virginica"]
    for label in ("kind", "KIND", "3"):
        given = train("--dataset", path, "--label", label, "--json")
        assert given.exit_code == 0 and last_json(given.stdout)["layers"] == [4, 64, 3], given.output
    wrong = train("--dataset", path, "--label", "species")
    assert wrong.exit_code == 1 and "no column is named 'species' (the columns: a, b, kind, c, d)" in wrong.output
    assert "the file has 5 columns; give a number from 1 to 5" in train("--dataset", path, "--label", "9").output


def test_an_id_column_and_one_class_per_row_are_warned_about(tmp_path):
    X, y, _ = iris_like()
    rows = [[i, *np.round(x, 2), label] for i, (x, label) in enumerate(zip(X, y))]
    headless = write(tmp_path / "ids.csv", None, rows)  # the first column is taken: the id
    result = train("--dataset", headless, "--epochs", 1, "--quiet")
    assert result.exit_code == 0
    assert "Warning: " in result.stderr
    assert "ids.csv: the label, column 1, has 150 different values in 150 rows" in result.stderr
    assert "counts 0, 1, 2, ... like a row number" in result.stderr and "--label" in result.stderr
    named = write(tmp_path / "named.csv", ["id", *IRIS_NAMES, "class"], rows)  # class last: the label
    result = train("--dataset", named, "--epochs", 1, "--quiet", "--json")
    assert last_json(result.stdout)["layers"] == [5, 64, 3]
    assert "named.csv: column 1 ('id') counts 0, 1, 2, ... like a row number" in result.stderr


def test_the_model_keeps_the_label_column_for_evaluate_and_predict(tmp_path):
    X, _, names = iris_like()
    rows = [[*np.round(x[:2], 2), name, *np.round(x[2:], 2)] for x, name in zip(X, names)]
    path = write(tmp_path / "middle.csv", ["a", "b", "kind", "c", "d"], rows)
    assert train("--dataset", path, "--label", "3", "--output", tmp_path / "m.npz", "--quiet").exit_code == 0
    model = gpunn.load(tmp_path / "m.npz", backend="numpy")
    assert model.label_column == {"column": 3, "name": "kind"} and model.feature_names == ["a", "b", "c", "d"]
    evaluated = run("evaluate", tmp_path / "m.npz", "--dataset", path, "--json")
    assert evaluated.exit_code == 0 and last_json(evaluated.stdout)["samples"] == 150, evaluated.output
    predicted = run("predict", tmp_path / "m.npz", path, "--json")
    assert predicted.exit_code == 0, predicted.output
    features = np.array([[float(v) for i, v in enumerate(row) if i != 2] for row in rows])
    assert last_json(predicted.stdout)["labels"] == model.predict(features).tolist()


def test_a_model_file_with_a_bad_label_column_is_refused(tmp_path):
    net = gpunn.Network([4, 3], backend="numpy")
    net.label_column = {"column": 0, "name": "kind"}
    with pytest.raises(gpunn.ModelFileError, match="label_column.column must be an integer from 1"):
        net.save(tmp_path / "m.npz")
    net.label_column, net.feature_names = None, ["a", "b"]
    with pytest.raises(gpunn.ModelFileError, match="lists 2 names for 4 inputs"):
        net.save(tmp_path / "m.npz")


# -- delimiters and suffixes ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,delimiter", [("iris.csv", ";"), ("iris.tsv", "\t"), ("iris.txt", ","),
                                            ("iris.txt", "\t")])
def test_semicolons_tabs_and_tsv_or_txt_files_read_like_csv(tmp_path, name, delimiter):
    X, _, names = iris_like()
    path = write(tmp_path / name, [*IRIS_NAMES, "species"], [[*np.round(x, 2), s] for x, s in zip(X, names)],
                 delimiter)
    result = train("--dataset", path, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["layers"] == [4, 64, 3]


def test_delimiter_rule():
    from gpunn.data.userdata import find_delimiter

    assert find_delimiter("a;b;c\n1,5;2,5;x\n") == ";"  # decimal commas: the semicolon splits every line alike
    assert find_delimiter("a\tb\n1\t2\n") == "\t"
    assert find_delimiter('"x, y",b\n1,2\n') == ","  # a quoted comma is no separator
    assert find_delimiter("1\n2\n") == ","


def test_a_single_column_file_says_how_fields_may_be_separated(tmp_path):
    path = tmp_path / "spaces.csv"
    path.write_text("1 2 3\n4 5 6\n")
    result = train("--dataset", path)
    assert result.exit_code == 1 and "one column only" in result.output
    assert "commas, semicolons or tabs" in result.output


# -- 2. --test-split 1 and 0 ---------------------------------------------------------------------------------
def test_evaluate_test_split_1_scores_every_row_of_the_models_own_file(tmp_path):
    X, y, _ = iris_like()
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    assert train("--dataset", tmp_path / "iris.npz", "--output", tmp_path / "m.npz", "--quiet").exit_code == 0
    assert last_json(run("evaluate", tmp_path / "m.npz", "--json").stdout)["samples"] == 30
    assert last_json(run("evaluate", tmp_path / "m.npz", "--test-split", 1, "--json").stdout)["samples"] == 150


def test_test_split_0_trains_on_every_row_and_says_there_are_no_test_metrics(tmp_path):
    X, y, _ = iris_like()
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    result = train("--dataset", tmp_path / "iris.npz", "--test-split", 0, "--output", tmp_path / "m.npz")
    assert result.exit_code == 0, result.output
    assert "all 150 samples train (--test-split 0: no test set, so no test metrics)" in result.stderr
    assert result.stdout.startswith("no test set  train accuracy")
    summary = last_json(train("--dataset", tmp_path / "iris.npz", "--test-split", 0, "--json", "--quiet").stdout)
    assert summary["test_accuracy"] is None and summary["train_accuracy"] > 0.8
    no_test = run("evaluate", tmp_path / "m.npz")
    assert no_test.exit_code == 1 and "no test set; pass --test-split 1" in no_test.output
    assert last_json(run("evaluate", tmp_path / "m.npz", "--test-split", 1, "--json").stdout)["samples"] == 150
    resumed = run("train", "--resume", tmp_path / "m.npz", "--epochs", 32, "--quiet", "--json")
    assert resumed.exit_code == 0 and last_json(resumed.stdout)["epochs"] == 32, resumed.output


# -- 3. an ONNX name for the .npz model ------------------------------------------------------------------
def test_train_refuses_an_onnx_output_name_and_points_to_export(tmp_path):
    result = train("--output", tmp_path / "model.onnx")
    assert result.exit_code == 2 and "gpunn export model.npz" in result.output
    assert not (tmp_path / "model.onnx").exists()


# -- 4. a wrong --layers: fix the ends ----------------------------------------------------------------------
@pytest.mark.parametrize("layers", ["4,10,2", "5,10,3"])
def test_wrong_ends_of_layers_are_fixed_at_the_ends(tmp_path, layers):
    X, y, _ = iris_like()
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    result = train("--dataset", tmp_path / "iris.npz", "--layers", layers)
    assert result.exit_code == 2 and "e.g. --layers 4,10,3" in result.output


# -- 8. errors that name the file and the fix -------------------------------------------------------------
def test_evaluate_names_the_file_line_and_classes_of_a_misspelt_label(tmp_path):
    X, _, names = iris_like()
    rows = [[s, *np.round(x, 2)] for x, s in zip(X, names)]
    write(tmp_path / "iris.csv", ["species", *IRIS_NAMES], rows)
    assert train("--dataset", tmp_path / "iris.csv", "--output", tmp_path / "m.npz", "--quiet").exit_code == 0
    rows[0][0] = "Setosa"
    write(tmp_path / "typo.csv", ["species", *IRIS_NAMES], rows)
    result = run("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "typo.csv")
    assert result.exit_code == 1 and "y has" not in result.output
    assert "typo.csv, column 1 ('species'): the label 'Setosa' on line 2 is not one of the classes" in result.output
    assert "['setosa', 'versicolor', 'virginica']" in result.output
    write(tmp_path / "nolabels.csv", IRIS_NAMES, [np.round(x, 2) for x in X])
    result = run("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "nolabels.csv")
    assert result.exit_code == 1 and "evaluate scores the model against the labels in the file" in result.output
    assert "gpunn predict" in result.output


# -- 9. the smaller words ------------------------------------------------------------------------------------
def test_choices_take_any_case_and_common_spellings_are_suggested():
    result = run("train", "--activation", "ReLU", "--optimizer", "Adam", "--epochs", 1, "--quiet", "--json",
                 "--backend", "numpy", "--output-activation", "SoftMax")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["activation"] == "relu" and last_json(result.stdout)["optimizer"] == "adam"
    assert "Did you mean '--lr'?" in run("train", "--learning-rate", "0.1").output
    assert "Did you mean '--batch-size'?" in run("train", "--batchsize", "5").output


def test_train_says_where_the_model_went_or_that_it_was_not_kept(tmp_path):
    unsaved = train("--epochs", 1)
    assert unsaved.stderr.count("the model was not saved; give --output model.npz to keep it") == 1
    saved = train("--epochs", 1, "--output", tmp_path / "m.npz")
    assert f"wrote {tmp_path / 'm.npz'}" in saved.stderr and "not saved" not in saved.stderr


def test_help_says_what_gpunn_is_and_summaries_are_whole_sentences():
    top = run("--help").output
    assert "sigmoid networks" not in top and "sigmoid, tanh or ReLU" in top
    commands = top.split("Commands:")[1].strip().splitlines()
    assert len(commands) >= 9 and not any(line.rstrip().endswith("...") for line in commands)
    predict = run("predict", "--help").output
    assert "``" not in predict and "read_image" not in predict


def test_info_without_a_gpu_says_so_plainly(monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "numpy")
    result = run("info")
    gpu_line = next(line for line in result.output.splitlines() if line.startswith("GPU:"))
    if gpunn.get_backend("auto").is_gpu:
        assert "GPU: device" in gpu_line
    else:
        assert "Error" not in gpu_line and "cudaError" not in gpu_line and "driver 0" not in gpu_line
        assert "none" in gpu_line or "not used" in gpu_line


def test_sigmoid_outputs_are_scores_and_softmax_outputs_probabilities(tmp_path):
    X, y, _ = iris_like()
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    np.save(tmp_path / "x.npy", X[:5])
    for activation, word in (("sigmoid", "scores"), ("softmax", "probabilities")):
        model = tmp_path / f"{activation}.npz"
        assert train("--dataset", tmp_path / "iris.npz", "--output-activation", activation, "--output", model,
                     "--quiet", "--epochs", 5).exit_code == 0
        answer = last_json(run("predict", model, tmp_path / "x.npy", "--json").stdout)
        assert word in answer and "outputs" not in answer
        assert word in run("predict", model, tmp_path / "x.npy").stderr
        if word == "probabilities":
            assert np.allclose(np.sum(answer[word], axis=1), 1, atol=1e-5)


def test_sklearn_frames_as_pandas_writes_them_train_and_evaluate_with_only_a_dataset(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    pytest.importorskip("pandas")
    for name, minimum in (("iris", 0.8), ("wine", 0.8), ("breast_cancer", 0.85)):
        path = tmp_path / f"{name}.csv"
        getattr(datasets, f"load_{name}")(as_frame=True).frame.to_csv(path, index=False)
        model = tmp_path / f"{name}.npz"
        trained = run("train", "--dataset", path, "--output", model, "--json")
        assert trained.exit_code == 0, trained.output
        assert "named like a label" in trained.stderr and "'target'" in trained.stderr
        summary = last_json(trained.stdout)
        assert summary["test_accuracy"] > minimum, (name, summary)
        evaluated = run("evaluate", model, "--dataset", path, "--json")
        assert evaluated.exit_code == 0, evaluated.output
        assert last_json(evaluated.stdout)["accuracy"] > minimum


# -- 5. explain keeps the point: whole lines, class and feature names, raw and scaled inputs -------------------
def test_explain_on_a_model_names_classes_and_features_and_wraps_instead_of_cutting(tmp_path):
    X, y, _ = iris_like()
    names = np.array(["iris setosa (bristle-pointed)", "iris versicolor (harlequin blueflag)",
                      "iris virginica (Virginia blueflag)"])[y]
    path = write(tmp_path / "iris.csv", ["species", *IRIS_NAMES], [[s, *np.round(x, 2)] for x, s in zip(X, names)])
    assert train("--dataset", path, "--output", tmp_path / "m.npz", "--quiet", "--epochs", 2).exit_code == 0
    result = run("explain", "--model", tmp_path / "m.npz", "--sample", 0)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 100 and not any(line.endswith("...") for line in lines)
    answer = " ".join(line.strip() for line in lines[next(i for i, line in enumerate(lines)
                                                             if line.startswith("answer:")):][:3])
    assert "the true label is iris" in answer and (answer.endswith(": right") or ": wrong" in answer)
    target = next(line for line in lines if line.startswith("target"))
    assert target.startswith("target  class iris ") and "t0 =" not in target
    data = gpunn.load_dataset(str(path))
    raw = data.X_test[0]
    for name, value in zip(IRIS_NAMES, raw):
        assert any(line.split()[1:3] == [name, f"{value:.4g}"] for line in lines if line.startswith("  x")), name


# -- 6. one truth for --lr-scaling fan_in ------------------------------------------------------------------
def test_every_description_of_fan_in_scaling_says_what_the_code_does():
    from gpunn.training.loop import fit
    from gpunn.training.optim import lr_scaling_rates

    rates = lr_scaling_rates([784, 256, 1024, 10], "fan_in")
    assert np.allclose(rates, [np.sqrt(64 / 784), np.sqrt(64 / 256), 64 / 1024])  # hidden: sqrt; output: 64/n
    help_text = " ".join(run("train", "--help").output.split())
    assert "min(1, sqrt(64/n))" in help_text and "output layer by --lr times min(1, 64/n)" in help_text
    docstring = " ".join(fit.__doc__.split())
    assert "min(1, sqrt(64 / n))" in docstring and "output layer ``lr * min(1, 64 / n)``" in docstring
    from pathlib import Path
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    assert "min(1, √(64/n)) for a hidden layer with n inputs and min(1, 64/n) for the output layer" in readme


def test_a_format_2_file_without_the_column_fields_loads_and_reads_the_label_as_before(tmp_path):
    """Files written before feature_names and label_column existed (the fields are optional)."""
    X, _, names = iris_like()
    path = write(tmp_path / "iris.csv", ["species", *IRIS_NAMES], [[s, *np.round(x, 2)] for x, s in zip(X, names)])
    assert train("--dataset", path, "--output", tmp_path / "new.npz", "--quiet", "--epochs", 2).exit_code == 0
    with np.load(tmp_path / "new.npz", allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents["metadata"].tobytes())
    assert meta["label_column"] == {"column": 1, "name": "species"}
    del meta["feature_names"], meta["label_column"]
    meta["format_version"] = 2  # as a classifier's file of format 2 is
    contents["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **contents)
    old = gpunn.load(tmp_path / "old.npz", backend="numpy")
    assert old.feature_names is None and old.label_column is None
    evaluated = run("evaluate", tmp_path / "old.npz", "--dataset", path, "--json")  # the label found by its name
    assert evaluated.exit_code == 0 and last_json(evaluated.stdout)["samples"] == 150, evaluated.output


def test_a_model_from_a_csv_resumes_and_evaluates_on_other_kinds_of_data(tmp_path):
    X, y, names = iris_like()
    path = write(tmp_path / "iris.csv", [*IRIS_NAMES, "species"], [[*np.round(x, 2), s] for x, s in zip(X, names)])
    np.savez(tmp_path / "iris.npz", X=np.round(X, 2), y=names)
    assert train("--dataset", path, "--output", tmp_path / "m.npz", "--quiet", "--epochs", 2).exit_code == 0
    evaluated = run("evaluate", tmp_path / "m.npz", "--dataset", tmp_path / "iris.npz", "--json")
    assert evaluated.exit_code == 0 and last_json(evaluated.stdout)["samples"] == 150, evaluated.output
    resumed = run("train", "--resume", tmp_path / "m.npz", "--dataset", tmp_path / "iris.npz", "--epochs", 3,
                  "--quiet", "--json")
    assert resumed.exit_code == 0 and last_json(resumed.stdout)["epochs"] == 3, resumed.output


def test_decimal_commas_are_named_as_such(tmp_path):
    path = tmp_path / "comma.csv"
    path.write_text("a;b;species\n5,1;3,5;setosa\n4,9;3,0;virginica\n")
    result = train("--dataset", path)
    assert result.exit_code == 1 and "'5,1' is not a number (a decimal comma? write 5.1)" in result.output


def test_label_on_data_without_columns_is_refused_in_one_line(tmp_path):
    X, y, _ = iris_like()
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    npz = train("--dataset", tmp_path / "iris.npz", "--label", "2")
    assert npz.exit_code == 1 and "keeps its labels in y, so --label applies only to .csv" in npz.output
    digits = train("--label", "2")
    assert digits.exit_code == 1 and "a built-in data set, so --label applies only to" in digits.output
