"""The commands that use a saved model: ``gpunn evaluate``, ``gpunn predict`` and ``gpunn plot``.

Each takes a model file written by ``gpunn train --output`` (or ``Network.save``)
and reads it with :func:`gpunn.network.load_with_metadata`, which refuses anything that is
not a sound gpunn model with a one-line error.  The data set a model was trained on
is recorded in the file, so ``gpunn evaluate model.npz`` needs nothing else.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import click
import numpy as np

from gpunn.cli.options import FiniteRange
from gpunn.data.datasets import USER_SUFFIXES, check_representable, finite_arithmetic
from gpunn.errors import DataError, GpunnError, ModelFileError
from gpunn.files import check_distinct, check_input, check_output, open_input
from gpunn.nn.labels import classes_to_json
from gpunn.memory import require
from gpunn.safe_npz import Hints, read_npy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Largest image read (a 50-megapixel photo); larger ones are refused before they are decoded.
MAX_IMAGE_PIXELS = 50_000_000
INPUT_SUFFIXES = (".npy", ".npz", ".csv", *IMAGE_SUFFIXES)

_backend_option = click.option("--backend", default=None,
                               help="auto, numpy, cupy or cupy:N [default: $GPUNN_BACKEND or auto].")


#: What ``gpunn train`` records about its data set in a model's ``extra``, and the rule for each.
_RECORD_RULES = {
    "dataset": lambda value: isinstance(value, str) and value != "",
    "data_dir": lambda value: value is None or isinstance(value, str),
    "test_split": lambda value: value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1),
}


def recorded_extra(model, metadata: dict) -> dict:
    """What the saving command recorded about the data (``extra``), checked, or nothing."""
    extra = metadata.get("extra")
    if not isinstance(extra, dict):
        return {}
    for key, valid in _RECORD_RULES.items():
        if key in extra and not valid(extra[key]):
            raise ModelFileError(
                f"{model} records its data set wrongly ({key} is {extra[key]!r:.60}); "
                f"pass --dataset (and --data-dir or --test-split) to say which data to use"
            )
    return extra


def recorded_data(model, extra: dict, data_dir, test_split):
    """The data set a model file records (with its folder and split), unless --data-dir/--test-split override.

    A recorded path that is no longer there is named as the model's, with the options
    that point elsewhere.
    """
    dataset = extra.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise GpunnError(f"{model} does not record the data set it was trained on; pass --dataset")
    data_dir = extra.get("data_dir") if data_dir is None else data_dir
    test_split = extra.get("test_split") if test_split is None else test_split
    for path in (dataset if dataset.lower().endswith(USER_SUFFIXES) else None, data_dir):
        if isinstance(path, str) and not Path(path).exists():
            raise GpunnError(f"{path}, the data that {model} was trained on, is not there any more; "
                             f"pass --dataset (and --data-dir) to use data from elsewhere")
    return dataset, data_dir, test_split


def _model_dataset(model: str, metadata: dict, dataset, data_dir, test_split, task: str = "classification"):
    """The data set named on the command line, else the one recorded in the model file (read for ``task``)."""
    from gpunn.data.datasets import load_dataset

    if dataset is None:
        dataset, data_dir, test_split = recorded_data(model, recorded_extra(model, metadata), data_dir, test_split)
    options = {key: value for key, value in (("data_dir", data_dir), ("test_split", test_split))
               if value is not None}
    return load_dataset(dataset, task=task, **options)


def _check_width(net, n_features: int, what: str) -> None:
    if n_features != net.sizes[0]:
        raise DataError(
            f"{what} has {n_features} values per sample but the model takes {net.sizes[0]} inputs; "
            f"give it data of the kind the model was trained on"
        )


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true label, predicted label): rows are true labels, columns predictions."""
    flat = np.asarray(labels, dtype=np.int64) * n_classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--dataset", default=None,
              help="digits, xor, mnist, fashion-mnist or a .npz/.csv file (all of whose samples are scored) "
                   "[default: the model's own data set, its test part].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding the MNIST-format files [default: the model's own, else the cache].")
@click.option("--test-split", type=FiniteRange(0, 1, min_open=True), default=None,
              help="Score only this held-out fraction of a .npz/.csv file without test arrays (1: all of it) "
                   "[default: all of a --dataset file; the model's own split of its own file].")
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout.")
def evaluate(model, dataset, data_dir, test_split, backend, as_json):
    """Loss, accuracy and confusion matrix of MODEL on a data set (by default the test set it was trained with)."""
    from gpunn.network import load_with_metadata

    net, metadata = load_with_metadata(model, backend=backend)
    whole_file = dataset is not None and dataset.lower().endswith(USER_SUFFIXES) and test_split in (None, 1.0)
    data = _model_dataset(model, metadata, dataset, data_dir, None if test_split == 1.0 else test_split, net.task)
    _check_width(net, data.n_features, f"data set {data.name}")
    X, y, part = data.X_test, data.y_test, "test set"
    if whole_file:
        X, y, part = np.concatenate([data.X_train, data.X_test]), np.concatenate([data.y_train, data.y_test]), "all"
    check_representable(X, net.dtype, f"data set {data.name}")
    if net.task == "regression":
        _evaluate_regression(net, model, data, X, y, part, as_json)
        return
    classes = net.classes if net.classes is not None else np.arange(net.sizes[-1])
    with finite_arithmetic(f"data set {data.name}"):
        result = net.evaluate(X, y)
        predicted = net.predict_proba(X).argmax(axis=1)
    confusion = confusion_matrix(net.label_indices(y, len(y)), predicted, len(classes))
    if as_json:
        click.echo(json.dumps({"model": model, "dataset": data.name, "samples": len(y),
                               "loss": result["loss"], "accuracy": result["accuracy"],
                               "classes": classes_to_json(classes), "confusion": confusion.tolist()}))
        return
    click.echo(f"{model}: {list(net.sizes)} network, {net.epochs_done} epochs; "
               f"{part} of {data.name}: {len(y)} samples")
    click.echo(f"loss {result['loss']:.5f}  accuracy {result['accuracy']:.4f}")
    click.echo("confusion matrix (rows: true label, columns: predicted label)")
    names = [str(c) for c in classes_to_json(classes)]
    width = max(len(str(confusion.max())), *(len(name) for name in names)) + 1
    label_width = max(5, *(len(name) for name in names))
    click.echo(" " * (label_width + 1) + "".join(f"{name:>{width}}" for name in names))
    for name, row in zip(names, confusion):
        click.echo(f"{name:>{label_width}} " + "".join(f"{count:>{width}}" for count in row))


def _evaluate_regression(net, model, data, X, y, part: str, as_json: bool) -> None:
    """``evaluate`` for a regression model: loss, MSE, MAE and R^2 in the targets' units."""
    with finite_arithmetic(f"data set {data.name}"):
        result = net.evaluate(X, y)
    if as_json:
        click.echo(json.dumps({"model": model, "dataset": data.name, "samples": len(y), "task": "regression",
                               **{key: result[key] for key in ("loss", "mse", "mae", "r2")}}))
        return
    click.echo(f"{model}: {list(net.sizes)} regression network, {net.epochs_done} epochs; "
               f"{part} of {data.name}: {len(y)} samples")
    click.echo(f"loss {result['loss']:.5f}  MSE {result['mse']:.6g}  MAE {result['mae']:.6g}  R2 {result['r2']:.4f}")


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@_backend_option
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object {"labels": [...], "classes": [...], "outputs": [[...]]} as the last '
                   'line of stdout.')
def predict(model, input_path, backend, as_json):
    """Classify the samples in INPUT with MODEL (a regression model: predict their values): a .csv, .npy or
    .npz file, or an image.

    Reads what ``gpunn train`` reads: a .csv of feature rows, with or without the label
    column in front (told apart by the model's input width) and a header row; a .npy
    array or the X of a .npz, one sample per entry along its first axis (any trailing
    shape is flattened, e.g. (n, 28, 28) images); an image (.png/.jpg/.jpeg, needs
    Pillow) becomes one sample, see read_image.  The model's own scaling is applied.
    Prints a header naming the classes, then one line per sample: the predicted class
    (as the model was trained with it) and the output of each class.
    """
    from gpunn.network import load

    net = load(model, backend=backend)
    X = read_samples(input_path, net.sizes[0])
    _check_width(net, X.shape[1], str(input_path))
    check_representable(X, net.dtype, str(input_path))
    if net.task == "regression":  # values in the targets' units, one line (of one value per target) per sample
        with finite_arithmetic(str(input_path)):
            values = np.asarray(net.predict(X), dtype=np.float64).reshape(len(X), -1)
        if as_json:
            click.echo(json.dumps({"predictions": values[:, 0].tolist() if net.target_scaling.ndim == 1
                                   else values.tolist()}))
            return
        for row in values:
            click.echo(" ".join(f"{value:.6g}" for value in row))
        return
    with finite_arithmetic(str(input_path)):
        outputs = net.predict_proba(X).astype(np.float64)
    classes = net.classes if net.classes is not None else np.arange(net.sizes[-1])
    labels = classes_to_json(classes[outputs.argmax(axis=1)])
    if as_json:
        click.echo(json.dumps({"labels": labels, "classes": classes_to_json(classes), "outputs": outputs.tolist()}))
        return
    names = [str(c) for c in classes_to_json(classes)]
    width = max(6, *(len(name) for name in names))
    label_width = max(5, *(len(str(label)) for label in labels))
    click.echo(f"{'class':<{label_width}}  " + " ".join(f"{name:>{width}}" for name in names))
    for label, row in zip(labels, outputs):
        click.echo(f"{str(label):<{label_width}}  " + " ".join(f"{value:>{width}.4f}" for value in row))


def read_samples(path, n_inputs: int) -> np.ndarray:
    """Samples as a 2-D float array from a .csv, .npy or .npz file or an image, as ``predict`` reads them.

    ``n_inputs`` (the model's input width) tells a CSV's label column from a feature
    (:func:`gpunn.data.userdata.csv_samples`), a single sample from a batch, and sets the
    size an image is resized to.  ``.npy``/``.npz`` files are read by
    :mod:`gpunn.safe_npz`: nothing is unpickled, and complex, text or other non-numeric
    arrays are refused.
    """
    from gpunn.data.userdata import csv_samples, read_csv

    suffix = Path(path).suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise DataError(f"{path}: INPUT must be one of {', '.join(INPUT_SUFFIXES)} files")
    check_input(path, DataError)
    if suffix in IMAGE_SUFFIXES:
        return read_image(path, n_inputs)[None, :]
    if suffix == ".csv":
        return csv_samples(read_csv(path), n_inputs)
    hints = Hints("samples must be numbers", "give fewer samples at a time")
    if suffix == ".npy":
        X = read_npy(path, hints)
    else:
        X = _npz_samples(path, hints)
    if X.size == n_inputs and X.shape[-1] != n_inputs or X.ndim == 1:
        X = X.reshape(1, -1)  # one sample, flat or shaped (e.g. one 28x28 image)
    if X.ndim < 2 or X.size == 0:
        raise DataError(f"{path}: expected samples along the first axis (or one sample), got shape {X.shape}")
    return X.reshape(len(X), -1).astype(np.float64)


def _npz_samples(path, hints: Hints) -> np.ndarray:
    """The X array of a .npz file (as ``train`` reads it; its labels, if any, are not needed)."""
    from gpunn.safe_npz import NpzReader

    with open_input(path, DataError) as file, NpzReader(file, path) as archive:
        if "X" not in archive.names:
            raise DataError(f"{path}: no array named X (found: {', '.join(sorted(archive.names)) or 'none'}); "
                            f"save the samples with np.savez(path, X=samples)")
        return archive.read("X", hints=hints)


def read_image(path, n_inputs: int) -> np.ndarray:
    """One image as a sample for a network of ``n_inputs`` = side x side inputs (e.g. 28x28, 8x8).

    The image is grey-scaled (transparent parts count as white), scaled to [0, 1],
    inverted when its border is light (mean > 0.5) so that the strokes are bright on
    dark as in MNIST and the embedded digits, padded to a square with background and
    resized to side x side (by area averaging when shrinking).  It is not centred or
    cropped to the digit, as MNIST's digits were, so draw the digit large and in the
    middle.
    """
    side = math.isqrt(n_inputs)
    if side * side != n_inputs:
        raise DataError(
            f"the model takes {n_inputs} inputs, which is no square image (64 = 8x8, 784 = 28x28); "
            f"give it a .npy or .csv file instead"
        )
    try:
        from PIL import Image
    except ImportError:
        raise GpunnError('Pillow is not installed, so images cannot be read; install it with: '
                         'pip install "gpunn[images]"') from None
    with open_input(path, DataError) as file:
        grey = _decode_grey(file, path)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.mean() > 0.5:
        grey = 1 - grey
    height, width = grey.shape
    size = max(height, width)
    require(size * size * 4, f"{path}: padding the {width} x {height} image to a square",
            "crop it closer to the digit")
    square = np.zeros((size, size), dtype=np.float32)
    top, left = (size - height) // 2, (size - width) // 2
    square[top:top + height, left:left + width] = grey
    # area averaging when shrinking (exact for block-scaled pictures), bilinear when enlarging
    resample = Image.Resampling.BOX if size >= side else Image.Resampling.BILINEAR
    small = Image.fromarray(square).resize((side, side), resample)
    return np.clip(np.asarray(small, dtype=np.float64), 0, 1).ravel()


def _decode_grey(file, path) -> np.ndarray:
    """The image in ``file`` as grey levels in [0, 1] (transparent parts white), at most MAX_IMAGE_PIXELS."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's advice about palettes and modes is not the user's business
            # Pillow warns above its own (larger) pixel limit while opening: that is refused here too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(f"{path}: the image has {width} x {height} = {width * height:,} pixels, more "
                                    f"than the {MAX_IMAGE_PIXELS:,} gpunn reads; scale it down first")
                image = image.convert("RGBA")
                white = Image.new("RGBA", image.size, "white")
                return np.asarray(Image.alpha_composite(white, image).convert("L"), dtype=np.float32) / 255
    except DataError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{path}: the image has more than the {MAX_IMAGE_PIXELS:,} pixels gpunn reads "
                        f"(a decompression bomb?); scale it down first") from None
    except Exception as exc:  # Pillow's decoders raise many kinds of error on corrupt files; all mean "unreadable"
        raise DataError(f"{path}: cannot read the image ({' '.join(str(exc).split()) or type(exc).__name__})") \
            from None


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--output", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The picture to write (.png, .svg, .pdf); --out is the same option.")
@click.option("--curves/--no-curves", default=None,
              help="Loss and accuracy per epoch [default: on, unless only --weights/--surface/--landscape are "
                   "asked for and the model has no history (--landscape: off, it shows the accuracy itself)].")
@click.option("--weights", is_flag=True, help="The first layer's weights, one image per neuron (square inputs).")
@click.option("--surface", is_flag=True, help="The decision surface of a 2-input network, with its training points.")
@click.option("--landscape", is_flag=True,
              help="The loss on a plane through the trained weights with the training path on it (recorded by "
                   "train --record-trajectory), and along the line from the initial to the trained weights.")
@click.option("--dataset", default=None,
              help="Points drawn on the surface; the data the landscape is measured on [default: the model's].")
def plot(model, out, curves, weights, surface, landscape, dataset):
    """Draw MODEL's learning curves, first-layer weights, decision surface and/or loss landscape
    (a regression model: also its predictions against the true values of its test set)."""
    from gpunn.network import load_with_metadata
    from gpunn.explain.plotting import check_output_path, plot_model, require_matplotlib

    check_output_path(out)
    check_output(out, "--out")
    check_distinct({"--out": out}, {"MODEL": model})
    require_matplotlib()
    net, metadata = load_with_metadata(model, backend="numpy")
    if curves is None:
        has_history = net.history is not None and bool(net.history.epoch)
        curves = (has_history and not landscape) or not (weights or surface or landscape)
    points = None
    recorded = recorded_extra(model, metadata)
    if surface and net.sizes[0] == 2 and (dataset or recorded.get("dataset")):
        data = _model_dataset(model, metadata, dataset, None, None)
        _check_width(net, data.n_features, f"data set {data.name}")
        check_representable(data.X_train, net.dtype, f"data set {data.name}")
        points = (data.X_train, data.y_train)
    measured = None
    if landscape:
        from gpunn.explain.landscape import compute

        data = _model_dataset(model, metadata, dataset, None, None)
        _check_width(net, data.n_features, f"data set {data.name}")
        check_representable(data.X_train, net.dtype, f"data set {data.name}")
        measured = compute(net, data.X_train, data.y_train, seed=net.seed)
    predictions = None
    if net.task == "regression" and (dataset or recorded.get("dataset")):  # predicted against true values
        data = _model_dataset(model, metadata, dataset, None, None, "regression")
        _check_width(net, data.n_features, f"data set {data.name}")
        check_representable(data.X_test, net.dtype, f"data set {data.name}")
        predictions = (data.y_test, net.predict(data.X_test))
    val_label = "test" if recorded.get("dataset") else "validation"  # the CLI validates on the test set
    plot_model(net, out, curves=curves, weights=weights, surface=surface, points=points, val_label=val_label,
               landscape=measured, predictions=predictions)
    click.echo(f"wrote {out}", err=True)


model_commands = [evaluate, predict, plot]
