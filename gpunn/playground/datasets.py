"""The playground's two-dimensional data sets and the input features computed from them.

The generators follow TensorFlow Playground's (``src/dataset.ts``), rewritten on a
seeded NumPy generator so that a seed gives the same points every time:

``circle``  points inside radius 2.5 (class 1) and in the ring 3.5..5 (class 0);
``xor``     uniform in [-5, 5]^2 kept 0.3 away from the axes, class 1 where x1 x2 >= 0;
``gauss``   two Gaussian clusters around (2, 2) (class 1) and (-2, -2) (class 0);
``spiral``  two interleaved spirals of radius 5;
``plane``   regression: ``(x1 + x2) / 10`` on [-6, 6]^2;
``multigauss`` regression: six signed bumps, the strongest one at each point.

``noise`` (0 to 0.5) jitters the points as the original does: for the classification
sets and the regressions the label is taken at a point moved by up to ``noise`` times
the set's radius (so some points carry the other class's label); the spiral's points
themselves move; the Gaussians' variance grows from 0.5 to 4.

Labels are class indices 0/1 (the original's -1/+1) for classification, floats in
[-1, 1] for regression.  :func:`features` turns the points into the network's inputs:
any of ``x1, x2, x1^2, x2^2, x1x2, sin x1, sin x2``.
"""

from __future__ import annotations

import numpy as np

CLASSIFICATION = ("circle", "xor", "gauss", "spiral")
REGRESSION = ("plane", "multigauss")
#: The input features the page can switch on, in its order, and how each is computed from (x1, x2).
FEATURES = {
    "x1": lambda x1, x2: x1,
    "x2": lambda x1, x2: x2,
    "x1^2": lambda x1, x2: x1 * x1,
    "x2^2": lambda x1, x2: x2 * x2,
    "x1x2": lambda x1, x2: x1 * x2,
    "sin x1": lambda x1, x2: np.sin(x1),
    "sin x2": lambda x1, x2: np.sin(x2),
}
#: Half the side of the square the pictures show, as in the original.
EXTENT = 6.0


def generate(name: str, n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(points (n, 2), labels (n,))`` of data set ``name``; same arguments, same data."""
    rng = np.random.default_rng(seed)
    return _GENERATORS[name](rng, n, noise)


def _uniform(rng, low, high, n):
    return rng.uniform(low, high, n)


def _circle(rng, n, noise):
    radius = 5.0
    halves = []
    for low, high in ((0.0, radius * 0.5), (radius * 0.7, radius)):
        count = n // 2 if not halves else n - n // 2
        r, angle = _uniform(rng, low, high, count), _uniform(rng, 0, 2 * np.pi, count)
        halves.append(np.column_stack([r * np.sin(angle), r * np.cos(angle)]))
    points = np.concatenate(halves)
    moved = points + _uniform(rng, -radius, radius, (n, 2)) * noise
    labels = (np.hypot(moved[:, 0], moved[:, 1]) < radius * 0.5).astype(np.int64)
    return points, labels


def _xor(rng, n, noise):
    points = _uniform(rng, -5, 5, (n, 2))
    points += np.where(points > 0, 0.3, -0.3)
    moved = points + _uniform(rng, -5, 5, (n, 2)) * noise
    return points, (moved[:, 0] * moved[:, 1] >= 0).astype(np.int64)


def _gauss(rng, n, noise):
    variance = 0.5 + (4.0 - 0.5) * (noise / 0.5)
    half = n // 2
    positive = rng.normal(2.0, np.sqrt(variance), (half, 2))
    negative = rng.normal(-2.0, np.sqrt(variance), (n - half, 2))
    labels = np.concatenate([np.ones(half, np.int64), np.zeros(n - half, np.int64)])
    return np.concatenate([positive, negative]), labels


def _spiral(rng, n, noise):
    parts, labels = [], []
    for label, delta in ((1, 0.0), (0, np.pi)):
        count = n // 2 if label == 1 else n - n // 2
        i = np.arange(count)
        r = i / count * 5
        t = 1.75 * i / count * 2 * np.pi + delta
        x = r * np.sin(t) + _uniform(rng, -1, 1, count) * noise
        y = r * np.cos(t) + _uniform(rng, -1, 1, count) * noise
        parts.append(np.column_stack([x, y]))
        labels.append(np.full(count, label, np.int64))
    return np.concatenate(parts), np.concatenate(labels)


def _plane(rng, n, noise):
    points = _uniform(rng, -EXTENT, EXTENT, (n, 2))
    moved = points + _uniform(rng, -EXTENT, EXTENT, (n, 2)) * noise
    return points, np.clip((moved[:, 0] + moved[:, 1]) / 10.0, -1.0, 1.0)


_BUMPS = np.array([[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]], float)


def multigauss_value(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """The bump of largest magnitude at each point: sign * max(0, 1 - distance / 2)."""
    distance = np.hypot(x1[:, None] - _BUMPS[:, 0], x2[:, None] - _BUMPS[:, 1])
    values = _BUMPS[:, 2] * np.clip(1 - distance / 2, 0, 1)
    strongest = np.abs(values).argmax(axis=1)
    return values[np.arange(len(x1)), strongest]


def _multigauss(rng, n, noise):
    points = _uniform(rng, -EXTENT, EXTENT, (n, 2))
    moved = points + _uniform(rng, -EXTENT, EXTENT, (n, 2)) * noise
    return points, multigauss_value(moved[:, 0], moved[:, 1])


_GENERATORS = {"circle": _circle, "xor": _xor, "gauss": _gauss, "spiral": _spiral, "plane": _plane,
               "multigauss": _multigauss}


def features(points: np.ndarray, names) -> np.ndarray:
    """The network's inputs: one column per feature name (see :data:`FEATURES`), from 2-D ``points``."""
    x1, x2 = points[:, 0], points[:, 1]
    return np.column_stack([FEATURES[name](x1, x2) for name in names]).astype(np.float64)


def split(points: np.ndarray, labels: np.ndarray, train_fraction: float, seed: int):
    """``(train points, train labels, test points, test labels)``: a seeded shuffle, then the first
    ``train_fraction`` for training (at least one sample on each side)."""
    order = np.random.default_rng(seed + 1).permutation(len(labels))
    n_train = min(max(1, round(len(labels) * train_fraction)), len(labels) - 1)
    train, test = order[:n_train], order[n_train:]
    return points[train], labels[train], points[test], labels[test]
