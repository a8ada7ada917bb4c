"""The public network: the math of :class:`gpunn.nn.mlp.MLP`, plus training, saving and export.

:class:`Network` is what users make (``gpunn.Network([784, 30, 10])``).  It sits one wing above
training and saving and calls down into them: :meth:`Network.fit` is
:func:`gpunn.training.loop.fit`, :meth:`Network.save` and pickling write the model file of
:mod:`gpunn.saving.model_file`, :meth:`Network.to_onnx` is :mod:`gpunn.saving.onnx_export`.  The
model file deals in plain parts; :func:`load` makes a Network and gives it the file's parts.
"""

from __future__ import annotations

from gpunn.nn.mlp import MLP
from gpunn.saving import model_file, onnx_export
from gpunn.training.loop import fit as _fit


class Network(MLP):
    """A fully connected network, trained by backprop and minibatch gradient descent.

    The math (parameters, forward, backprop, predictions) is :class:`gpunn.nn.mlp.MLP`'s; a
    Network adds :meth:`fit`, :meth:`save`, :meth:`to_onnx` and pickling.

    """
    __doc__ += "Args:" + MLP.__doc__.split("Args:", 1)[1]  # the same arguments, documented once

    def fit(self, X, y, epochs=30, batch_size=10, optimizer="sgd", lr=None, momentum=0.0, nesterov=False,
            betas=(0.9, 0.999), eps=1e-8, weight_decay=None, lr_scaling=None, validation_data=None,
            validation_split=0.0, callbacks=None, verbose=0, shuffle=True, progress=None, communicator=None,
            cuda_graph=True, dense=None, sample_weight=None):
        """Train ``epochs`` more epochs by minibatch gradient descent; see :func:`gpunn.training.loop.fit`."""
        return _fit(self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                    momentum=momentum, nesterov=nesterov, betas=betas, eps=eps, weight_decay=weight_decay,
                    lr_scaling=lr_scaling, validation_data=validation_data, validation_split=validation_split,
                    callbacks=callbacks, verbose=verbose, shuffle=shuffle, progress=progress,
                    communicator=communicator, cuda_graph=cuda_graph, dense=dense, sample_weight=sample_weight)

    def save(self, path, extra=None) -> None:
        """Save to one ``.npz`` file, atomically (:func:`gpunn.saving.model_file.save`); :func:`load` reads it back."""
        model_file.save(self, path, extra=extra)

    def to_onnx(self, path, classes=None) -> None:
        """Write this network as an ONNX model (:mod:`gpunn.saving.onnx_export`): ``probabilities``, ``label``
        (a regression network: ``prediction``)."""
        onnx_export.export(self, path, classes=classes)

    def __reduce__(self):
        """Pickle (and copy) as the bytes of a model file, restored onto the same backend.

        What is stored is the model file (:func:`gpunn.saving.model_file.to_bytes`): numbers and JSON, read
        back through the loader's checks, so a pickled network resumes training exactly.
        The backend is named by its label (e.g. ``cupy:0``): unpickling needs it there too;
        settings of how it runs there (:attr:`dense`) take their defaults again.
        """
        return _unpickle, (model_file.to_bytes(self), self.backend.label)


def load(path, backend=None) -> Network:
    """Load a network saved by :meth:`Network.save` onto ``backend``, ready to predict or to resume training.

    Restores the parameters, the optimizer (with its saved settings and state), the
    :class:`~gpunn.training.loop.History`, ``epochs_done`` and any recorded trajectory, so that
    ``net.fit(X, y, epochs=k, <same options>)`` continues where the saved run stopped.
    Raises :class:`~gpunn.errors.ModelFileError` for anything that is not a sound
    gpunn model file (see :mod:`gpunn.saving.model_file`).
    """
    return load_with_metadata(path, backend)[0]


def load_with_metadata(path, backend=None) -> tuple[Network, dict]:
    """Like :func:`load`, and also return the file's metadata (``metadata["extra"]`` is the caller's)."""
    parts = model_file.read(path)
    return _assemble(parts, backend), parts.metadata


def from_bytes(data: bytes, backend=None, name: str = "the pickled model") -> Network:
    """The network in a model file's bytes (:func:`gpunn.saving.model_file.to_bytes`), checked as :func:`load`
    checks a file."""
    return _assemble(model_file.read_bytes(data, name), backend)


def _assemble(parts: model_file.ModelParts, backend) -> Network:
    net = Network(**parts.architecture(), backend=backend)
    model_file.restore(net, parts)
    return net


def _unpickle(data: bytes, backend: str) -> Network:
    return from_bytes(data, backend)
