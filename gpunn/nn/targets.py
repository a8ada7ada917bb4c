"""A regression network's targets: checked, standardised for training, and scored.

A regression network (identity outputs, the squared error) learns float targets of one
or more columns.  Raw targets can be of any scale (house prices in dollars, a
temperature in kelvin), and the squared error's gradient grows with that scale, so a
step size that suits targets of size 1 diverges on targets of size 1000.  gpunn
therefore standardises the targets as scikit-learn users do by hand with a
``TransformedTargetRegressor``: the first ``fit`` fits each column's mean and standard
deviation (:class:`TargetScaling`), the network trains on ``(y - mean) / std``, and
``predict`` undoes it, so ``predict`` answers in the targets' own units.  The
scaling is kept in the model file.

:func:`regression_metrics` scores predictions as scikit-learn does: mean squared
and absolute error over every element, and R^2 as ``r2_score`` with its default
``multioutput="uniform_average"`` (a column whose targets are all equal scores 1
when predicted exactly and 0 otherwise).

Limits: targets must be finite real numbers; standardisation statistics are those
of the first fit (later fits reuse them, as the feature scaling does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunn.errors import DataError


def regression_targets(y, n: int, outputs: int, where: str = "y") -> np.ndarray:
    """``y`` as a (n, outputs) float64 host array; DataError naming what is wrong and what to do."""
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    y = y.get() if hasattr(y, "get") else np.asarray(y)  # CuPy arrays come to the host (they are small)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where} of a regression network must hold real numbers, not {y.dtype}; "
                        f"convert it, e.g. y.astype(float)")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise DataError(f"{where} must be 1-D (samples,) or 2-D (samples, targets), got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise DataError(f"{where} has {y.shape[0]} targets but X has {n} samples; give one target row per sample")
    if y.shape[1] != outputs:
        raise DataError(f"{where} has {y.shape[1]} target columns but the network has {outputs} output units; "
                        f"make the last layer size {y.shape[1]}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise DataError(f"{where} contains NaN or infinite targets; clean the data first")
    return y


def multilabel_targets(y, n: int, outputs: int, where: str = "y") -> np.ndarray:
    """A multilabel network's targets: an (n, outputs) indicator matrix of 0s and 1s, as float64."""
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    y = y.get() if hasattr(y, "get") else np.asarray(y)
    if y.ndim != 2 or y.shape != (n, outputs):
        raise DataError(f"{where} of a multilabel network must be an indicator matrix of {n} rows and {outputs} "
                        f"columns (one per output unit), got shape {tuple(y.shape)}")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise DataError(f"{where} of a multilabel network must hold only 0s and 1s")
    return y.astype(np.float64)


@dataclass(frozen=True)
class TargetScaling:
    """Each target column's mean and standard deviation (a column of equal targets keeps std 1), and
    ``ndim``: whether the fitted targets were 1-D (n,) or 2-D (n, k), the shape predictions take."""

    mean: np.ndarray
    std: np.ndarray
    ndim: int = 2

    @classmethod
    def fit(cls, y: np.ndarray, ndim: int = 2, weights=None) -> "TargetScaling":
        """Fitted on (n, k) float64 targets, weighted by the samples' ``weights`` when given.

        A column's statistics are computed after dividing it by its largest magnitude, so
        that huge finite targets cannot overflow; ``ndim`` as given by the caller.
        """
        if not len(y):
            return cls(np.zeros(y.shape[1]), np.ones(y.shape[1]), 1 if ndim == 1 else 2)
        w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
        top = np.abs(y).max(axis=0)
        top = np.where(top > 0, top, 1.0)
        scaled = y / top
        mean = np.average(scaled, axis=0, weights=w)
        std = np.sqrt(np.average((scaled - mean) ** 2, axis=0, weights=w)) * top
        std = np.where((std > 0) & np.isfinite(std), std, 1.0)
        return cls(np.asarray(mean * top, np.float64), np.asarray(std, np.float64), 1 if ndim == 1 else 2)

    def apply(self, y: np.ndarray) -> np.ndarray:
        """(y - mean) / std: what the network trains on."""
        return (y - self.mean) / self.std

    def undo(self, outputs: np.ndarray) -> np.ndarray:
        """outputs * std + mean: the network's outputs in the targets' units (float64), (n,) for 1-D targets."""
        values = outputs.astype(np.float64) * self.std + self.mean
        return values[:, 0] if self.ndim == 1 and values.shape[1] == 1 else values

    def to_json(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std], "ndim": self.ndim}

    @classmethod
    def from_json(cls, value: dict) -> "TargetScaling":
        return cls(np.asarray(value["mean"], np.float64), np.asarray(value["std"], np.float64), value["ndim"])


def regression_metrics(predicted: np.ndarray, y: np.ndarray, weights=None) -> dict:
    """``mse``, ``mae`` and ``r2`` of (n, k) predictions against (n, k) targets, as scikit-learn scores them.

    ``weights``: optional per-sample weights (scikit-learn's ``sample_weight``).
    """
    predicted = np.asarray(predicted, np.float64).reshape(len(y), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    total = w.sum()
    if len(y) == 0 or total <= 0:
        return {"mse": float("nan"), "mae": float("nan"), "r2": float("nan")}
    error = predicted - y
    mse = float((w[:, None] * error**2).sum(axis=0).mean() / total)
    mae = float((w[:, None] * np.abs(error)).sum(axis=0).mean() / total)
    residual = (w[:, None] * error**2).sum(axis=0)
    mean = (w[:, None] * y).sum(axis=0) / total
    spread = (w[:, None] * (y - mean) ** 2).sum(axis=0)
    scores = np.where(spread > 0, 1.0 - residual / np.where(spread > 0, spread, 1.0),
                      np.where(residual == 0, 1.0, 0.0))
    return {"mse": mse, "mae": mae, "r2": float(scores.mean())}


def normalised_weights(sample_weight, n: int, where: str = "sample_weight") -> np.ndarray:
    """Per-sample weights (n,) rescaled to mean 1 (float64); DataError for bad ones.

    Each minibatch's gradient is the weighted sum of its samples' gradients divided by
    the batch size, so weights of mean 1 keep the step size of unweighted training
    (scikit-learn divides by the batch's sum of weights instead; the two agree on
    average over the batches, and exactly for a full batch).
    """
    w = np.asarray(sample_weight.get() if hasattr(sample_weight, "get") else sample_weight)
    if w.dtype.kind not in "biuf":
        raise DataError(f"{where} must hold real numbers, not {w.dtype}")
    w = w.astype(np.float64).reshape(-1) if w.ndim else np.full(n, float(w))
    if w.shape != (n,):
        raise DataError(f"{where} has {w.shape[0]} weights but X has {n} samples; give one weight per sample")
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"{where} must be finite and non-negative")
    total = w.sum()
    if not total > 0:
        raise DataError(f"{where} must hold at least one non-zero weight: they add up to 0")
    return w * (n / total)
