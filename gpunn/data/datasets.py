"""Data sets as NumPy arrays: the embedded digits, XOR, and the dispatcher for the rest.

Every loader returns a :class:`Dataset`: float features scaled to [0, 1] in rows
(one sample per row, as users hold their data) and integer labels.  The trainer
transposes and moves them to the device once.

The default data set needs no download: 1,797 handwritten digits of 8x8 pixels
(values 0..16), the UCI "Optical Recognition of Handwritten Digits" test set by
E. Alpaydin and C. Kaynak (CC BY 4.0), as also bundled by scikit-learn.  It ships
inside the package as ``gpunn/datasets/digits.npz`` (45 KB).

``mnist`` and ``fashion-mnist`` (60,000 + 10,000 images of 28x28) are read from the
four standard IDX files, from ``data_dir`` when given (checked for structure only,
see :mod:`gpunn.data.idx`) or else from the cache, downloading and verifying them there
first (see :mod:`gpunn.data.download`).  A path ending in ``.npz`` or ``.csv`` loads the
user's own arrays (see :mod:`gpunn.data.userdata`; those features are not rescaled).
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from gpunn.data import download
from gpunn.data import idx
from gpunn.errors import DataError
from gpunn.data.userdata import load_user_arrays

#: Fraction of the embedded digits held out for testing, by a fixed permutation.
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 20260101


@dataclass
class Dataset:
    """Training and test arrays plus what the network needs to know about them.

    Labels are kept as written (integers of any values, or strings); ``classes`` lists
    what each output unit stands for, in sorted order: the data set's own classes for the
    built-in ones (MNIST has ten, even in a file that lacks a digit), else the distinct
    labels of both splits.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    known_classes: np.ndarray | None = None
    #: ``"regression"``: ``y`` holds float targets (no classes), see :func:`load_dataset`
    task: str = "classification"

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        """The output layer's size: one unit per class, or per target column."""
        if self.task == "regression":
            return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]
        return len(self.classes)

    @property
    def classes(self) -> np.ndarray:
        if self.known_classes is not None:
            return self.known_classes
        return np.unique(np.concatenate([self.y_train, self.y_test]))


def load_digits() -> Dataset:
    """The embedded 8x8 digits, pixels scaled to [0, 1], with a fixed 1348/449 split."""
    with resources.files("gpunn.data.embedded").joinpath("digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as archive:
            images = archive["images"].astype(np.float64) / 16.0
            labels = archive["labels"].astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_test = int(round(len(labels) * DIGITS_TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", images[train], labels[train], images[test], labels[test], 10, np.arange(10))


def load_xor() -> Dataset:
    """The four XOR points (the classic problem a single neuron cannot solve), as 2 classes."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return Dataset("xor", X, y, X.copy(), y.copy(), 2, np.arange(2))


def load_mnist_family(name: str, data_dir: str | Path | None = None) -> Dataset:
    """MNIST or Fashion-MNIST from ``data_dir``, or from the cache (downloading what is missing)."""
    if data_dir is None:
        paths = download.fetch(name, report=lambda line: print(f"{name}: {line}", file=sys.stderr))
    else:
        paths = _local_idx_files(name, Path(data_dir))
    train_images, train_labels, test_images, test_labels = paths
    y_train, y_test = idx.read_labels(train_labels), idx.read_labels(test_labels)
    return Dataset(name, idx.read_images(train_images), y_train, idx.read_images(test_images), y_test, 10,
                   np.arange(10))


def _local_idx_files(name: str, folder: Path) -> list[Path]:
    """The four standard files in ``folder``, each named with or without ``.gz``."""
    if not folder.is_dir():
        raise DataError(f"{name}: no such folder {folder}; --data-dir must name the folder holding the IDX files")
    found, missing = [], []
    for file_name in download.MNIST_FILES:
        candidates = [folder / file_name, folder / file_name.removesuffix(".gz")]
        path = next((p for p in candidates if p.exists() or p.is_symlink()), None)
        if path is None:
            missing.append(file_name)
        found.append(path)
    if missing:
        raise DataError(
            f"{name}: {', '.join(missing)} not found in {folder}; it needs the four files "
            f"{', '.join(download.MNIST_FILES)} (with or without .gz), or leave out --data-dir to download them"
        )
    return found


def load_user_data(path: str, test_split: float | None = None, task: str = "classification") -> Dataset:
    """The user's ``.npz`` or ``.csv`` file as a Dataset named after the file; features are not rescaled."""
    X_train, y_train, X_test, y_test = load_user_arrays(path, test_split, task)
    if task == "regression":
        return Dataset(Path(path).name, X_train, y_train, X_test, y_test, 0, np.array([]), task)
    return Dataset(Path(path).name, X_train, y_train, X_test, y_test, _count_classes(y_train, y_test))


def _count_classes(*labels: np.ndarray) -> int:
    """The number of distinct labels over all the label arrays."""
    return len(np.unique(np.concatenate(labels))) if labels else 0


BUILTIN = {"digits": load_digits, "xor": load_xor}
MNIST_FAMILY = tuple(download.CHECKSUMS)
USER_SUFFIXES = (".npz", ".csv")


def load_dataset(
    name: str = "digits",
    data_dir: str | Path | None = None,
    test_split: float | None = None,
    n_classes: int | None = None,
    task: str = "classification",
) -> Dataset:
    """Load a data set and validate it.

    ``name`` is ``digits``, ``xor``, ``mnist``, ``fashion-mnist`` or a path ending
    in ``.npz`` / ``.csv``.  ``data_dir`` applies to the MNIST family only,
    ``test_split`` to user files without a test set only; either given elsewhere is
    an error rather than silently ignored.  ``n_classes``, when given, is the size
    of the network's output layer: the data must not have more distinct labels, and
    it becomes the dataset's ``n_classes``.  ``task="regression"`` reads a user file's
    first column (or ``y``) as float targets; the built-in data sets are classification.
    """
    _check_arguments(name, data_dir, test_split)
    is_user_file = name.lower().endswith(USER_SUFFIXES)
    if data_dir is not None and name not in MNIST_FAMILY:
        raise DataError(f"{name}: --data-dir applies only to {' and '.join(MNIST_FAMILY)}; drop it")
    if test_split is not None and not is_user_file:
        raise DataError(f"{name}: has a fixed test set, so --test-split applies only to .npz/.csv files; drop it")
    if name in BUILTIN:
        data = BUILTIN[name]()
    elif name in MNIST_FAMILY:
        data = load_mnist_family(name, data_dir)
    elif is_user_file:
        data = load_user_data(name, test_split, task)
    else:
        known = ", ".join([*BUILTIN, *MNIST_FAMILY])
        raise DataError(f"unknown dataset {name!r}: use one of {known}, or a path to a .npz or .csv file")
    if task == "regression" and data.task != "regression":
        raise DataError(f"{name} is a classification data set; --task regression needs a .csv or .npz file of "
                        f"numeric targets")
    return validate(data, n_classes)


def check_representable(X: np.ndarray, dtype, where: str) -> None:
    """Refuse features a network of ``dtype`` cannot hold (they would turn infinite when copied in)."""
    if X.size == 0:
        return
    peak = max(float(X.max()), -float(X.min()))
    limit = float(np.finfo(dtype).max)
    if peak > limit:
        raise DataError(
            f"{where}: features as large as {peak:g} do not fit the network's {np.dtype(dtype).name} (at most "
            f"{limit:g}); rescale them (to about [0, 1]){' or use --dtype float64' if limit < 1e300 else ''}"
        )


@contextlib.contextmanager
def finite_arithmetic(what: str):
    """For inference: sums that overflow on the inputs give no meaningful answer, so refuse in one line
    (NumPy would only warn, and print NaN or saturated outputs)."""
    try:
        with np.errstate(over="raise", invalid="raise"):
            yield
    except FloatingPointError as exc:
        raise DataError(f"{what}: the network's arithmetic overflows on these inputs ({exc}); rescale the features "
                        f"(to about [0, 1])") from None


def _check_arguments(name, data_dir, test_split) -> None:
    """The types load_dataset needs (its arguments may come from a model file's record of the data set)."""
    if not isinstance(name, str) or not name:
        raise DataError(f"the data set must be a name or a path to a .npz or .csv file, got {name!r:.60}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise DataError(f"{name}: the data folder must be a path, got {data_dir!r:.60}")
    if test_split is not None and not (isinstance(test_split, numbers.Real) and not isinstance(test_split, bool)):
        raise DataError(f"{name}: the test split must be a fraction between 0 and 1, got {test_split!r:.60}")


def validate(data: Dataset, n_classes: int | None = None) -> Dataset:
    """Check shapes, counts, finiteness and labels; raise DataError saying what is wrong.

    With ``n_classes`` (the output layer's size) the number of distinct labels is checked
    against it and the returned Dataset carries it.
    """
    if n_classes is not None:
        data = replace(data, n_classes=n_classes)
    for split in ("train", "test"):
        X, y = getattr(data, f"X_{split}"), getattr(data, f"y_{split}")
        if X.ndim != 2:
            raise DataError(f"{data.name}: {split} features must be 2-D (samples, features), got shape {X.shape}")
        if len(X) == 0:
            raise DataError(f"{data.name}: the {split} set is empty; give it at least one sample")
        if len(X) != len(y):
            raise DataError(
                f"{data.name}: {len(X)} {split} samples but {len(y)} labels; they must match"
            )
        if not np.isfinite(X).all():
            raise DataError(f"{data.name}: {split} features contain NaN or infinite values; clean them first")
        if data.task == "regression":  # float targets, checked when read
            continue
        if y.ndim != 1:
            raise DataError(f"{data.name}: {split} labels must be 1-D (one per sample), got shape {y.shape}")
        if not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind == "U"):
            raise DataError(f"{data.name}: {split} labels must be integers or strings, got dtype {y.dtype}")
    if data.X_test.shape[1] != data.X_train.shape[1]:
        raise DataError(
            f"{data.name}: train has {data.X_train.shape[1]} features but test has {data.X_test.shape[1]}"
        )
    if data.task == "regression":
        if data.y_train.shape[1:] != data.y_test.shape[1:]:
            raise DataError(f"{data.name}: the train and test targets must have the same number of columns")
        return data
    if (data.y_train.dtype.kind == "U") != (data.y_test.dtype.kind == "U"):
        raise DataError(f"{data.name}: the train labels and the test labels must both be numbers or both strings")
    needed = _count_classes(data.y_train, data.y_test)
    if needed > data.n_classes:
        raise DataError(
            f"{data.name}: {needed} distinct labels do not fit an output layer of {data.n_classes} units; "
            f"make the last layer {needed} wide"
        )
    return data
