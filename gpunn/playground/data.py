"""A playground tab's data set: generated, the embedded digits, or the tab's own CSV.

:func:`build_data` makes a :class:`Data` from the page's settings: the network's inputs and
labels for training and testing, and the 2-D points and the plane the page draws them on.  The
CSV is read by gpunn's own reader (:func:`gpunn.data.datasets.load_dataset`), exactly as
``gpunn train --dataset F.csv --test-split`` reads it, from a temporary file of the playground's
own (the server never opens a path a request names); its errors name the uploaded file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpunn.data.datasets import Dataset, check_representable, load_dataset, validate
from gpunn.errors import GpunnError
from gpunn.playground import datasets as gen
from gpunn.playground.pictures import Plane, generated_plane, user_plane
from gpunn.playground.settings import Settings, SettingsError

#: Largest CSV upload, in bytes.
MAX_UPLOAD = 20 * 1024 * 1024


@dataclass
class Data:
    """A session's data set: the network's inputs and labels, and the 2-D points the page draws."""

    name: str
    kind: str  #: "generated", "user" or "digits"
    problem: str  #: "classification" or "regression"
    X_train: np.ndarray  #: the network's inputs (raw: the network scales them itself)
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    points_train: np.ndarray | None  #: (n, 2) coordinates in the picture's plane (None: no plane)
    points_test: np.ndarray | None
    classes: list  #: class names as the legend shows them (empty for regression)
    class_values: np.ndarray | None  #: the classes as the labels hold them, sorted (None for regression)
    columns: list  #: names of the input columns
    plane: Plane | None
    scale: str  #: the network's input scaling, as ``gpunn train --scale`` names it


def class_names(classes) -> list:
    return [str(c.item() if isinstance(c, np.generic) else c) for c in classes]


def build_data(s: Settings, upload: tuple[str, bytes] | None) -> Data:
    """The data set ``s`` asks for (``upload``: the tab's CSV as (file name, bytes), when it has one)."""
    if s.dataset == "digits":
        d = load_dataset("digits")
        return Data("digits", "digits", "classification", d.X_train, d.y_train, d.X_test, d.y_test, None, None,
                    class_names(d.classes), d.classes, [f"pixel {i}" for i in range(64)], None, "auto")
    if s.dataset == "csv":
        if upload is None:
            raise GpunnError("no CSV uploaded in this tab yet; choose a file with the upload button")
        return _user_data(s, *upload)
    points, labels = gen.generate(s.dataset, s.points, s.noise, s.seed)
    p_train, y_train, p_test, y_test = gen.split(points, labels, s.train_fraction, s.seed)
    problem = s.problem
    return Data(s.dataset, "generated", problem, gen.features(p_train, s.features), y_train,
                gen.features(p_test, s.features), y_test, p_train, p_test,
                ["0", "1"] if problem == "classification" else [],
                np.arange(2) if problem == "classification" else None, list(s.features),
                generated_plane(s.features), "none")


def _user_data(s: Settings, name: str, content: bytes) -> Data:
    """A CSV read by gpunn's own reader, exactly as ``gpunn train --dataset F.csv --test-split`` reads it."""
    test_split = round(1 - s.train_fraction, 6)
    with tempfile.TemporaryDirectory(prefix="gpunn-playground-") as folder:
        path = Path(folder) / "upload.csv"
        path.write_bytes(content)
        try:
            data = load_dataset(str(path), test_split=test_split)
        except GpunnError as exc:
            raise GpunnError(str(exc).replace(str(path), name)) from None
    data = validate(Dataset(name, data.X_train, data.y_train, data.X_test, data.y_test, data.n_classes))
    for split in ("train", "test"):
        check_representable(getattr(data, f"X_{split}"), np.float32, f"{name} ({split} set)")
    width = data.n_features
    if width >= 2 and max(s.surface) >= width:
        raise SettingsError(f"surface: {name} has {width} feature columns, numbered 0 to {width - 1}")
    a, b = s.surface if width >= 2 else (0, 0)
    plane = user_plane(data.X_train, (a, b)) if width >= 2 else None
    pick = (lambda X: X[:, [a, b]]) if width >= 2 else (lambda X: None)
    return Data(name, "user", "classification", data.X_train, data.y_train, data.X_test, data.y_test,
                pick(data.X_train), pick(data.X_test), class_names(data.classes), data.classes,
                _column_names(content, width), plane, "auto")


def _column_names(content: bytes, width: int) -> list:
    """The feature columns' names from the CSV's header row, when it has one (gpunn's reader's rule: a
    first row whose fields after the first are not all numbers), else ``column 2``, ``column 3``, ..."""
    fallback = [f"column {i + 2}" for i in range(width)]
    first = next((line for line in content.decode("utf-8-sig", "replace").splitlines() if line.strip()), "")
    fields = [field.strip() for field in first.split(",")]
    if len(fields) != width + 1:
        return fallback
    try:
        for field in fields[1:]:
            float(field)
    except ValueError:
        return [name[:40] or fallback[i] for i, name in enumerate(fields[1:])]
    return fallback
