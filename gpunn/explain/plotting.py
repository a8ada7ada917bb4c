"""Pictures of a network: learning curves, first-layer weights, decision surface.

Drawn with matplotlib's Agg renderer through :class:`matplotlib.figure.Figure`
directly, so no GUI backend is touched and pyplot's global state is never used;
matplotlib is an optional extra (``pip install "gpunn[plot]"``) imported only when
a picture is asked for.  Files are written atomically (:func:`gpunn.files.atomic_write`),
as PNG, SVG or PDF according to their suffix.

The loss landscape (:mod:`gpunn.explain.landscape`, computed by the caller) is drawn as the
loss's contours on a plane through the trained weights with the training path on it,
beside the accuracy per epoch, above the loss along the line from the initial weights to
the trained ones.

Limits: the weight images need a square input (8x8 digits, 28x28 MNIST) and show at
most :data:`MAX_WEIGHT_IMAGES` neurons; the decision surface needs exactly 2 inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gpunn.data.datasets import finite_arithmetic
from gpunn.errors import GpunnError
from gpunn.files import atomic_write

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
               points=None, val_label: str = "validation", landscape=None, predictions=None) -> None:
    """Draw the chosen panels of ``net`` into one picture at ``path``.

    Args:
        curves: loss and accuracy per epoch from ``net.history`` (train and validation).
        weights: the first layer's weights, one small image per hidden neuron.
        surface: the predicted class over a grid of the two inputs.
        points: optional ``(X, y)`` drawn on the surface; they also set its extent
            (else the unit square).
        val_label: the legend's name for the validation data (the CLI's is the test set).
        landscape: a :class:`gpunn.explain.landscape.Landscape` to draw (see :func:`gpunn.explain.landscape.compute`).
        predictions: a regression network's ``(true, predicted)`` values, drawn one against
            the other (one panel per target, at most four), the diagonal y = x beside them.
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
    if landscape is not None:
        panels.append((lambda fig: _draw_landscape(fig, net, landscape, val_label), 8.5))
    if predictions is not None:
        panels.append((lambda fig: _draw_predictions(fig, *predictions, val_label), 4.2))
    if not panels:
        raise GpunnError("nothing to draw: ask for the curves, --weights, --surface or --landscape")

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
    second = "r2" if net.task == "regression" else "accuracy"  # regression: R^2 of the validation data
    for ax, metric in zip(fig.subplots(1, 2), ("loss", second)):
        if metric in history:
            ax.plot(epochs, history[metric], label="train", color="tab:blue", marker=marker, markersize=3)
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label=val_label, color="tab:orange",
                    marker=marker, markersize=3)
        ax.set_title({"loss": f"loss ({net.loss})", "accuracy": "accuracy", "r2": "R²"}[metric])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{list(net.sizes)} network, {net.epochs_done} epochs")


def _draw_predictions(fig, true, predicted, val_label: str) -> None:
    """Predicted against true values, per target column (at most four), with the line y = x."""
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(true), -1)
    columns = min(true.shape[1], 4)
    for k, ax in enumerate(np.atleast_1d(fig.subplots(1, columns))):
        ax.scatter(true[:, k], predicted[:, k], s=8, alpha=0.6, color="tab:blue")
        low, high = float(min(true[:, k].min(), predicted[:, k].min())), float(max(true[:, k].max(),
                                                                                   predicted[:, k].max()))
        ax.plot([low, high], [low, high], color="tab:gray", linestyle="--", label="y = x")
        ax.set_xlabel("true value")
        ax.set_ylabel("predicted")
        ax.set_title(f"target {k + 1} ({val_label})" if columns > 1 else f"predicted against true ({val_label})")
        ax.grid(alpha=0.3)
        ax.legend()


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


def _draw_landscape(fig, net, landscape, val_label: str) -> None:
    grid = fig.add_gridspec(2, 2, width_ratios=(1.5, 1), height_ratios=(1.7, 1))
    _draw_plane(fig.add_subplot(grid[0, 0]), landscape)
    _draw_accuracy(fig.add_subplot(grid[0, 1]), net, val_label)
    _draw_interpolation(fig.add_subplot(grid[1, :]), landscape)
    fig.suptitle(f"loss landscape of the {list(net.sizes)} network ({net.loss} loss, measured on "
                 f"{landscape.samples} training samples)")


def _draw_plane(ax, landscape) -> None:
    from matplotlib.colors import LogNorm

    loss = landscape.loss
    low, high = float(loss.min()), float(loss.max())
    if low > 0 and high / low > 20:  # orders of magnitude: contours spaced by ratio
        levels, norm = np.geomspace(low, high, 22), LogNorm(low, high)
    else:
        levels, norm = np.linspace(low, high + 1e-12, 22), None
    filled = ax.contourf(landscape.alphas, landscape.betas, loss, levels=levels, norm=norm, cmap="viridis")
    ax.contour(landscape.alphas, landscape.betas, loss, levels=levels[::3], norm=norm, colors="white",
               linewidths=0.5, alpha=0.6)
    ax.figure.colorbar(filled, ax=ax, format="%.3g").ax.set_title("loss", fontsize=9)
    if landscape.path is not None:
        x, y = landscape.path[:, 0], landscape.path[:, 1]
        ax.plot(x, y, color="tab:red", linewidth=1.5, zorder=3)
        ax.scatter(x, y, c=np.arange(len(x)), cmap="autumn", s=22, edgecolors="black", linewidths=0.5, zorder=4)
        step = max(1, len(x) // 8)
        for i in range(0, len(x) - 1, step):  # arrows show the direction of travel
            ax.annotate("", xy=(x[i + 1], y[i + 1]), xytext=(x[i], y[i]), zorder=4,
                        arrowprops={"arrowstyle": "->", "color": "tab:red", "linewidth": 1.5})
        ax.annotate(f"start (epoch {landscape.path_epochs[0]})", (x[0], y[0]), textcoords="offset points",
                    xytext=(6, 6), color="white", fontsize=9, fontweight="bold")
    ax.scatter([0], [0], marker="*", s=180, color="white", edgecolors="black", zorder=5,
               label="trained weights")
    ax.legend(loc="lower right", fontsize=8)
    if landscape.method == "pca":
        first, second = landscape.explained
        ax.set_xlabel(f"1st principal direction of the path ({first:.0%} of its variance)")
        ax.set_ylabel(f"2nd principal direction ({second:.0%})")
        ax.set_title("the path of training across the loss (PCA plane)")
    else:
        ax.set_xlabel("random direction 1 (filter-normalised)")
        ax.set_ylabel("random direction 2 (filter-normalised)")
        ax.set_title("loss around the trained weights (no trajectory recorded)")


def _draw_accuracy(ax, net, val_label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    history = net.history
    if history is None or not history.epoch:
        ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    epochs = np.asarray(history.epoch) + 1
    ax.plot(epochs, history.history["accuracy"], label="train", color="tab:blue", marker="o", markersize=3)
    if "val_accuracy" in history.history:
        ax.plot(epochs, history.history["val_accuracy"], label=val_label, color="tab:orange", marker="o",
                markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _draw_interpolation(ax, landscape) -> None:
    alphas = landscape.interpolation_alphas
    ax.plot(alphas, landscape.interpolation_loss, color="tab:purple", label="loss")
    if landscape.interpolation_loss.min() > 0 and np.ptp(np.log10(landscape.interpolation_loss)) > 1.5:
        ax.set_yscale("log")
    ax.set_ylabel("loss", color="tab:purple")
    twin = ax.twinx()
    twin.plot(alphas, landscape.interpolation_accuracy, color="tab:green", linestyle="--", label="accuracy")
    twin.set_ylabel("accuracy", color="tab:green")
    twin.set_ylim(0, 1.02)
    for alpha, name in ((0, "initial weights"), (1, "trained weights")):
        ax.axvline(alpha, color="grey", linestyle=":", linewidth=1)
        ax.annotate(name, (alpha, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlabel("α: the weights (1 - α)·initial + α·trained")
    ax.set_title("along the straight line from the initial to the trained weights (Goodfellow et al. 2015)")
    ax.grid(alpha=0.3)


def _class_colors(k: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if k <= 10 else colormaps["hsv"].resampled(k)
    return np.array([cmap(i % cmap.N)[:3] for i in range(k)])
