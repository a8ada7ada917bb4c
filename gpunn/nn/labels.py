"""Labels as the user wrote them, and the class indices the network works with.

A network with K output units answers with one of K classes.  Its ``classes`` list (kept
in model files) says what each output unit stands for, in sorted order: integer labels
of any values, strings, or the plain indices 0..K-1.  Training labels are mapped to
indices through it, and ``predict`` maps the most active output back, so a model trained
on labels 1, 2, 3 or "setosa", "versicolor", "virginica" answers with those.

Which classes a network gets (:func:`infer_classes`), from its first training labels:
labels that are whole numbers within 0..K-1 are the indices themselves (classes
0..K-1, even where a class has no sample yet); any other set of labels must have
exactly K distinct values, which become the classes in sorted order.  One-hot rows
(2-D ``y`` with K columns) are indices too.
"""

from __future__ import annotations

import numpy as np

from gpunn.compute.backend import to_numpy
from gpunn.errors import DataError, option_name


#: What gpunn calls a network's outputs, by output activation, and what the word means.
OUTPUTS_MEANING = {"probabilities": "softmax: each row sums to 1",
                   "scores": "sigmoid: each output squashed on its own, so rows need not sum to 1"}


def outputs_word(output_activation: str) -> str:
    """``probabilities`` for softmax outputs, ``scores`` for sigmoid ones, whose rows need not sum to 1: the one
    word gpunn uses for them everywhere (predict's output and JSON, the ONNX output's name)."""
    return "probabilities" if output_activation == "softmax" else "scores"


def _as_host_labels(y, where: str) -> np.ndarray:
    """``y`` as a 1-D host array of labels (one-hot rows become their indices)."""
    y = to_numpy(y) if hasattr(y, "shape") else np.asarray(y)
    if y.ndim == 2 and y.dtype.kind in "biuf":
        return y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"{where} must be 1-D (one label per sample) or one-hot rows, got shape {y.shape}")
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{where} must be numbers or strings, not {y.dtype}; convert them, e.g. y.astype(str)")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{where} holds NaN or infinite labels; every sample needs a class")
    return y


def _whole_numbers(y: np.ndarray) -> bool:
    return y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(np.mod(y, 1) == 0)))


def infer_classes(y, n_outputs: int, where: str = "y") -> np.ndarray:
    """The classes of a network with ``n_outputs`` units trained on labels ``y`` (see the module docstring)."""
    labels = _as_host_labels(y, where)
    if _whole_numbers(labels) and (labels.size == 0 or (labels.min() >= 0 and labels.max() < n_outputs)):
        return np.arange(n_outputs)
    distinct = np.unique(labels)
    if distinct.dtype.kind == "f" and _whole_numbers(distinct):
        distinct = distinct.astype(np.int64)
    if len(distinct) != n_outputs:
        shown = ", ".join(map(str, distinct[:12])) + (", ..." if len(distinct) > 12 else "")
        raise DataError(
            f"{where} has {len(distinct)} distinct labels ({shown}) but the output layer has {n_outputs} units; "
            f"make the output layer {len(distinct)} units wide (the last number of "
            f"{option_name('sizes', '--layers')})"
        )
    return distinct


def class_indices(y, classes: np.ndarray, where: str = "y") -> np.ndarray:
    """The index into ``classes`` of every label in ``y`` (int64); DataError naming any unknown label."""
    labels = _as_host_labels(y, where)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    if classes.dtype.kind in "iu" and not _whole_numbers(labels):
        raise DataError(f"{where} holds labels that are not whole numbers, but the classes are "
                        f"{_shown(classes)}")
    if (classes.dtype.kind in "US") != (labels.dtype.kind in "US"):
        raise DataError(f"{where} holds {'strings' if labels.dtype.kind in 'US' else 'numbers'} but the "
                        f"network's classes are {_shown(classes)}")
    if classes.dtype.kind in "iu":
        labels = labels.astype(np.int64)
    index = np.searchsorted(classes, labels)
    index = np.minimum(index, len(classes) - 1)
    unknown = classes[index] != labels
    if unknown.any():
        first = labels[unknown][0]
        raise DataError(f"{where} has the label {first.item() if isinstance(first, np.generic) else first!r}, "
                        f"which is not one of the network's classes {_shown(classes)}")
    return index.astype(np.int64)


def _shown(classes: np.ndarray) -> str:
    items = [repr(c.item()) if isinstance(c, np.generic) else repr(c) for c in classes[:12]]
    return "[" + ", ".join(items) + (", ...]" if len(classes) > 12 else "]")


def classes_to_json(classes: np.ndarray) -> list:
    """The classes as JSON values (ints or strings), for model files."""
    return [c.item() if isinstance(c, np.generic) else c for c in classes]


def classes_from_json(values, n_outputs: int) -> np.ndarray:
    """The classes a model file lists; ValueError when they are not K sorted, distinct ints or strings."""
    if not isinstance(values, list) or len(values) != n_outputs:
        raise ValueError(f"must list {n_outputs} classes, one per output unit")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        classes = np.array(values, dtype=np.int64)
    elif all(isinstance(v, str) for v in values):
        classes = np.array(values, dtype=str)
    else:
        raise ValueError("must be all integers or all strings")
    if len(np.unique(classes)) != len(classes) or not np.array_equal(np.sort(classes), classes):
        raise ValueError("must be distinct and sorted")
    return classes
