"""The two data layouts a network trains in, each in one object.

NumPy (:class:`RowLayout`): the training data is kept one sample per row, ``[x, 1, t]`` (the
features, a one for the bias, the one-hot target), and so is the batch's input buffer: one
``take`` of whole rows gathers a batch (gathering 10 scattered columns from 50,000 samples
instead costs 20x more, all in cache misses).  The bias is folded into each layer's product,
``[W; b]^T [A_prev; 1]``, which saves one pass per layer, and a step records its outputs instead
of scoring them: the epoch's loss and accuracy are worked out once at its end
(:class:`OutputRecord`).

Kernel backends (:class:`ColumnLayout`): samples are the columns of ``(inputs, samples)``, the
layout the GPU gather kernel reads; each layer's products run as gpunn's fused kernels or as
library GEMMs followed by gpunn's epilogue kernels (the dense path, :mod:`gpunn.compute.dense`),
and the fused ``output_delta`` adds each batch's loss and hits to device scalars.

The network (:class:`gpunn.nn.mlp.MLP`) picks its layout once from its backend; the network,
the trainer and the autotuner call the layout and never ask which one it is.
"""

from __future__ import annotations

import numpy as np

from gpunn.compute import dense
from gpunn.compute.ops import NumpyKernels
from gpunn.errors import DataError

#: Samples scored at a time at the end of a NumPy epoch (keeps the scratch memory small).
SCORING_CHUNK = 1024


def all_finite(xp, array) -> bool:
    """True when no element is NaN or infinite, without a data-sized temporary.

    A NaN or an infinity anywhere makes the sum NaN or infinite, so a finite sum (in the
    array's own dtype: one pass, no conversion) proves every element finite; only when it is
    not (NaN, inf, or finite values whose sum overflows) is the exact element-wise check paid for.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows only sends us to the exact check
        total = xp.sum(array)
    return bool(xp.isfinite(total)) or bool(xp.isfinite(array).all())


class Workspace:
    """Preallocated buffers for forward and backward passes over ``m`` samples.

    ``acts[l]`` is an ``(sizes[l] + 1, m)`` matrix: the layer's activations with a row
    of ones beneath them; ``acts[l][:-1]`` is the activation proper.  ``deltas[l]``
    holds dE/dz for layer ``l`` (``deltas[0]`` is unused).  ``labels`` (class indices)
    and, in the row layout, ``targets`` (one-hot) hold the batch's answers; a network with
    float targets (regression, multilabel) has ``targets`` in both layouts.  ``weights``:
    the samples' weights when training is weighted, else None.

    Row layout: the input buffer ``rows`` holds one ``[x, 1, t(, w)]`` row per sample;
    ``acts[0]``, ``targets`` and ``weights`` are views into it, which BLAS and the ufuncs
    take as they are.  Column layout: ``rows`` is None.
    """

    def __init__(self, layout, backend, sizes, m: int, dtype, rows: bool, float_targets: bool = False,
                 weighted: bool = False):
        xp = backend.xp
        n_in, classes = sizes[0], sizes[-1]
        with backend.device():
            self.acts = []
            for n in sizes:
                a = xp.empty((n + 1, m), dtype=dtype)
                a[-1] = 1
                self.acts.append(a)
            self.rows = self.targets = self.weights = None
            if rows:
                self.rows = xp.empty((m, n_in + 1 + classes + int(weighted)), dtype=dtype)
                self.rows[:, n_in] = 1
                self.acts[0] = self.rows[:, : n_in + 1].T
                self.targets = self.rows[:, n_in + 1 : n_in + 1 + classes].T
                if weighted:
                    self.weights = self.rows[:, -1]
            else:
                if float_targets:
                    self.targets = xp.empty((classes, m), dtype=dtype)
                if weighted:
                    self.weights = xp.empty(m, dtype=dtype)
            self.deltas = [None] + [xp.empty((n, m), dtype=dtype) for n in sizes[1:]]
            self.labels = xp.empty(m, dtype=np.int32)
        self.m = m
        self.layout = layout
        #: the input layer's activations, (inputs, m), and the network's outputs, (classes, m)
        self.inputs = self.acts[0][:-1]
        self.outputs = self.acts[-1][:-1]
        self._views = None

    def views(self, network):
        """The views of ``network``'s parameters and these buffers that one step uses (made once)."""
        if self._views is None:
            self._views = self.layout.step_views(network, self)
        return self._views

    def set_inputs(self, samples, start: int, stop: int) -> None:
        """Copy samples ``start:stop`` (in the layout of :meth:`MLP.device_samples`) in."""
        self.layout.set_inputs(self, samples, start, stop)


class RowLayout:
    """NumPy: samples as ``[x, 1, t]`` rows, the bias folded into the products, outputs recorded per epoch."""

    name = "rows"
    #: NumPy takes its steps one by one from the host (no device step counter, no CUDA graph)
    device_steps = False

    def __init__(self, backend):
        self.backend = backend

    @property
    def dense(self) -> None:
        return None

    @dense.setter
    def dense(self, name: str) -> None:
        raise ValueError("the NumPy backend folds the bias into its own products; dense applies to "
                         "the cupy and emulated backends")

    def workspace(self, sizes, m: int, dtype, float_targets: bool = False, weighted: bool = False) -> Workspace:
        return Workspace(self, self.backend, sizes, m, dtype, rows=True, weighted=weighted)

    # -- data ---------------------------------------------------------------------
    def build(self, X, labels, classes: int, dtype, where: str, scaler, targets=None, weights=None):
        """The ``(n, n_in + 1 + classes)`` rows ``[x, 1, t]`` of the host array ``X``, checked and scaled.

        One pass writes each row: the cast copy of the features, the one, the one-hot target
        (zeros without labels) or the float ``targets`` (n, classes); with ``weights`` (n,) a
        last column holds each sample's weight.  The finite check reads the result once,
        without temporaries.
        """
        n, n_in = X.shape
        samples = np.empty((n, n_in + 1 + classes + int(weights is not None)), dtype=dtype)
        features = samples[:, :n_in]
        features[...] = X
        samples[:, n_in] = 1
        samples[:, n_in + 1 :] = 0
        if labels is not None:
            samples[np.arange(n), n_in + 1 + labels] = 1
        if targets is not None:
            samples[:, n_in + 1 : n_in + 1 + classes] = targets
        if weights is not None:
            samples[:, -1] = weights
        _check_and_scale(np, samples, features, 1, where, scaler, dtype)
        return samples

    def answers(self, labels, targets):
        """What travels beside the rows: the labels (the float targets are in the rows already)."""
        return labels

    def sample_count(self, samples) -> int:
        return samples.shape[0]

    def set_inputs(self, ws: Workspace, samples, start: int, stop: int) -> None:
        ws.rows[...] = samples[start:stop]

    def gather(self, ws: Workspace, data, index) -> None:
        """Whole ``[x, 1, t(, w)]`` rows at ``index`` into ``ws.rows`` (targets and weights come with them)."""
        data[0].take(index, 0, ws.rows, "clip")

    # -- forward and backward -------------------------------------------------------
    def step_views(self, network, ws: Workspace) -> "_RowViews":
        return _RowViews(network, ws)

    def forward(self, network, ws: Workspace) -> None:
        activate_ = self.backend.kernels.activate_
        for weights_t, a_prev, z, activation in ws.views(network).forward:
            np.matmul(weights_t, a_prev, z)  # [W; b]^T [A_prev; 1]: weighted sums plus biases
            activate_(z, activation)

    def backward(self, network, ws: Workspace, loss_sum, correct, scale, layer_rates) -> None:
        kernels = self.backend.kernels
        views = ws.views(network)
        last = len(ws.deltas) - 1
        if loss_sum is None:
            rate = 1.0 if layer_rates is None else layer_rates[-1]
            kernels.output_error(ws.outputs, ws.targets, ws.deltas[last], network.objective, scale * rate,
                                 views.scratch[-1], ws.weights)
        else:
            kernels.output_delta(ws.outputs, ws.labels, ws.deltas[last], loss_sum, correct, network.objective,
                                 ws.targets, ws.weights)
        act_backward = kernels.act_backward
        for layer, a_prev, delta_t, grad, weights, delta, back, a_back, tmp, below in views.backward:
            # [A_prev; 1] delta^T: the weight gradient, and in its last row (the ones
            # times delta) the bias gradient, from one product without a reduction.
            np.matmul(a_prev, delta_t, out=grad)
            if back is not None:  # the chain rule, one layer down: (W delta) * f'(z_below)
                np.matmul(weights, delta, out=back)
                act_backward(back, a_back, below, tmp)
                if layer_rates is not None and layer_rates[layer - 1] != layer_rates[layer]:
                    np.multiply(back, back.dtype.type(layer_rates[layer - 1] / layer_rates[layer]), out=back)

    # -- training ---------------------------------------------------------------------
    def epoch_tally(self, network, steps, loss_sum, correct) -> "OutputRecord":
        return OutputRecord(network, steps, loss_sum, correct)


class ColumnLayout:
    """Kernel backends: samples as columns, bias and activation fused, loss and hits summed on the device."""

    name = "columns"
    #: a full-batch step can run from a device step counter (and be captured as a CUDA graph)
    device_steps = True

    def __init__(self, backend):
        self.backend = backend
        #: how each layer's products run (see :attr:`dense`)
        self.products = dense.products(dense.default_path(backend), backend)

    @property
    def dense(self) -> str:
        return self.products.name

    @dense.setter
    def dense(self, name: str) -> None:
        self.products = dense.products(name, self.backend)

    def workspace(self, sizes, m: int, dtype, float_targets: bool = False, weighted: bool = False) -> Workspace:
        return Workspace(self, self.backend, sizes, m, dtype, rows=False, float_targets=float_targets,
                         weighted=weighted)

    # -- data ---------------------------------------------------------------------
    def build(self, X, labels, classes: int, dtype, where: str, scaler, targets=None, weights=None):
        """``X`` (host or device) as ``(inputs, samples)`` columns on the device, checked and scaled.

        The answers travel beside them (:meth:`answers`); ``targets`` and ``weights`` are not used here.
        """
        xp = self.backend.xp
        samples = xp.ascontiguousarray(xp.asarray(X, dtype=dtype).T)
        _check_and_scale(xp, samples, samples, 0, where, scaler, dtype)
        return samples

    def answers(self, labels, targets):
        """What travels beside the columns: the labels, or the float targets as (outputs, samples)."""
        return labels if targets is None else self.backend.xp.ascontiguousarray(self.backend.xp.asarray(targets.T))

    def sample_count(self, samples) -> int:
        return samples.shape[1]

    def set_inputs(self, ws: Workspace, samples, start: int, stop: int) -> None:
        ws.inputs[...] = samples[:, start:stop]

    def gather(self, ws: Workspace, data, index) -> None:
        """The sample columns, answers (labels or float targets) and weights at ``index`` into ``ws``."""
        samples, answers, *rest = data
        self.backend.take(samples, index, ws.inputs, axis=1)
        if ws.targets is not None:
            self.backend.take(answers, index, ws.targets, axis=1)
        else:
            self.backend.take(answers, index, ws.labels)
        if rest and rest[0] is not None:
            self.backend.take(rest[0], index, ws.weights)

    # -- forward and backward -------------------------------------------------------
    def step_views(self, network, ws: Workspace) -> "_ColumnViews":
        return _ColumnViews(network, ws)

    def forward(self, network, ws: Workspace) -> None:
        forward = self.products.forward
        for wb, a_in, z, activation in ws.views(network).forward:
            forward(wb, a_in, z, activation)

    def backward(self, network, ws: Workspace, loss_sum, correct, scale, layer_rates) -> None:
        last = len(ws.deltas) - 1
        self.backend.kernels.output_delta(ws.outputs, ws.labels, ws.deltas[last], loss_sum, correct,
                                          network.objective, ws.targets, ws.weights)
        products = self.products
        for a_in, delta, grad, weights, delta_below, a_below, below in ws.views(network).backward:
            products.weight_grad(a_in, delta, grad)
            if delta_below is not None:  # the chain rule, one layer down
                products.backward(weights, delta, a_below, delta_below, below)

    # -- training ---------------------------------------------------------------------
    def epoch_tally(self, network, steps, loss_sum, correct) -> "DeviceTally":
        return DeviceTally(network, loss_sum, correct)


def layout_for(backend):
    """The layout ``backend`` trains in: rows on NumPy, columns on the kernel backends."""
    return RowLayout(backend) if backend.name == "numpy" else ColumnLayout(backend)


def _check_and_scale(xp, samples, features, feature_axis: int, where: str, scaler, dtype) -> None:
    """Refuse non-finite ``samples``; scale ``features`` (a view of them) in place and check again."""
    if not all_finite(xp, samples):
        raise DataError(f"{where} contains NaN or infinite values; clean the data first")
    if scaler is not None and not scaler.identity:
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            scaler.apply_(features, xp, feature_axis)
        if not all_finite(xp, samples):
            raise DataError(f"{where}: scaled as the network's {scaler.method} scaling asks, some "
                            f"features overflow {np.dtype(dtype).name}; use float64 (dtype / --dtype)")


class _ColumnViews:
    """Every view a kernel-backend forward and backward pass uses, made once per workspace."""

    def __init__(self, network, ws: Workspace):
        blocks, acts, deltas = network.blocks, ws.acts, ws.deltas
        kinds = network.layer_activations
        below_kinds = [None] + kinds[:-1]  # per layer, the activation of the layer below it
        #: per layer, first to last: ([W; b], [A_prev; 1], outputs, activation)
        self.forward = [(block, acts[layer], acts[layer + 1][:-1], kinds[layer])
                        for layer, block in enumerate(blocks)]
        #: per layer, last to first: ([A_prev; 1], delta, gradient block, W, delta of the
        #: layer below (None for the first layer), A of the layer below, its activation)
        self.backward = [
            (acts[layer - 1], deltas[layer], network.grad_blocks[layer - 1], blocks[layer - 1][:-1],
             deltas[layer - 1] if layer > 1 else None, acts[layer - 1][:-1], below_kinds[layer - 1])
            for layer in range(len(blocks), 0, -1)
        ]


class _RowViews:
    """Every view a NumPy forward and backward pass uses, made once per workspace.

    At batch 10 a NumPy step is ~25 calls of about a microsecond each, and making the
    same slices and transposes anew at every step cost a sixth of it again.  The
    parameter views stay valid because parameters are only ever updated in place.
    """

    def __init__(self, network, ws: Workspace):
        blocks, acts, deltas = network.blocks, ws.acts, ws.deltas
        kinds = network.layer_activations
        below_kinds = [None] + kinds[:-1]
        #: per layer, first to last: ([W; b]^T, [A_prev; 1], Z out, activation)
        self.forward = [(block.T, acts[layer], acts[layer + 1][:-1], kinds[layer])
                        for layer, block in enumerate(blocks)]
        #: scratch shaped like each layer's activations (None for the inputs): the fused ops' temporaries
        self.scratch = [None] + [np.empty_like(d) for d in deltas[1:]]
        #: per layer, last to first: (layer index, [A_prev; 1], delta^T, gradient block out, W,
        #: delta, delta of the layer below (None for the first layer), A_prev, scratch like
        #: A_prev, the activation of the layer below)
        self.backward = [
            (layer - 1, acts[layer - 1], deltas[layer].T, network.grad_blocks[layer - 1], blocks[layer - 1][:-1],
             deltas[layer], deltas[layer - 1] if layer > 1 else None, acts[layer - 1][:-1],
             self.scratch[layer - 1], below_kinds[layer - 1])
            for layer in range(len(blocks), 0, -1)
        ]


class DeviceTally:
    """The kernel backends' epoch bookkeeping: each batch adds its loss and hits to device scalars.

    ``learn`` runs one gathered batch forward and backward, ``update`` applies the optimizer
    (``optimizer.step(params, grads, m)``), ``finish`` has nothing left to do.
    """

    def __init__(self, network, loss_sum, correct):
        self.network, self.loss_sum, self.correct = network, loss_sum, correct

    def learn(self, ws: Workspace, step: int, m: int) -> None:
        self.network.forward(ws)
        self.network.backward(ws, self.loss_sum, self.correct)

    def update(self, m: int) -> None:
        network = self.network
        network.optimizer.step(network.params, network.grads, m)

    def finish(self, data, batches) -> None:
        """Nothing: the batches have summed the epoch's loss and hits already (and nothing waits here)."""


class OutputRecord:
    """The NumPy trainer's bookkeeping: every sample's output, for the epoch's loss and accuracy.

    Adding up the loss and the hits at each step is a dozen tiny NumPy calls, which at
    batch 10 cost as much as the step's arithmetic.  Instead a step copies its output
    activations here (one call), and at the end of the epoch the fused ``output_delta``
    twin works out the loss and the number of correct answers for all of them at once.
    The numbers are the same: each sample is scored on the output the network gave it
    at its own step, as the GPU kernel does.

    With plain SGD (``optimizer.plain``) the factor eta/m (times each layer's rate) rides on
    the deltas, so that the update is one subtraction (``optimizer.step_prescaled``).
    """

    def __init__(self, network, steps, loss_sum, correct):
        self.network, self.loss_sum, self.correct = network, loss_sum, correct
        n_local = sum(index.shape[0] for index, _ in steps)
        self.outputs = np.empty((network.sizes[-1], n_local), dtype=network.dtype)
        self.views, offset = [], 0
        for index, _ in steps:
            self.views.append(self.outputs[:, offset : offset + index.shape[0]])
            offset += index.shape[0]

    def learn(self, ws: Workspace, step: int, m: int) -> None:
        network = self.network
        optimizer = network.optimizer
        plain = getattr(optimizer, "plain", False)
        network.forward(ws)
        np.copyto(self.views[step], ws.outputs)
        network.backward(ws, scale=optimizer.lr / m if plain else 1.0,
                         layer_rates=optimizer.layer_rates if plain else None)

    def update(self, m: int) -> None:
        network = self.network
        optimizer = network.optimizer
        if getattr(optimizer, "plain", False):
            optimizer.step_prescaled(network.params, network.grads)
        else:
            optimizer.step(network.params, network.grads, m)

    def finish(self, data, batches) -> None:
        """Set the loss and hit scalars for the recorded outputs, the answers of ``data`` (the training
        ``(samples, labels[, weights])``) taken in the steps' order (``batches.local_order()``, the
        epoch's order of this rank's samples): the labels, or the float targets and the weights from
        the rows."""
        network = self.network
        samples, labels = data[0], data[1]
        order = batches.local_order()
        n_in, outputs = network.sizes[0], network.sizes[-1]
        weights = samples[order, -1] if samples.shape[1] > n_in + 1 + outputs else None
        if network.float_targets:
            self.totals(None, network.objective, self.loss_sum, self.correct,
                        targets=samples[order, n_in + 1 : n_in + 1 + outputs].T, weights=weights)
        else:
            self.totals(labels[order], network.objective, self.loss_sum, self.correct, weights=weights)

    def totals(self, labels, objective: str, loss_sum, correct, targets=None, weights=None) -> None:
        """Set ``loss_sum`` and ``correct`` for the recorded outputs; ``labels`` (or the (outputs, samples)
        float ``targets``) and the optional ``weights`` in the same order."""
        loss_sum.fill(0)
        correct.fill(0)
        kernels = NumpyKernels()  # fresh kernels: their scratch goes with them
        labels = None if labels is None else labels.astype(np.int32)
        n = self.outputs.shape[1]
        for start in range(0, n, SCORING_CHUNK):
            stop = min(start + SCORING_CHUNK, n)
            outputs = np.array(self.outputs[:, start:stop])  # a copy: a softmax's logits become probabilities
            kernels.output_delta(outputs, None if labels is None else labels[start:stop], np.empty_like(outputs),
                                 loss_sum, correct, objective,
                                 None if targets is None else np.ascontiguousarray(targets[:, start:stop]),
                                 None if weights is None else np.ascontiguousarray(weights[start:stop]))
