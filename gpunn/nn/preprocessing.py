"""Feature scaling that is part of the model: fitted on the training set, applied to every input.

Sigmoid (and tanh) units saturate on large inputs, and every network learns badly from
features whose ranges differ by orders of magnitude: raw 0-255 pixels train a sigmoid
network to chance.  A :class:`Scaler` maps each feature ``x`` to ``(x - offset) * factor``
with per-feature numbers fitted on the training set only; the network keeps it, model
files store it, and ``predict``, ``evaluate``, ``explain``, the scikit-learn estimator and
the ONNX export apply it, so a model always sees data the way it was trained.

Methods (what ``scale=`` / ``--scale`` ask for):

``none``
    nothing is changed (the Python API's default: no Python library transforms the
    arrays it is handed unasked).
``minmax``
    each feature to [0, 1] over the training set (a constant feature becomes 0).
``standard``
    each feature to mean 0 and standard deviation 1 over the training set (a constant
    feature is only centred).
``auto`` (the command line's default, which reads files)
    8-bit pixels (a uint8 array, or whole numbers in 0..255 with some above 1) are
    divided by 255, as the MNIST loader does; features already within [0, 1] are left
    alone; anything else is standardised.  The fitted scaler says which in one line
    (:meth:`Scaler.describe`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunn.compute.backend import to_numpy

SCALINGS = ("auto", "minmax", "standard", "none")
#: What a fitted scaler does; "pixels" is what ``auto`` makes of 8-bit images.
METHODS = ("none", "minmax", "standard", "pixels")


@dataclass
class Scaler:
    """A fitted per-feature affine map ``(x - offset) * factor`` (``method`` ``none``: the identity)."""

    method: str
    offset: np.ndarray | None = None
    factor: np.ndarray | None = None

    @classmethod
    def fit(cls, X, requested: str) -> "Scaler":
        """The scaler ``requested`` (one of :data:`SCALINGS`) fitted on the training features ``X``."""
        if requested not in SCALINGS:
            raise ValueError(f"unknown scaling {requested!r}: use one of {', '.join(SCALINGS)}")
        if requested == "none":
            return cls("none")
        raw = to_numpy(X)
        n_features = raw.shape[1]
        if requested == "auto":
            if _eight_bit(raw):
                return cls("pixels", np.zeros(n_features), np.full(n_features, 1 / 255))
            if raw.size == 0 or (raw.min() >= 0 and raw.max() <= 1):
                return cls("none")
            requested = "standard"
        X64 = raw.astype(np.float64)
        if requested == "minmax":
            low, high = X64.min(axis=0), X64.max(axis=0)
            half_span = high / 2 - low / 2  # halved: high - low itself can overflow near the float64 limit
            return cls("minmax", low, 0.5 / np.where(half_span > 0, half_span, 0.5))
        # mean and standard deviation of each feature divided by its largest magnitude, so that
        # no sum or square can overflow, whatever the features' range
        magnitude = np.abs(X64).max(axis=0)
        magnitude = np.where(magnitude > 0, magnitude, 1.0)
        unit = X64 / magnitude
        mean, std = unit.mean(axis=0) * magnitude, unit.std(axis=0) * magnitude
        return cls("standard", mean, 1 / np.where(std > 0, std, 1.0))

    @property
    def identity(self) -> bool:
        return self.method == "none"

    def apply_(self, features, xp=np, feature_axis: int = 1) -> None:
        """Scale ``features`` (a float array on the backend ``xp``) in place; features along ``feature_axis``."""
        if self.identity:
            return
        shape = (1, -1) if feature_axis == 1 else (-1, 1)
        offset = xp.asarray(self.offset.reshape(shape), dtype=features.dtype)
        factor = xp.asarray(self.factor.reshape(shape), dtype=features.dtype)
        xp.subtract(features, offset, out=features)
        xp.multiply(features, factor, out=features)

    def transform(self, X) -> np.ndarray:
        """A scaled float64 copy of the host array ``X`` (samples, features); inf where a value overflows."""
        out = np.array(to_numpy(X), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            self.apply_(out)
        return out

    def describe(self, n_features: int) -> str:
        """One line saying what this scaler does, for the run's log."""
        return {
            "none": f"the {n_features} features are used as they are",
            "pixels": f"the {n_features} features look like 8-bit pixels (whole numbers 0..255): divided by 255, "
                      f"as the MNIST loader does",
            "minmax": f"each of the {n_features} features mapped to [0, 1] by the training set's min and max",
            "standard": f"each of the {n_features} features standardised to mean 0 and standard deviation 1 "
                        f"(the training set's)",
        }[self.method]

    def state(self) -> dict:
        """Arrays a model file stores (none for the identity)."""
        return {} if self.identity else {"scale_offset": self.offset, "scale_factor": self.factor}


def _eight_bit(X: np.ndarray) -> bool:
    if X.dtype == np.uint8:
        return True
    if X.size == 0 or not np.issubdtype(X.dtype, np.number) or X.min() < 0 or X.max() > 255 or X.max() <= 1:
        return False
    return bool(np.all(np.mod(X, 1) == 0))
