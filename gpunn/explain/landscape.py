"""The loss landscape around a trained network, and the path training took across it.

The loss is a function of every parameter at once, tens of thousands of dimensions, so
it is looked at on a plane through the trained weights ``theta*``:
``L(a, b) = loss(theta* + a d1 + b d2)`` over a grid of ``(a, b)``, drawn as contours
(:func:`plane`), with the recorded training path projected onto the plane: the ball
rolling downhill.  And along the straight line from the initial weights ``theta0`` to
the trained ones, ``loss((1 - a) theta0 + a theta*)`` (:func:`interpolation`; Goodfellow,
Vinyals and Saxe, "Qualitatively characterizing neural network optimization problems",
ICLR 2015).

Which plane.  When the trajectory was recorded (``gpunn train --record-trajectory``),
``d1`` and ``d2`` are its top two principal directions: the right singular vectors of
the snapshots minus the final weights (not mean-centred, so the plane passes through
``theta*`` and the last point of the path is its origin).  Li, Xu, Taylor, Studer and
Goldstein ("Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018, section 7)
show why: two random directions in a high-dimensional space are almost orthogonal to
the path, whose projection onto them barely moves; the principal directions hold most
of the path's movement (the share is reported), so the path drawn is the path taken.
Without a trajectory there is no path to follow, and the plane is spanned by two random
directions, filter-normalised as Li et al. do: each neuron's incoming weights in the
direction are scaled to the norm of that neuron's weights in ``theta*``, biases left at
0, so that the picture's scale means the same for every layer.

How it is computed.  :func:`losses` evaluates the loss and accuracy of many parameter
vectors on one fixed data subset at once, on the network's backend (NumPy or CuPy):
each layer is one batched matrix product over (parameter vectors, samples), chunked so
that a chunk stays within :data:`CHUNK_BYTES`.  No Python loop runs over samples or grid
points; the loss is the network's own (mean per sample, as :meth:`Network.evaluate`).

Limits: the picture is a 2-D slice of a landscape of many dimensions (what lies off the
plane is not seen); the loss is measured on a subset of the training data
(:data:`DEFAULT_SAMPLES` samples by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunn.compute.backend import to_numpy
from gpunn.network import Network
from gpunn.compute.ops import CROSS_ENTROPY_FLOOR

#: Grid points per axis of the plane.
DEFAULT_RESOLUTION = 25
#: Samples of the training set the landscape is measured on.
DEFAULT_SAMPLES = 1000
#: Points of the interpolation from the initial weights (alpha 0) to the trained ones (alpha 1).
INTERPOLATION = np.linspace(-0.25, 1.25, 31)
#: Largest working set of one chunk of parameter vectors (their copies and activations).
CHUNK_BYTES = 128 << 20
#: The grid extends this fraction of the path's extent beyond it on every side.
MARGIN = 0.25


@dataclass
class Landscape:
    """What :func:`compute` measured; the plane's coordinates are in units of its directions."""

    method: str  #: "pca" (the trajectory's principal directions) or "random" (filter-normalised)
    explained: tuple | None  #: the share of the path's squared length each PCA direction holds
    alphas: np.ndarray  #: grid coordinates along d1
    betas: np.ndarray  #: grid coordinates along d2
    loss: np.ndarray  #: (len(betas), len(alphas)) mean loss per sample on the plane
    accuracy: np.ndarray  #: same shape: the share of the subset answered right
    path: np.ndarray | None  #: (snapshots, 2) the trajectory projected onto the plane; the last is (0, 0)
    path_epochs: list | None  #: the epochs done at each snapshot
    path_loss: np.ndarray | None  #: the loss of each snapshot itself (off the plane)
    interpolation_alphas: np.ndarray
    interpolation_loss: np.ndarray
    interpolation_accuracy: np.ndarray
    samples: int  #: the size of the data subset


def compute(net: Network, X, y, resolution: int = DEFAULT_RESOLUTION, samples: int = DEFAULT_SAMPLES,
            seed: int = 0) -> Landscape:
    """The landscape of ``net`` on a fixed random subset of ``(X, y)`` (see the module docstring).

    ``X`` and ``y`` are as :meth:`Network.evaluate` takes them: raw features (the network's
    scaler is applied here) and labels as written.
    """
    X, labels = _subset(np.asarray(X), net.label_indices(y, len(y)), samples, seed)
    X = net.scaler.transform(X) if net.scaler is not None else X
    final = to_numpy(net.params).astype(np.float64)
    snapshots, epochs = _path(net, final)
    if snapshots is not None and len(snapshots) >= 2:
        directions, explained = pca_directions(snapshots, final)
        method, path = "pca", project(snapshots, final, directions)
        low, high = np.minimum(path.min(axis=0), 0), np.maximum(path.max(axis=0), 0)
        extent = np.maximum(high - low, 1e-12)
        low, high = low - MARGIN * extent, high + MARGIN * extent
        path_loss, _ = losses(net, snapshots, X, labels)
    else:
        directions, explained = random_directions(net, seed), None
        method, path, epochs, path_loss = "random", None, None, None
        low, high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    alphas, betas = (grid_axis(low[i], high[i], resolution) for i in (0, 1))
    loss, accuracy = plane(net, final, directions, alphas, betas, X, labels)
    start = snapshots[0] if snapshots is not None else initial_parameters(net)
    line = (1 - INTERPOLATION[:, None]) * start + INTERPOLATION[:, None] * final
    interpolation_loss, interpolation_accuracy = losses(net, line, X, labels)
    return Landscape(method=method, explained=explained, alphas=alphas, betas=betas, loss=loss, accuracy=accuracy,
                     path=path, path_epochs=epochs, path_loss=path_loss, interpolation_alphas=INTERPOLATION.copy(),
                     interpolation_loss=interpolation_loss, interpolation_accuracy=interpolation_accuracy,
                     samples=len(labels))


def grid_axis(low: float, high: float, resolution: int) -> np.ndarray:
    """About ``resolution`` evenly spaced points covering [low, high] (low <= 0 <= high), 0 among them,
    so that the grid measures the trained weights themselves."""
    step = (high - low) / max(resolution - 1, 1)
    return step * np.arange(np.floor(low / step + 1e-9), np.ceil(high / step - 1e-9) + 1)


def _subset(X, labels, samples: int, seed: int):
    if len(labels) <= samples:
        return X, labels
    chosen = np.sort(np.random.default_rng(seed).choice(len(labels), size=samples, replace=False))
    return X[chosen], labels[chosen]


def _path(net: Network, final: np.ndarray):
    """The trajectory's snapshots (float64) and epochs, ending at the network's own weights; None without one."""
    trajectory = net.trajectory
    if trajectory is None or not len(trajectory):
        return None, None
    snapshots, epochs = trajectory.params.astype(np.float64), list(trajectory.epochs)
    if not np.array_equal(snapshots[-1], final):  # trained (or changed) after the last snapshot
        snapshots, epochs = np.vstack([snapshots, final]), epochs + [net.epochs_done]
    return snapshots, epochs


def initial_parameters(net: Network) -> np.ndarray:
    """The weights training started from: those the network's seed and init give (float64)."""
    fresh = Network(net.sizes, activation=net.activation, output_activation=net.output_activation, loss=net.loss,
                    init=net.init, backend="numpy", dtype=net.dtype.name, seed=net.seed)
    return fresh.params.astype(np.float64)


def pca_directions(snapshots: np.ndarray, final: np.ndarray) -> tuple[np.ndarray, tuple]:
    """(2, parameters) orthonormal top principal directions of ``snapshots - final``, and the share
    of the squared distances each holds.  A path along one line gets a second direction at random,
    orthogonal to the first (its share is 0)."""
    offsets = snapshots - final
    _, singular, rows = np.linalg.svd(offsets, full_matrices=False)
    total = float(np.sum(singular**2)) or 1.0
    directions = rows[:2].copy()
    shares = [float(s**2 / total) for s in singular[:2]]
    if len(directions) < 2 or singular[1] <= 1e-12 * max(singular[0], 1e-300):
        other = np.random.default_rng(0).standard_normal(final.size)
        other -= (other @ directions[0]) * directions[0]
        directions = np.vstack([directions[:1], other / np.linalg.norm(other)])
        shares = [shares[0], 0.0]
    return directions, tuple(shares)


def project(points: np.ndarray, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(points, 2) coordinates of ``points - origin`` on orthonormal ``directions`` (least squares)."""
    return (points - origin) @ directions.T


def random_directions(net: Network, seed: int = 0) -> np.ndarray:
    """(2, parameters) random directions, filter-normalised (Li et al. 2018): per neuron, the direction
    of its incoming weights has the norm of its weights in the network; biases are 0."""
    rng = np.random.default_rng(seed)
    weights = [block[:-1] for block in net.layout.blocks(to_numpy(net.params).astype(np.float64))]
    directions = np.zeros((2, net.layout.size))
    for direction in directions:
        for W, block in zip(weights, net.layout.blocks(direction)):
            d = rng.standard_normal(W.shape)
            d *= np.linalg.norm(W, axis=0) / np.maximum(np.linalg.norm(d, axis=0), 1e-300)
            block[:-1] = d
    return directions


def plane(net: Network, origin, directions, alphas, betas, X, labels) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy at ``origin + a d1 + b d2`` for every (b, a) of the grid: (len(betas), len(alphas))."""
    a, b = np.meshgrid(alphas, betas)
    coefficients = np.stack([a.ravel(), b.ravel()], axis=1)
    loss, accuracy = losses(net, Offsets(origin, directions, coefficients), X, labels)
    return loss.reshape(a.shape), accuracy.reshape(a.shape)


class Offsets:
    """Parameter vectors ``origin + coefficients @ directions``, made a chunk at a time."""

    def __init__(self, origin, directions, coefficients):
        self.origin, self.directions, self.coefficients = origin, directions, coefficients

    def __len__(self) -> int:
        return len(self.coefficients)

    def __getitem__(self, chunk: slice) -> np.ndarray:
        return self.origin + self.coefficients[chunk] @ self.directions


def losses(net: Network, thetas, X, labels) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss per sample and accuracy of ``net``'s architecture with each parameter vector in ``thetas``.

    ``thetas``: (vectors, parameters) host array, or :class:`Offsets`; ``X`` the network's
    inputs (already scaled), ``labels`` class indices.  Runs on the network's backend in its
    dtype, a chunk of vectors at a time (see :data:`CHUNK_BYTES`).
    """
    backend, xp, dtype = net.backend, net.backend.xp, net.dtype
    n, widest = len(labels), max(net.sizes[1:])
    per_vector = dtype.itemsize * (2 * net.layout.size + 3 * n * widest)
    chunk = max(1, min(len(thetas), CHUNK_BYTES // per_vector))
    loss, accuracy = np.empty(len(thetas)), np.empty(len(thetas))
    with backend.device():
        inputs = xp.asarray(X, dtype=dtype)
        targets = xp.asarray(labels, dtype=np.int64)
        for start in range(0, len(thetas), chunk):
            stop = min(start + chunk, len(thetas))
            params = xp.asarray(thetas[start:stop], dtype=dtype)
            outputs = _forward(net, params, inputs)
            chunk_loss, chunk_accuracy = _score(net, outputs, targets)
            loss[start:stop], accuracy[start:stop] = to_numpy(chunk_loss), to_numpy(chunk_accuracy)
    return loss, accuracy


def _forward(net: Network, params, inputs):
    """(vectors, samples, outputs): the output layer for every parameter vector (logits for softmax).

    The first layer, whose inputs all vectors share, is one matrix product with every
    vector's weights side by side, (samples, inputs) x (inputs, vectors * units): six times
    faster on NumPy than a batched product of many thin ones.  Later layers are batched.
    """
    xp = net.backend.xp
    k, n = params.shape[0], inputs.shape[0]
    offsets = net.layout.offsets()
    a = None
    for layer, kind in enumerate(net.layer_activations):
        rows, cols = net.layout.block_shape(layer)
        block = params[:, offsets[layer]:offsets[layer + 1]].reshape(k, rows, cols)
        if a is None:
            side_by_side = xp.ascontiguousarray(block[:, :-1].transpose(1, 0, 2)).reshape(rows - 1, k * cols)
            z = (inputs @ side_by_side).reshape(n, k, cols).transpose(1, 0, 2)
        else:
            z = xp.matmul(a, block[:, :-1])
        a = _activate(xp, z + block[:, -1:], kind)  # (vectors, samples, units): y_in W + b, then f
    return a


def _activate(xp, z, kind: str):
    if kind == "sigmoid":
        return 0.5 * xp.tanh(0.5 * z) + 0.5  # the form the kernels use: no overflow
    if kind == "tanh":
        return xp.tanh(z)
    if kind == "relu":
        return xp.maximum(z, 0)
    return z  # identity: a softmax layer's logits, normalised by the loss


def _score(net: Network, outputs, labels):
    """Mean loss per sample and accuracy of each vector's outputs (vectors, samples, classes)."""
    xp = net.backend.xp
    classes = outputs.shape[-1]
    one_hot = (xp.arange(classes)[None, :] == labels[:, None]).astype(outputs.dtype)  # (samples, classes)
    if net.objective == "quadratic":
        per_sample = 0.5 * xp.sum((outputs - one_hot) ** 2, axis=-1)
    elif net.objective == "cross_entropy":
        per_sample = -xp.sum(xp.log(xp.maximum(1 - xp.abs(outputs - one_hot), CROSS_ENTROPY_FLOOR)), axis=-1)
    else:  # softmax cross-entropy from the max-shifted logits
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        per_sample = xp.log(xp.sum(xp.exp(shifted), axis=-1)) - xp.sum(shifted * one_hot, axis=-1)
    correct = xp.argmax(outputs, axis=-1) == labels[None, :]
    return per_sample.astype(np.float64).mean(axis=-1), correct.astype(np.float64).mean(axis=-1)
