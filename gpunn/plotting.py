"""Pictures of a network: learning curves, first-layer weights, decision surface.

Drawn with matplotlib's Agg renderer through :class:`matplotlib.figure.Figure`
directly, so no GUI backend is touched and pyplot's global state is never used;
matplotlib is an optional extra (``pip install "gpunn[plot]"``) imported only when
a picture is asked for.  Files are written atomically (:func:`gpunn.io.atomic_write`),
as PNG, SVG or PDF according to their suffix.

Limits: the weight images need a square input (8x8 digits, 28x28 MNIST) and show at
most :data:`MAX_WEIGHT_IMAGES` neurons; the decision surface needs exactly 2 inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .data import finite_arithmetic
from .errors import GpunnError
from .io import atomic_write

FORMATS = (".png", ".svg", ".pdf")
MAX_WEIGHT_IMAGES = 100
#: Weight images per row (each about an inch wide in the 10-inch figure).
WEIGHT_COLUMNS = 10
#: Grid points per axis of the decision surface.
SURFACE_RESOLUTION = 200


def require_matplotlib():
    """Import matplotlib's Figure and Agg canvas, or say how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise GpunnError('matplotlib is not installed; install it with: pip install "gpunn[plot]"') from None
    return Figure, FigureCanvasAgg


def check_output_path(path) -> None:
    """Refuse an output name whose suffix is not a format we write, before any work is done."""
    if Path(path).suffix.lower() not in FORMATS:
        raise GpunnError(f"{path}: give the picture a {', '.join(FORMATS)} name, e.g. curves.png")


def plot_model(net, path, curves: bool = True, weights: bool = False, surface: bool = False,
               points=None, val_label: str = "validation") -> None:
    """Draw the chosen panels of ``net`` into one picture at ``path``.

    Args:
        curves: loss and accuracy per epoch from ``net.history`` (train and validation).
        weights: the first layer's weights, one small image per hidden neuron.
        surface: the predicted class over a grid of the two inputs.
        points: optional ``(X, y)`` drawn on the surface; they also set its extent
            (else the unit square).
        val_label: the legend's name for the validation data (the CLI's is the test set).
    """
    check_output_path(path)
    Figure, FigureCanvasAgg = require_matplotlib()
    panels = []
    if curves:
        _check_history(net)
        panels.append((lambda fig: _draw_curves(fig, net, val_label), 3.6))
    if weights:
        rows = _weight_grid(net)[0]
        panels.append((lambda fig: _draw_weights(fig, net), 0.95 * rows + 0.7))
    if surface:
        _check_two_inputs(net)
        panels.append((lambda fig: _draw_surface(fig, net, points), 5.5))
    if not panels:
        raise GpunnError("nothing to draw: ask for the curves, --weights or --surface")

    fig = Figure(figsize=(10, sum(height for _, height in panels)), layout="constrained")
    FigureCanvasAgg(fig)
    subfigs = fig.subfigures(len(panels), 1, squeeze=False,
                             height_ratios=[height for _, height in panels]).ravel()
    for subfig, (draw, _) in zip(subfigs, panels):
        draw(subfig)
    atomic_write(path, lambda f: fig.savefig(f, format=Path(path).suffix.lower()[1:], dpi=100))


def _check_history(net) -> None:
    if net.history is None or not net.history.epoch:
        raise GpunnError("the model has no training history to draw curves from; train it first")


def _check_two_inputs(net) -> None:
    if net.sizes[0] != 2:
        raise GpunnError(
            f"a decision surface needs a network with 2 inputs (e.g. xor); this one has {net.sizes[0]}"
        )


def _draw_curves(fig, net, val_label: str) -> None:
    history = net.history.history
    epochs = np.asarray(net.history.epoch) + 1
    from matplotlib.ticker import MaxNLocator

    marker = "o" if len(epochs) <= 40 else None
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        ax.plot(epochs, history[metric], label="train", color="tab:blue", marker=marker, markersize=3)
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=val_label, color="tab:orange",
                    marker=marker, markersize=3)
        ax.set_title(f"loss ({net.loss})" if metric == "loss" else "accuracy")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{list(net.sizes)} network, {net.epochs_done} epochs")


def _weight_grid(net) -> tuple[int, int, int, int]:
    """(rows, columns, image side, neurons shown) for the first layer's weight images."""
    n_in, hidden = net.sizes[0], net.sizes[1]
    side = math.isqrt(n_in)
    if side * side != n_in:
        raise GpunnError(
            f"weight images need a square input (64 = 8x8, 784 = 28x28); this network has {n_in} inputs"
        )
    shown = min(hidden, MAX_WEIGHT_IMAGES)
    cols = min(shown, WEIGHT_COLUMNS)
    return math.ceil(shown / cols), cols, side, shown


def _draw_weights(fig, net) -> None:
    rows, cols, side, shown = _weight_grid(net)
    W = net.get_weights()[0]  # (inputs, first-layer neurons)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for neuron, ax in enumerate(axes):
        ax.set_axis_off()
        if neuron < shown:
            image = W[:, neuron].reshape(side, side)
            scale = float(np.abs(image).max()) or 1.0
            ax.imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    more = f", first {shown} of {net.sizes[1]}" if shown < net.sizes[1] else ""
    fig.suptitle(f"first-layer weights, one image per neuron{more} (red +, blue -)")


def _draw_surface(fig, net, points) -> None:
    X, y = (None, None) if points is None else (np.asarray(points[0]), np.asarray(points[1]))
    corners = X if X is not None and len(X) else np.array([[0.0, 0.0], [1.0, 1.0]])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    margin = 0.15 * np.maximum(hi - lo, 1e-9)
    lo, hi = lo - margin, hi + margin
    gx = np.linspace(lo[0], hi[0], SURFACE_RESOLUTION)
    gy = np.linspace(lo[1], hi[1], SURFACE_RESOLUTION)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    with finite_arithmetic("the decision surface"):
        outputs = net.predict_proba(grid).astype(np.float64)
    k = outputs.shape[1]
    label = outputs.argmax(axis=1)
    # how sure: the winner's share of all output activity, rescaled so a tie is 0 and certainty 1
    share = outputs.max(axis=1) / np.maximum(outputs.sum(axis=1), 1e-12)
    strength = np.clip((share - 1 / k) / (1 - 1 / k), 0, 1)[:, None]
    colors = _class_colors(k)
    rgb = 1 - strength * (1 - colors[label])
    ax = fig.subplots()
    ax.imshow(rgb.reshape(SURFACE_RESOLUTION, SURFACE_RESOLUTION, 3), origin="lower",
              extent=(lo[0], hi[0], lo[1], hi[1]), interpolation="bilinear", aspect="equal")
    if X is not None:
        for cls in np.unique(y):
            chosen = y == cls
            ax.scatter(X[chosen, 0], X[chosen, 1], s=60, color=colors[int(cls) % len(colors)],
                       edgecolors="black", linewidths=1.2, label=f"class {int(cls)}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    ax.set_xlabel("input 1")
    ax.set_ylabel("input 2")
    fig.suptitle("decision surface: colour = predicted class, paler = less sure")


def _class_colors(k: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if k <= 10 else colormaps["hsv"].resampled(k)
    return np.array([cmap(i % cmap.N)[:3] for i in range(k)])
