"""The model lifecycle on the command line: train --output/--resume/--checkpoint-every/--plot,
evaluate, predict and plot, and their one-line errors."""

import importlib.util
import json
import os
import pathlib
import pickle
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn.cli.main import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def needs(module: str, extra: str):
    """Skip when an optional extra is missing, except under CI, where its tests must run."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing and not os.environ.get("CI"),
                              reason=f'{module} not installed (pip install "gpunn[{extra}]"); CI runs these')


needs_matplotlib = needs("matplotlib", "plot")
needs_pillow = needs("PIL", "images")

TINY = ["--layers", "64,16,10", "--batch-size", "20", "--lr", "3", "--backend", "numpy"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error:"), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """(model path, train's JSON summary) for a small network trained 3 epochs on the digits."""
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    result = run("train", "--epochs", 3, *TINY, "--output", path, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return path, last_json(result.stdout)


@pytest.fixture(scope="module")
def xor_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("xor") / "xor.npz"
    result = run("train", "--dataset", "xor", "--layers", "2,4,2", "--epochs", 300, "--batch-size", 4, "--lr", 4,
                 "--seed", 1, "--backend", "numpy", "--quiet", "--output", path)
    assert result.exit_code == 0, result.output
    return path


# -- train: --output, --resume, --checkpoint-every ---------------------------------------------------
def test_resume_on_the_command_line_is_bit_identical(tmp_path):
    options = [*TINY, "--momentum", "0.5", "--quiet", "--json"]
    assert run("train", "--epochs", 6, *options, "--output", tmp_path / "straight.npz").exit_code == 0
    assert run("train", "--epochs", 3, *options, "--output", tmp_path / "half.npz").exit_code == 0
    resumed = run("train", "--resume", tmp_path / "half.npz", "--epochs", 6, "--output", tmp_path / "resumed.npz",
                  "--quiet", "--json", "--backend", "numpy")
    assert resumed.exit_code == 0, resumed.output
    assert last_json(resumed.stdout)["epochs"] == 6
    straight, again = (gpunn.load(tmp_path / name, backend="numpy") for name in ("straight.npz", "resumed.npz"))
    assert np.array_equal(straight.params, again.params)
    assert np.array_equal(straight.optimizer.velocity, again.optimizer.velocity)


def test_checkpoints_go_to_output_and_resume(tmp_path):
    path = tmp_path / "ckpt.npz"
    result = run("train", "--epochs", 4, *TINY, "--checkpoint-every", 2, "--output", path, "--quiet")
    assert result.exit_code == 0, result.output
    assert gpunn.load(path).epochs_done == 4
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_checkpoint_every_needs_output():
    result = run("train", "--epochs", 1, "--checkpoint-every", 1)
    assert result.exit_code == 2 and "--output" in result.output


@pytest.mark.parametrize("args,fragments", [
    (["--layers", "64,32,10"], ["--layers 64,32,10 conflicts", "64,16,10"]),
    (["--loss", "cross_entropy"], ["--loss cross_entropy conflicts"]),
    (["--epochs", "3"], ["already trained 3 epochs", "--epochs 4"]),
    (["--dataset", "xor", "--epochs", "5"], ["takes 64 inputs", "2 features"]),
])
def test_resume_refuses_conflicts(digits_model, args, fragments):
    result = run("train", "--resume", digits_model[0], "--backend", "numpy", *args)
    assert_one_line_error(result, *fragments)


def test_resume_accepts_matching_layers(digits_model, tmp_path):
    result = run("train", "--resume", digits_model[0], "--layers", "16", "--epochs", 4, "--quiet",
                 "--backend", "numpy", "--output", tmp_path / "more.npz")
    assert result.exit_code == 0, result.output
    assert gpunn.load(tmp_path / "more.npz").epochs_done == 4


# -- evaluate ------------------------------------------------------------------------------------------
def test_evaluate_matches_what_train_reported(digits_model):
    path, summary = digits_model
    result = run("evaluate", path, "--json", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    report = last_json(result.stdout)
    assert report["accuracy"] == summary["test_accuracy"]
    assert report["loss"] == summary["test_loss"]
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == report["samples"]
    assert np.trace(confusion) / confusion.sum() == report["accuracy"]
    data = gpunn.load_dataset("digits")
    assert confusion.sum(axis=1).tolist() == np.bincount(data.y_test, minlength=10).tolist()  # rows: true labels


def test_evaluate_prints_a_table(digits_model):
    result = run("evaluate", digits_model[0], "--backend", "numpy")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "confusion matrix (rows: true label" in result.output
    assert len(result.output.splitlines()) == 3 + 1 + 10


def test_evaluate_on_data_of_the_wrong_width_names_both(digits_model):
    result = run("evaluate", digits_model[0], "--dataset", "xor", "--backend", "numpy")
    assert_one_line_error(result, "2 values per sample", "64 inputs")


class Marker:
    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


BAD_MODELS = {
    "truncated": (lambda good, p: p.write_bytes(good.read_bytes()[:300]), "truncated"),
    "random bytes": (lambda good, p: p.write_bytes(np.random.default_rng(1).bytes(999)), "not a gpunn model"),
    "foreign npz": (lambda good, p: np.savez(p, x=np.ones(2)), "not a gpunn model"),
    "pickle": (lambda good, p: p.write_bytes(pickle.dumps(Marker(p.parent / "marker"))), "pickle"),
    "missing": (lambda good, p: None, "no such model file"),
}


@pytest.mark.parametrize("command", ["evaluate", "predict", "plot", "resume"])
@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_files_are_one_line_errors(digits_model, tmp_path, command, case):
    make, fragment = BAD_MODELS[case]
    path = tmp_path / "model.npz"
    make(digits_model[0], path)
    samples = tmp_path / "x.npy"
    np.save(samples, np.zeros((1, 64)))
    args = {"evaluate": ["evaluate", path], "predict": ["predict", path, samples],
            "plot": ["plot", path, "--out", tmp_path / "p.png"], "resume": ["train", "--resume", path]}[command]
    if command == "plot" and importlib.util.find_spec("matplotlib") is None:
        fragment = "gpunn[plot]"
    assert_one_line_error(run(*args), fragment)
    assert not (tmp_path / "marker").exists()


# -- predict -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples():
    data = gpunn.load_dataset("digits")
    return data.X_test[:5], data.y_test[:5]


def expected_labels(model_path, X):
    """The labels the tests' ``predict --backend numpy`` must print, exactly: the same backend, and the same
    samples in one batch of the same size, run the same code path."""
    return gpunn.load(model_path, backend="numpy").predict(X).tolist()


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_predict_from_arrays(digits_model, samples, tmp_path, suffix):
    X, _ = samples
    path = tmp_path / f"x{suffix}"
    np.save(path, X) if suffix == ".npy" else np.savetxt(path, X, delimiter=",")
    result = run("predict", digits_model[0], path, "--json", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    answer = last_json(result.stdout)
    assert answer["labels"] == expected_labels(digits_model[0], X)
    assert np.array(answer["outputs"]).shape == (5, 10)
    text = run("predict", digits_model[0], path, "--backend", "numpy")
    header, *lines = text.stdout.strip().splitlines()
    assert header.split() == ["class", *map(str, range(10))]
    assert len(lines) == 5 and [int(line.split()[0]) for line in lines] == answer["labels"]
    assert all(len(line.split()) == 11 for line in lines)


def test_predict_one_sample_from_a_1d_array(digits_model, samples, tmp_path):
    np.save(tmp_path / "one.npy", samples[0][2])
    result = run("predict", digits_model[0], tmp_path / "one.npy", "--json", "--backend", "numpy")
    assert last_json(result.stdout)["labels"] == expected_labels(digits_model[0], samples[0][2:3])


def test_predict_width_mismatch_names_both_widths(digits_model, tmp_path):
    np.savetxt(tmp_path / "x.csv", np.zeros((2, 3)), delimiter=",")
    assert_one_line_error(run("predict", digits_model[0], tmp_path / "x.csv"), "3 columns", "64 inputs")
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    assert_one_line_error(run("predict", digits_model[0], tmp_path / "x.npy"), "3 values per sample", "64 inputs")


@pytest.mark.parametrize("name,content,fragment", [
    ("x.csv", "1,2,three\n4,5,6\n", "3 columns, but the model takes 64 inputs"),
    ("x.csv", "0," * 63 + "0\n" + "0," * 63 + "x\n", "line 2, column 64: 'x' is not a number"),
    ("x.csv", "", "no data rows"),
    ("x.txt", "1,2\n", "must be one of"),
])
def test_predict_bad_inputs(digits_model, tmp_path, name, content, fragment):
    (tmp_path / name).write_text(content)
    assert_one_line_error(run("predict", digits_model[0], tmp_path / name), fragment)


def test_predict_never_unpickles_an_input(digits_model, tmp_path):
    np.save(tmp_path / "x.npy", np.array([Marker(tmp_path / "marker")], dtype=object), allow_pickle=True)
    assert_one_line_error(run("predict", digits_model[0], tmp_path / "x.npy"), "holds Python objects")
    assert not (tmp_path / "marker").exists()


@needs_pillow
@pytest.mark.parametrize("light_background", [True, False])
def test_predict_from_an_image(digits_model, samples, tmp_path, light_background):
    from PIL import Image

    X, _ = samples
    digit = X[1].reshape(8, 8)
    pixels = np.kron(1 - digit if light_background else digit, np.ones((10, 10)))  # 80x80, blocky
    Image.fromarray((pixels * 255).round().astype(np.uint8)).convert("RGB").save(tmp_path / "digit.png")
    result = run("predict", digits_model[0], tmp_path / "digit.png", "--json", "--backend", "numpy")
    assert result.exit_code == 0, result.output
    answer = last_json(result.stdout)
    assert answer["labels"] == expected_labels(digits_model[0], X[1:2])
    reference = gpunn.load(digits_model[0], backend="numpy").predict_proba(X[1:2])
    assert np.allclose(answer["outputs"], reference, atol=0.02)


def test_predict_image_without_pillow_says_how_to_install(digits_model, tmp_path, monkeypatch):
    (tmp_path / "digit.png").write_bytes(PNG_MAGIC)
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert_one_line_error(run("predict", digits_model[0], tmp_path / "digit.png"), 'pip install "gpunn[images]"')


def test_predict_image_needs_a_square_input(xor_model, tmp_path):
    (tmp_path / "digit.png").write_bytes(PNG_MAGIC)
    assert_one_line_error(run("predict", xor_model, tmp_path / "digit.png"), "2 inputs", "no square image")


# -- plot ----------------------------------------------------------------------------------------------
def assert_png(path, width=None):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    if width is not None and importlib.util.find_spec("PIL") is not None:
        from PIL import Image

        with Image.open(path) as image:
            assert image.size[0] == width


@needs_matplotlib
@pytest.mark.parametrize("flags", [[], ["--weights"], ["--no-curves", "--weights"]])
def test_plot_curves_and_weights(digits_model, tmp_path, flags):
    out = tmp_path / "picture.png"
    result = run("plot", digits_model[0], "--out", out, *flags)
    assert result.exit_code == 0, result.output
    assert_png(out, width=1000)


@needs_matplotlib
def test_plot_surface_of_xor(xor_model, tmp_path):
    out = tmp_path / "surface.png"
    result = run("plot", xor_model, "--out", out, "--surface")
    assert result.exit_code == 0, result.output
    assert_png(out, width=1000)


@needs_matplotlib
@pytest.mark.parametrize("model,out,args,fragments", [
    ("digits", "p.png", ["--surface"], ["2 inputs", "has 64"]),
    ("xor", "p.png", ["--weights"], ["square input", "2 inputs"]),
    ("digits", "p.gif", [], ["curves.png"]),
])
def test_plot_refuses_what_it_cannot_draw(digits_model, xor_model, tmp_path, model, out, args, fragments):
    path = digits_model[0] if model == "digits" else xor_model
    assert_one_line_error(run("plot", path, "--out", tmp_path / out, *args), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_plot_without_matplotlib_says_how_to_install(digits_model, tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    assert_one_line_error(run("plot", digits_model[0], "--out", tmp_path / "p.png"), 'pip install "gpunn[plot]"')
    result = run("train", "--epochs", 1, *TINY, "--plot", tmp_path / "p.png")
    assert_one_line_error(result, "gpunn[plot]")


@needs_matplotlib
def test_train_plot_draws_the_curves(tmp_path):
    out = tmp_path / "curves.png"
    result = run("train", "--epochs", 2, *TINY, "--quiet", "--json", "--plot", out)
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["plot"] == str(out)
    assert_png(out, width=1000)


@needs_matplotlib
def test_plot_without_history_or_panels(tmp_path):
    gpunn.Network([64, 4, 10], backend="numpy").save(tmp_path / "fresh.npz")
    assert_one_line_error(run("plot", tmp_path / "fresh.npz", "--out", tmp_path / "p.png"), "no training history")
    assert_one_line_error(run("plot", tmp_path / "fresh.npz", "--out", tmp_path / "p.png", "--no-curves"),
                          "nothing to draw")
    result = run("plot", tmp_path / "fresh.npz", "--out", tmp_path / "w.png", "--weights")
    assert result.exit_code == 0, result.output
    assert_png(tmp_path / "w.png", width=1000)
