"""Data sets as NumPy arrays: the embedded digits, XOR, and the dispatcher for the rest.

Every loader returns a :class:`Dataset`: float features scaled to [0, 1] in rows
(one sample per row, as users hold their data) and integer labels.  The trainer
transposes and moves them to the device once.

The default data set needs no download: 1,797 handwritten digits of 8x8 pixels
(values 0..16), the UCI "Optical Recognition of Handwritten Digits" test set by
E. Alpaydin and C. Kaynak (CC BY 4.0), as also bundled by scikit-learn.  It ships
inside the package as ``gpunn/datasets/digits.npz`` (45 KB).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from .errors import DataError

#: Fraction of the embedded digits held out for testing, by a fixed permutation.
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 20260101


@dataclass
class Dataset:
    """Training and test arrays plus what the network needs to know about them."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def load_digits() -> Dataset:
    """The embedded 8x8 digits, pixels scaled to [0, 1], with a fixed 1347/450 split."""
    with resources.files("gpunn.datasets").joinpath("digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as archive:
            images = archive["images"].astype(np.float64) / 16.0
            labels = archive["labels"].astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_test = int(round(len(labels) * DIGITS_TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", images[train], labels[train], images[test], labels[test], 10)


def load_xor() -> Dataset:
    """The four XOR points (the classic problem a single neuron cannot solve), as 2 classes."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return Dataset("xor", X, y, X.copy(), y.copy(), 2)


BUILTIN = {"digits": load_digits, "xor": load_xor}


def load_dataset(name: str = "digits", **options) -> Dataset:
    """Load a data set by name (``digits``, ``xor``) and validate it."""
    loader = BUILTIN.get(name)
    if loader is None:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(sorted(BUILTIN))}")
    return validate(loader(**options))


def validate(data: Dataset) -> Dataset:
    """Check shapes, counts, finiteness and label range; raise DataError saying what is wrong."""
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
        if y.min() < 0 or y.max() >= data.n_classes:
            raise DataError(
                f"{data.name}: {split} labels must be in 0..{data.n_classes - 1}, found {y.min()}..{y.max()}"
            )
    if data.X_test.shape[1] != data.X_train.shape[1]:
        raise DataError(
            f"{data.name}: train has {data.X_train.shape[1]} features but test has {data.X_test.shape[1]}"
        )
    return data
