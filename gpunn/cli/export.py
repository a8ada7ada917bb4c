"""``gpunn export MODEL OUT.onnx``: a saved model as an ONNX model, for ONNX Runtime and other tools.

The model file is read as ``gpunn evaluate`` reads it (a bad file is refused with the
same one-line error); the graph is described in :mod:`gpunn.saving.onnx_export`.  The output
name is checked before anything is read: it must end in ``.onnx`` (so that swapped
arguments cannot overwrite the model file), its folder must exist, and it must not be
a folder (click refuses that as a usage error).  The file is
written atomically.
"""

from __future__ import annotations

from pathlib import Path

import click

from gpunn.errors import GpunnError


def check_onnx_path(path) -> None:
    """Refuse an output name that is not a writable ``.onnx`` file name, before any work is done."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise GpunnError(f"{path}: give the ONNX file a .onnx name, e.g. model.onnx (MODEL comes first, then OUT)")
    if not path.parent.is_dir():
        raise GpunnError(f"cannot write {path}: there is no folder {path.parent}; create it first")


@click.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
def export(model, out):
    """Write MODEL (.npz) as an ONNX model OUT (.onnx): input `input`, outputs `probabilities` and `label`.

    The graph holds the model's feature scaling, its layers (Gemm and the activation)
    and its class labels; ONNX Runtime runs it and gives the probabilities and labels
    that the model gives in gpunn.  Needs `pip install "gpunn[onnx]"`.
    """
    from gpunn.network import load_with_metadata
    from gpunn.saving.onnx_export import OPSET, export as write_onnx, require_onnx

    check_onnx_path(out)
    require_onnx()
    net, _ = load_with_metadata(model, backend="numpy")
    write_onnx(net, out)
    outputs = (f"output prediction (batch{', ' + str(net.sizes[-1]) if net.target_scaling.ndim == 2 else ''})"
               if net.task == "regression" else f"outputs probabilities (batch, {net.sizes[-1]}) and label")
    click.echo(f"wrote {out}: ONNX opset {OPSET}, {net.dtype.name}, input (batch, {net.sizes[0]}), {outputs}",
               err=True)
