"""The network: layers of sigmoid neurons, their parameters, forward pass and backprop.

A neuron computes a weighted sum of its inputs plus a bias, ``v = sum_i x_i w_i + b``,
and squashes it with the sigmoid, ``y = sigma(v)``.  A layer does that for many
neurons at once and for a whole minibatch at once: with the examples as the columns
of ``A_prev`` (units x samples), the layer's output is ``A = sigma(W^T A_prev + b)``.
The most active node of the last layer is the network's answer.

Parameters live in ONE flat buffer (:class:`ParameterLayout`): for each layer the
weights ``W`` (inputs x outputs, row-major) followed by the biases ``b``, so that the
block is the matrix ``[W; b]`` with the bias as its last row.  The gradients live in a
second flat buffer with the same layout.  The SGD update is then one fused operation
over the whole buffer, and a data-parallel all-reduce is one call.

Activations carry an extra row of ones (:class:`Workspace`), so the gradient of
every ``[W; b]`` block is one product, ``[A_prev; 1] delta^T``: the bias gradient
falls out as its last row.  On NumPy the bias is folded into the forward product
too, ``[W; b]^T [A_prev; 1]``, which saves one pass per layer; on the GPU backends
the forward product leaves the bias out and the fused ``bias_sigmoid`` kernel adds
it together with the sigmoid.

Limits: fully connected sigmoid layers only; float32 or float64; no autograd engine:
backprop is written out layer by layer, exactly as the chain rule says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import Backend, get_backend, to_numpy
from .errors import DataError
from .memory import check_network_fits
from .ops import LOSSES

INITS = ("normal", "scaled")
DTYPES = ("float32", "float64")
#: Samples per forward pass in predict / evaluate.
EVAL_CHUNK = 1024


@dataclass(frozen=True)
class ParameterLayout:
    """Where each layer's ``[W; b]`` block sits in the flat parameter buffer."""

    sizes: tuple[int, ...]

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def block_shape(self, layer: int) -> tuple[int, int]:
        return (self.sizes[layer] + 1, self.sizes[layer + 1])

    def offsets(self) -> list[int]:
        offsets, total = [], 0
        for layer in range(self.n_layers):
            offsets.append(total)
            rows, cols = self.block_shape(layer)
            total += rows * cols
        return offsets + [total]

    @property
    def size(self) -> int:
        return self.offsets()[-1]

    def blocks(self, flat):
        """Per-layer ``[W; b]`` views of a flat buffer (no copies)."""
        offsets = self.offsets()
        return [
            flat[offsets[layer] : offsets[layer + 1]].reshape(self.block_shape(layer))
            for layer in range(self.n_layers)
        ]


def check_sizes(sizes) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2:
        raise ValueError(f"a network needs at least an input and an output layer, got sizes {list(sizes)}")
    if min(sizes) < 1:
        raise ValueError(f"every layer needs at least one unit, got sizes {list(sizes)}")
    return sizes


def _all_finite(xp, array) -> bool:
    """True when no element is NaN or infinite, without a data-sized temporary.

    A float64 sum is finite for finite float32 data; only when it is not (NaN, inf,
    or float64 values near overflow) is the exact element-wise check paid for.
    """
    total = xp.sum(array, dtype=np.float64)
    return bool(xp.isfinite(total)) or bool(xp.isfinite(array).all())


class Workspace:
    """Preallocated buffers for forward and backward passes over ``m`` samples.

    ``acts[l]`` is an ``(sizes[l] + 1, m)`` matrix: the layer's activations with a row
    of ones beneath them; ``acts[l][:-1]`` is the activation proper.  ``deltas[l]``
    holds dE/dz for layer ``l`` (``deltas[0]`` is unused).  ``labels`` (kernel backends)
    or ``targets`` (one-hot, NumPy) hold the batch's answers.

    On NumPy the training data is kept one sample per row, ``[x, 1, t]`` (features, the
    ones column of the folded bias, the one-hot target; see :meth:`Network.device_samples`),
    and so is the input buffer ``rows``: one ``take`` of whole rows gathers a batch
    (gathering 10 scattered columns from 50,000 samples instead costs 20x more, all in
    cache misses).  ``acts[0]`` and ``targets`` are transposed views into ``rows``, which
    BLAS and the ufuncs take as they are.
    """

    def __init__(self, backend: Backend, sizes, m: int, dtype, numpy_layout: bool):
        xp = backend.xp
        n_in, classes = sizes[0], sizes[-1]
        with backend.device():
            self.acts = []
            for n in sizes:
                a = xp.empty((n + 1, m), dtype=dtype)
                a[-1] = 1
                self.acts.append(a)
            self.rows = self.targets = None
            if numpy_layout:
                self.rows = xp.empty((m, n_in + 1 + classes), dtype=dtype)
                self.rows[:, n_in] = 1
                self.acts[0] = self.rows[:, : n_in + 1].T
                self.targets = self.rows[:, n_in + 1 :].T
            self.deltas = [None] + [xp.empty((n, m), dtype=dtype) for n in sizes[1:]]
            self.labels = xp.empty(m, dtype=np.int32)
        self.m = m
        #: the input layer's activations, (inputs, m), and the network's outputs, (classes, m)
        self.inputs = self.acts[0][:-1]
        self.outputs = self.acts[-1][:-1]
        self._views = None

    def views(self, network) -> "_StepViews":
        """The views of ``network``'s parameters and these buffers that one step uses (made once)."""
        if self._views is None:
            self._views = _StepViews(network, self)
        return self._views

    def set_inputs(self, samples, start: int, stop: int) -> None:
        """Copy samples ``start:stop`` (in the layout of :meth:`Network.device_samples`) in."""
        if self.rows is not None:
            self.rows[...] = samples[start:stop]
        else:
            self.inputs[...] = samples[:, start:stop]

    def gather(self, backend: Backend, samples, labels, index) -> None:
        """Gather the samples (columns) and labels at ``index`` (kernel backends' layout)."""
        backend.take(samples, index, self.inputs, axis=1)
        backend.take(labels, index, self.labels)


class _StepViews:
    """Every view a forward and backward pass uses, made once per workspace.

    At batch 10 a NumPy step is ~25 calls of about a microsecond each, and making the
    same slices and transposes anew at every step cost a sixth of it again.  The
    parameter views stay valid because parameters are only ever updated in place.
    """

    def __init__(self, network, ws: Workspace):
        blocks, acts, deltas = network.blocks, ws.acts, ws.deltas
        #: per layer, first to last: ([W; b]^T, [A_prev; 1], Z out)
        self.forward = [(block.T, acts[layer], acts[layer + 1][:-1]) for layer, block in enumerate(blocks)]
        #: NumPy: scratch shaped like each layer's activations (None for the inputs), the
        #: fused ops' temporaries; the kernels need none
        numpy_layout = ws.rows is not None
        self.scratch = [None] + [np.empty_like(d) if numpy_layout else None for d in deltas[1:]]
        #: per layer, last to first: ([A_prev; 1], delta^T, gradient block out, W, delta,
        #: delta of the layer below (None for the first layer), A_prev, scratch like A_prev)
        self.backward = []
        for layer in range(len(blocks), 0, -1):
            below = deltas[layer - 1] if layer > 1 else None
            self.backward.append((acts[layer - 1], deltas[layer].T, network.grad_blocks[layer - 1],
                                  blocks[layer - 1][:-1], deltas[layer], below, acts[layer - 1][:-1],
                                  self.scratch[layer - 1]))


class Network:
    """A fully connected network of sigmoid layers, trained by backprop and minibatch SGD.

    Args:
        sizes: units per layer, input first, e.g. ``[784, 30, 10]``.
        loss: ``"quadratic"`` (the tutorial's 1/2 (t - y)^2) or ``"cross_entropy"``.
        init: ``"normal"`` draws every weight and bias from N(0, 1) (the tutorial's and
            Nielsen's choice); ``"scaled"`` draws weights from N(0, 1/n_in) and biases from
            N(0, 1), which keeps wide layers out of the sigmoid's flat tails.
        backend: ``"auto"``, ``"numpy"``, ``"cupy"``, ``"cupy:N"`` or a Backend.
        dtype: ``"float32"`` (default) or ``"float64"``.
        seed: seeds the initial weights and the shuffling; same seed, same backend,
            same result, bit for bit.
    """

    def __init__(self, sizes, loss="quadratic", init="normal", backend="auto", dtype="float32", seed=0):
        self.sizes = check_sizes(sizes)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: use one of {', '.join(INITS)}")
        if str(dtype) not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}: use float32 or float64")
        self.loss = loss
        self.init = init
        self.dtype = np.dtype(str(dtype))
        check_network_fits(self.sizes, self.dtype)  # refuse before allocating, saying how much it needs
        self.seed = int(seed)
        self.backend = get_backend(backend)
        self.layout = ParameterLayout(self.sizes)
        #: NumPy folds the bias into the forward product and keeps samples as rows
        #: (see :class:`Workspace`); the kernel backends add the bias in ``bias_sigmoid``.
        self.fold_bias = self.backend.name == "numpy"
        self.history = None
        self.optimizer = None
        self.epochs_done = 0
        self.stop_training = False
        self._workspaces: dict[int, Workspace] = {}
        xp = self.backend.xp
        with self.backend.device():
            self.params = xp.asarray(self._initial_parameters(), dtype=self.dtype)
            self.grads = xp.zeros(self.layout.size, dtype=self.dtype)
        self._bind_views()

    # -- parameters -------------------------------------------------------------
    def _initial_parameters(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        flat = np.empty(self.layout.size)
        for layer, block in enumerate(self.layout.blocks(flat)):
            n_in = self.sizes[layer]
            scale = 1.0 if self.init == "normal" else 1.0 / np.sqrt(n_in)
            block[:-1] = rng.standard_normal(block[:-1].shape) * scale
            block[-1] = rng.standard_normal(block.shape[1])
        return flat

    def _bind_views(self) -> None:
        self.blocks = self.layout.blocks(self.params)
        self.grad_blocks = self.layout.blocks(self.grads)

    @property
    def weights(self):
        """Per-layer weight views ``W`` (inputs x outputs) into the flat buffer."""
        return [block[:-1] for block in self.blocks]

    @property
    def biases(self):
        """Per-layer bias views ``b`` (outputs,) into the flat buffer."""
        return [block[-1] for block in self.blocks]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the parameters on the host: ``[W1, b1, W2, b2, ...]``."""
        host = to_numpy(self.params).copy()
        return [part for block in self.layout.blocks(host) for part in (block[:-1], block[-1])]

    def set_weights(self, arrays) -> None:
        """Replace the parameters from ``[W1, b1, W2, b2, ...]`` (shapes must match)."""
        arrays = [to_numpy(a) for a in arrays]
        if len(arrays) != 2 * self.layout.n_layers:
            raise ValueError(f"expected {2 * self.layout.n_layers} arrays [W1, b1, ...], got {len(arrays)}")
        flat = np.empty(self.layout.size)
        for layer, block in enumerate(self.layout.blocks(flat)):
            W, b = arrays[2 * layer], arrays[2 * layer + 1]
            if W.shape != block[:-1].shape or b.shape != block[-1].shape:
                raise ValueError(
                    f"layer {layer + 1}: expected W {block[:-1].shape} and b {block[-1].shape}, "
                    f"got {W.shape} and {b.shape}"
                )
            block[:-1], block[-1] = W, b
        with self.backend.device():
            self.params[...] = self.backend.xp.asarray(flat, dtype=self.dtype)

    # -- buffers --------------------------------------------------------------
    def workspace(self, m: int) -> Workspace:
        """The buffers for batches of ``m`` samples (made on first use, then reused)."""
        ws = self._workspaces.get(m)
        if ws is None:
            ws = self._workspaces[m] = Workspace(self.backend, self.sizes, m, self.dtype, self.fold_bias)
        return ws

    # -- forward and backward -------------------------------------------------
    def forward(self, ws: Workspace) -> None:
        """Feed ``ws.inputs`` through every layer; each layer's output stays in ``ws.acts``."""
        xp, kernels = self.backend.xp, self.backend.kernels
        if self.fold_bias:
            sigmoid_ = kernels.sigmoid_
            for weights_t, a_prev, z in ws.views(self).forward:
                np.matmul(weights_t, a_prev, z)  # [W; b]^T [A_prev; 1]: weighted sums plus biases
                sigmoid_(z)
            return
        for layer, block in enumerate(self.blocks):
            z = ws.acts[layer + 1][:-1]
            xp.matmul(block[:-1].T, ws.acts[layer][:-1], out=z)
            kernels.bias_sigmoid(z, block[-1])

    def backward(self, ws: Workspace, loss_sum=None, correct=None, scale=1.0) -> None:
        """Backprop: gradients of the batch's summed loss into ``self.grads``.

        Uses the activations left by :meth:`forward`.  With device scalars ``loss_sum``
        and ``correct``, also adds the batch's loss and number of correct answers to
        them (the fused ``output_delta``).  Without them (the NumPy trainer, which works
        both out from the recorded outputs once per epoch) the gradients come out
        multiplied by ``scale``.
        """
        xp, kernels = self.backend.xp, self.backend.kernels
        last = self.layout.n_layers
        if loss_sum is None:
            kernels.output_error(ws.outputs, ws.targets, ws.deltas[last], self.loss, scale, ws.views(self).scratch[-1])
        else:
            kernels.output_delta(ws.outputs, ws.labels, ws.deltas[last], loss_sum, correct, self.loss, ws.targets)
        sigmoid_backward = kernels.sigmoid_backward
        for a_prev, delta_t, grad, weights, delta, back, a_back, tmp in ws.views(self).backward:
            # [A_prev; 1] delta^T: the weight gradient, and in its last row (the ones
            # times delta) the bias gradient, from one product without a reduction.
            xp.matmul(a_prev, delta_t, out=grad)  # out= by keyword: cupy.matmul takes no positional out
            if back is not None:  # the chain rule, one layer down: (W delta) * a(1 - a)
                xp.matmul(weights, delta, out=back)
                sigmoid_backward(back, a_back, tmp)

    # -- inference --------------------------------------------------------------
    def device_samples(self, X, y=None):
        """Validate ``X`` (and ``y``) and move them to the device in the layout training uses.

        NumPy: one sample per row, ``[x, 1, t]``: the features, a one for the folded bias
        and the one-hot target (zeros without ``y``), ``(samples, inputs + 1 + classes)``.
        Kernel backends: samples as columns, ``(inputs, samples)``, the layout the GPU
        gather kernel reads.  Labels become int32.
        """
        from .train import as_labels  # local import: train imports network

        X_host = X if self.backend.is_gpu else to_numpy(X)
        if X_host.ndim != 2:
            raise DataError(f"X must be 2-D (samples, features), got shape {tuple(X_host.shape)}")
        n, n_in = X_host.shape
        if n_in != self.sizes[0]:
            raise DataError(
                f"the data has {n_in} features per sample but the network's input layer "
                f"has {self.sizes[0]} units; make --layers start with {n_in}"
            )
        xp = self.backend.xp
        with self.backend.device():
            labels = None if y is None else self.backend.asarray(as_labels(y, self.sizes[-1]), np.int32)
            if self.fold_bias:
                samples = xp.zeros((n, n_in + 1 + self.sizes[-1]), dtype=self.dtype)
                samples[:, :n_in] = X_host
                samples[:, n_in] = 1
                if labels is not None:
                    samples[np.arange(n), n_in + 1 + labels] = 1
                features = samples[:, :n_in]
            else:
                samples = features = xp.ascontiguousarray(xp.asarray(X_host, dtype=self.dtype).T)
            if not _all_finite(xp, features):
                raise DataError("X contains NaN or infinite values; clean the data first")
        return samples, labels

    def sample_count(self, samples) -> int:
        """Number of samples in an array made by :meth:`device_samples`."""
        return samples.shape[0] if self.fold_bias else samples.shape[1]

    def _chunks(self, n: int):
        for start in range(0, n, EVAL_CHUNK):
            yield start, min(start + EVAL_CHUNK, n)

    def predict_proba(self, X) -> np.ndarray:
        """Output activations, one row per sample (on the host)."""
        samples, _ = self.device_samples(X)
        n = self.sample_count(samples)
        out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        with self.backend.device():
            for start, stop in self._chunks(n):
                ws = self.workspace(stop - start)
                ws.set_inputs(samples, start, stop)
                self.forward(ws)
                out[start:stop] = to_numpy(ws.outputs).T
        return out

    def predict(self, X) -> np.ndarray:
        """The answer for each sample: the index of the most active output node."""
        return self.predict_proba(X).argmax(axis=1)

    def evaluate(self, X, y) -> dict:
        """Mean loss per sample and accuracy on ``(X, y)``."""
        return self.evaluate_device(*self.device_samples(X, y))

    def evaluate_device(self, samples, labels) -> dict:
        """:meth:`evaluate` on data already made by :meth:`device_samples`."""
        xp = self.backend.xp
        n = self.sample_count(samples)
        with self.backend.device():
            loss_sum = xp.zeros((), dtype=np.float64)
            correct = xp.zeros((), dtype=np.int64)
            for start, stop in self._chunks(n):
                ws = self.workspace(stop - start)
                ws.set_inputs(samples, start, stop)
                ws.labels[...] = labels[start:stop]
                self.forward(ws)
                self.backend.kernels.output_delta(
                    ws.outputs, ws.labels, ws.deltas[-1], loss_sum, correct, self.loss, ws.targets
                )
            return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}

    def fit(self, X, y, epochs=30, batch_size=10, lr=3.0, momentum=0.0, weight_decay=0.0,
            validation_data=None, callbacks=None, shuffle=True, progress=None, communicator=None,
            cuda_graph=True):
        """Train by minibatch gradient descent; see :func:`gpunn.train.fit`."""
        from .train import fit

        return fit(self, X, y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                   weight_decay=weight_decay, validation_data=validation_data, callbacks=callbacks,
                   shuffle=shuffle, progress=progress, communicator=communicator, cuda_graph=cuda_graph)

    def save(self, path, extra=None) -> None:
        """Save to one ``.npz`` file, atomically; see :func:`gpunn.io.save` (``gpunn.load`` reads it back)."""
        from .io import save

        save(self, path, extra=extra)

    def __repr__(self) -> str:
        return (f"Network(sizes={list(self.sizes)}, loss={self.loss!r}, init={self.init!r}, "
                f"backend={self.backend.label!r}, dtype={self.dtype.name!r})")
