"""What the page draws, computed by gpunn: every neuron's value over a grid of the picture's plane.

A picture spans two data columns (x1 and x2 of the generated sets; the two picked
columns of user data, every other column held at its training mean).  Each grid point
becomes a sample, the features the network takes are computed from it, and gpunn's own
forward pass (:meth:`gpunn.Network.forward`, after its input scaling) gives every
layer's outputs at every grid point at once: the heatmap each neuron draws in its node,
and the output layer's, under the data points, as the decision surface.

Pictures are float32 arrays, row-major, first row at the top (the largest x2).  Only
the neurons the page draws (:data:`MAX_DRAWN` per layer) are sent; the page says how
many more a layer has.
"""

from __future__ import annotations

import numpy as np

from gpunn.playground.datasets import EXTENT, features

#: Grid points per side of every neuron's picture.
GRID = 50
#: Neurons drawn per layer (the page draws these, and says how many it leaves out).
MAX_DRAWN = 16


class Plane:
    """The picture's plane: grid points in data coordinates, and how to make network inputs of them."""

    def __init__(self, x_range, y_range, make_inputs, grid: int = GRID):
        self.x_range, self.y_range, self.grid = tuple(map(float, x_range)), tuple(map(float, y_range)), grid
        xs = np.linspace(*self.x_range, grid)
        ys = np.linspace(self.y_range[1], self.y_range[0], grid)  # top row: largest x2
        gx, gy = np.meshgrid(xs, ys)
        self.points = np.column_stack([gx.ravel(), gy.ravel()])
        #: the network's inputs at each grid point, one row per point
        self.inputs = make_inputs(self.points)


def generated_plane(feature_names) -> Plane:
    """The square [-6, 6]^2 of the generated data sets."""
    return Plane((-EXTENT, EXTENT), (-EXTENT, EXTENT), lambda points: features(points, feature_names))


def user_plane(X_train: np.ndarray, columns: tuple) -> Plane:
    """Two picked columns of user data over their range (padded by 5%), the others at their means."""
    a, b = columns
    means = X_train.mean(axis=0)

    def inputs(points):
        rows = np.repeat(means[None, :], len(points), axis=0)
        rows[:, a], rows[:, b] = points[:, 0], points[:, 1]
        return rows

    ranges = []
    for column in (a, b):
        low, high = float(X_train[:, column].min()), float(X_train[:, column].max())
        pad = 0.05 * (high - low) or 0.5
        ranges.append((low - pad, high + pad))
    return Plane(ranges[0], ranges[1], inputs)


def layer_values(net, samples, count: int) -> list[np.ndarray]:
    """Every layer's outputs, (units, count), for ``samples`` made by ``net.device_samples``.

    The inputs as the network sees them (after its scaling), each hidden layer's
    activations, and the output layer's (softmax probabilities on a softmax layer).
    """
    ws = net.workspace(count)
    ws.set_inputs(samples, 0, count)
    net.forward(ws)
    values = [np.array(a[:-1], dtype=np.float32) for a in ws.acts]
    if net.output_activation == "softmax":
        logits = values[-1].astype(np.float64)
        logits -= logits.max(axis=0, keepdims=True)
        e = np.exp(logits)
        values[-1] = (e / e.sum(axis=0, keepdims=True)).astype(np.float32)
    return values


def drawn(width: int) -> int:
    """How many of a layer's ``width`` neurons are drawn."""
    return min(width, MAX_DRAWN)
