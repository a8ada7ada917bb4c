"""Take it with you: the command line (or the Python) that reproduces a playground run.

``gpunn train`` on the data file the page saves (``playground-data.npz``, with its own test
set) trains the same network epoch for epoch: the same seed, data, order and arithmetic
(NumPy, float32, SGD without per-layer step sizes), since ``fit(epochs=k)`` equals k one-epoch
fits.  ``gpunn train`` reads class labels only, so a regression run gets the Python lines that
do the same.  Weights set by hand are not part of either.
"""

from __future__ import annotations


def command_line(s, net, scale: str, problem: str) -> str:
    """The reproduction of a run of ``net`` trained with settings ``s`` (input scaling ``scale``)."""
    if problem == "regression":
        return python_lines(s, net)
    sizes = ",".join(map(str, net.sizes))
    parts = ["gpunn train --dataset playground-data.npz", f"--layers {sizes}", f"--activation {net.activation}",
             f"--output-activation {net.output_activation}", f"--loss {net.loss}", f"--init {net.init}",
             f"--optimizer {s.optimizer}", f"--lr {s.lr:g}", f"--batch-size {s.batch}",
             f"--epochs {max(net.epochs_done, 1)}", f"--seed {s.seed}", f"--scale {scale}",
             "--backend numpy --dtype float32"]
    if s.optimizer == "sgd":
        parts.append("--lr-scaling none")
    if s.momentum:
        parts.append(f"--momentum {s.momentum:g}")
    if s.weight_decay:
        parts.append(f"--weight-decay {s.weight_decay:g}")
    return " ".join(parts)


def python_lines(s, net) -> str:
    """Python that trains the same network on the saved data (``fit(epochs=k)`` equals k one-epoch fits)."""
    options = [f"epochs={max(net.epochs_done, 1)}", f"batch_size={s.batch}", f"optimizer={s.optimizer!r}",
               f"lr={s.lr!r}"]
    if s.optimizer == "sgd":
        options.append('lr_scaling="none"')
    if s.momentum:
        options.append(f"momentum={s.momentum!r}")
    if s.weight_decay:
        options.append(f"weight_decay={s.weight_decay!r}")
    return "\n".join([
        "import numpy as np, gpunn",
        'd = np.load("playground-data.npz")',
        f"net = gpunn.Network({list(net.sizes)}, activation={net.activation!r}, "
        f"output_activation={net.output_activation!r}, init={net.init!r}, backend=\"numpy\", seed={s.seed})",
        f'net.fit(d["X"], d["y"], {", ".join(options)})',
    ])
