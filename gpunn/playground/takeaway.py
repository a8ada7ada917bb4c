"""Take it with you: the command line that reproduces a playground run.

``gpunn train`` on the data file the page saves (``playground-data.npz``, with its own test
set) trains the same network epoch for epoch: the same seed, data, order and arithmetic
(NumPy, float32, SGD without per-layer step sizes), since ``fit(epochs=k)`` equals k one-epoch
fits.  A regression run adds ``--task regression`` (the file's ``y`` holds float targets).
Weights set by hand are not part of it.
"""

from __future__ import annotations


def command_line(s, net, scale: str, problem: str) -> str:
    """The ``gpunn train`` command that reproduces a run of ``net`` trained with settings ``s``
    (input scaling ``scale``) on the saved data."""
    sizes = ",".join(map(str, net.sizes))
    parts = ["gpunn train --dataset playground-data.npz"]
    if problem == "regression":
        parts.append("--task regression")
    parts += [f"--layers {sizes}", f"--activation {net.activation}",
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
