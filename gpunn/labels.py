"""Labels as the network sees them: integer class indices 0..classes-1."""

from __future__ import annotations

import numpy as np

from .backend import to_numpy
from .errors import DataError


def as_labels(y, n_classes: int) -> np.ndarray:
    """Integer labels from integer labels or one-hot rows; DataError when out of range."""
    y = to_numpy(y)
    if y.ndim == 2:
        if y.shape[1] != n_classes:
            raise DataError(
                f"one-hot labels have {y.shape[1]} columns but the output layer has {n_classes} units"
            )
        y = y.argmax(axis=1)
    elif y.ndim != 1:
        raise DataError(f"labels must be 1-D integers or 2-D one-hot rows, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise DataError("labels must be whole numbers (class indices)")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise DataError(
            f"label {bad} is out of range for an output layer of {n_classes} units "
            f"(labels must be 0..{n_classes - 1}); widen the last layer"
        )
    return y
