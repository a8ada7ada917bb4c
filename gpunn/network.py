"""The network: layers of neurons, their parameters, forward pass and backprop.

A neuron computes a weighted sum of its inputs plus a bias, ``v = sum_i x_i w_i + b``,
and squashes it with the sigmoid, ``y = sigma(v)`` (the tutorial's neuron; ``tanh``
and ``relu`` are the other hidden activations).  A layer does that for many neurons
at once and for a whole minibatch at once: with the examples as the columns of
``A_prev`` (units x samples), the layer's output is ``A = f(W^T A_prev + b)``.  The
output layer is sigmoid (the tutorial's) or softmax, and its most active node is the
network's answer.

Parameters live in ONE flat buffer (:class:`ParameterLayout`): for each layer the
weights ``W`` (inputs x outputs, row-major) followed by the biases ``b``, so that the
block is the matrix ``[W; b]`` with the bias as its last row.  The gradients live in a
second flat buffer with the same layout.  The SGD update is then one fused operation
over the whole buffer, and a data-parallel all-reduce is one call.

Activations carry an extra row of ones (:class:`Workspace`), so the gradient of
every ``[W; b]`` block is one product, ``[A_prev; 1] delta^T``: the bias gradient
falls out as its last row.  On NumPy the bias is folded into the forward product
too, ``[W; b]^T [A_prev; 1]``, which saves one pass per layer.  On the kernel backends
each layer's products run either as gpunn's fused kernels (the product, bias and
activation in one launch) or as library GEMMs followed by gpunn's epilogue kernels:
:attr:`Network.dense` names the path (see :mod:`gpunn.compute.dense`).  A softmax output layer
keeps its logits after the forward pass; the fused output delta (or :meth:`Network.predict_proba`) turns them into
probabilities, so that the loss can be computed from the max-shifted logits.

Limits: fully connected layers only, one activation for all hidden layers; float32 or
float64; no autograd engine: backprop is written out layer by layer, exactly as the
chain rule says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunn.compute import dense
from gpunn.compute.backend import Backend, get_backend, to_numpy
from gpunn.errors import DataError, option_name
from gpunn.nn.labels import class_indices, classes_from_json, infer_classes
from gpunn.memory import check_network_fits
from gpunn.compute.ops import ACTIVATIONS, default_loss, objective, task
from gpunn.nn.preprocessing import SCALINGS, Scaler
from gpunn.nn.targets import multilabel_targets, normalised_weights, regression_metrics, regression_targets
from gpunn.training.loop import fit as _fit

INITS = ("normal", "scaled", "xavier", "he", "glorot_uniform")
#: The initialisation each hidden activation gets when none is given (see :class:`Network`).
DEFAULT_INIT = {"sigmoid": "scaled", "tanh": "xavier", "relu": "he", "identity": "xavier"}
DTYPES = ("float32", "float64")
#: Samples per forward pass in predict / evaluate.
EVAL_CHUNK = 1024


def _checked_classes(classes, n_outputs: int) -> np.ndarray:
    values = [c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes).tolist()]
    try:
        return classes_from_json(sorted(values), n_outputs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"classes {values!r} {exc}") from None


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
    or ``targets`` (one-hot on NumPy; a regression network's float targets on every
    backend) hold the batch's answers, and ``weights`` the samples' weights when
    training is weighted (None otherwise).

    On NumPy the training data is kept one sample per row, ``[x, 1, t]`` (features, the
    ones column of the folded bias, the one-hot target; see :meth:`Network.device_samples`),
    and so is the input buffer ``rows``: one ``take`` of whole rows gathers a batch
    (gathering 10 scattered columns from 50,000 samples instead costs 20x more, all in
    cache misses).  ``acts[0]`` and ``targets`` are transposed views into ``rows``, which
    BLAS and the ufuncs take as they are.
    """

    def __init__(self, backend: Backend, sizes, m: int, dtype, numpy_layout: bool, regression: bool = False,
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
            if numpy_layout:  # [x, 1, t] rows, and each sample's weight last when weighted
                self.rows = xp.empty((m, n_in + 1 + classes + int(weighted)), dtype=dtype)
                self.rows[:, n_in] = 1
                self.acts[0] = self.rows[:, : n_in + 1].T
                self.targets = self.rows[:, n_in + 1 : n_in + 1 + classes].T
                if weighted:
                    self.weights = self.rows[:, -1]
            else:  # float targets (regression) and weights beside the int32 labels
                if regression:
                    self.targets = xp.empty((classes, m), dtype=dtype)
                if weighted:
                    self.weights = xp.empty(m, dtype=dtype)
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

    def gather(self, backend: Backend, samples, answers, index, weights=None) -> None:
        """Gather the samples (columns), answers and weights at ``index`` (kernel backends' layout).

        ``answers``: int32 labels, or a regression network's (outputs, samples) float targets.
        """
        backend.take(samples, index, self.inputs, axis=1)
        if self.targets is not None:
            backend.take(answers, index, self.targets, axis=1)
        else:
            backend.take(answers, index, self.labels)
        if weights is not None:
            backend.take(weights, index, self.weights)


class _StepViews:
    """Every view a forward and backward pass uses, made once per workspace.

    At batch 10 a NumPy step is ~25 calls of about a microsecond each, and making the
    same slices and transposes anew at every step cost a sixth of it again.  The
    parameter views stay valid because parameters are only ever updated in place.
    """

    def __init__(self, network, ws: Workspace):
        blocks, acts, deltas = network.blocks, ws.acts, ws.deltas
        kinds = network.layer_activations
        below_kinds = [None] + kinds[:-1]  # per layer, the activation of the layer below it
        if ws.rows is None:  # kernel backends
            #: per layer, first to last: ([W; b], [A_prev; 1], outputs, activation)
            self.kernel_forward = [(block, acts[layer], acts[layer + 1][:-1], kinds[layer])
                                   for layer, block in enumerate(blocks)]
            #: per layer, last to first: ([A_prev; 1], delta, gradient block, W, delta of the
            #: layer below (None for the first layer), A of the layer below, its activation)
            self.kernel_backward = [
                (acts[layer - 1], deltas[layer], network.grad_blocks[layer - 1], blocks[layer - 1][:-1],
                 deltas[layer - 1] if layer > 1 else None, acts[layer - 1][:-1], below_kinds[layer - 1])
                for layer in range(len(blocks), 0, -1)
            ]
            return
        #: NumPy, per layer, first to last: ([W; b]^T, [A_prev; 1], Z out, activation)
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


class Network:
    """A fully connected network, trained by backprop and minibatch gradient descent.

    Args:
        sizes: units per layer, input first, e.g. ``[784, 30, 10]``.
        activation: the hidden layers' ``"sigmoid"`` (the tutorial's, default),
            ``"tanh"`` or ``"relu"``.
        output_activation: ``"sigmoid"`` (default: every output unit squashed on its
            own) or ``"softmax"`` (probabilities over the classes).
        loss: ``"quadratic"`` (the tutorial's 1/2 (t - y)^2; sigmoid outputs only) or
            ``"cross_entropy"`` (per-unit binary on sigmoid outputs, categorical on
            softmax); default: quadratic for sigmoid outputs, cross_entropy for softmax.
        init: how the weights are drawn (biases: N(0, 1) for the first two, 0 for the others):
            ``"normal"`` N(0, 1), the tutorial's and Nielsen's; ``"scaled"``
            N(0, 1/n_in) (LeCun), which keeps wide layers out of the sigmoid's flat tails;
            ``"xavier"`` N(0, 2/(n_in + n_out)) (Glorot and Bengio, 2010); ``"he"``
            N(0, 2/n_in) (He et al., 2015).  Default by activation: sigmoid ``scaled``,
            tanh ``xavier``, relu ``he`` (the same in Python and on the command line).
        backend: ``"auto"``, ``"numpy"``, ``"cupy"``, ``"cupy:N"``, ``"emulated"`` or a
            Backend; default ``$GPUNN_BACKEND``, else ``auto``.
        dtype: ``"float32"`` (default) or ``"float64"``.
        seed: seeds the initial weights and the shuffling; same seed, same backend,
            same result, bit for bit.
        scale: ``"none"`` (default), ``"auto"``, ``"minmax"`` or ``"standard"``: feature
            scaling fitted on the first ``fit``'s X and applied to every input after that
            (:mod:`gpunn.nn.preprocessing`); kept in model files.
        classes: what the output units stand for, sorted (e.g. ``["cat", "dog"]`` or
            ``[1, 2, 3]``); default: taken from the first ``fit``'s labels
            (:mod:`gpunn.nn.labels`).  ``predict`` answers with these.
    """

    def __init__(self, sizes, activation="sigmoid", output_activation="sigmoid", loss=None, init=None,
                 backend=None, dtype="float32", seed=0, scale="none", classes=None, multilabel=False):
        self.sizes = check_sizes(sizes)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        loss = default_loss(output_activation) if loss is None else loss
        self.objective = objective(output_activation, loss)  # ValueError for nonsense pairs
        #: several labels per sample (0/1 target rows; sigmoid outputs with the cross-entropy only)
        self.multilabel = bool(multilabel)
        if self.multilabel:
            if (output_activation, loss) != ("sigmoid", "cross_entropy"):
                raise ValueError("a multilabel network has sigmoid outputs and the cross_entropy loss; use "
                                 "output_activation='sigmoid', loss='cross_entropy'")
            self.objective = "multilabel_cross_entropy"
        #: ``"regression"`` (identity outputs, float targets) or ``"classification"``
        self.task = task(output_activation)
        if self.task == "regression" and classes is not None:
            raise ValueError("a regression network (output_activation='identity') has no classes; leave classes out")
        #: whether the answers are float rows (regression targets, multilabel 0/1 rows) rather than class labels
        self.float_targets = self.task == "regression" or self.multilabel
        #: regression: the targets' standardisation, fitted by the first fit (:mod:`gpunn.nn.targets`)
        self.target_scaling = None
        init = DEFAULT_INIT[activation] if init is None else init
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: use one of {', '.join(INITS)}")
        if str(dtype) not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}: use float32 or float64")
        if scale not in SCALINGS:
            raise ValueError(f"unknown scale {scale!r}: use one of {', '.join(SCALINGS)}")
        #: the requested scaling, and once fitted (or "none") the :class:`~gpunn.nn.preprocessing.Scaler`
        self.scale = scale
        self.scaler = Scaler("none") if scale == "none" else None
        #: the class each output unit stands for (None until the first fit decides)
        self.classes = None if classes is None else _checked_classes(classes, self.sizes[-1])
        self.activation = activation
        self.output_activation = output_activation
        self.loss = loss
        self.init = init
        self.dtype = np.dtype(str(dtype))
        check_network_fits(self.sizes, self.dtype)  # refuse before allocating, saying how much it needs
        self.seed = int(seed)
        self.backend = get_backend(backend)
        self.layout = ParameterLayout(self.sizes)
        #: each layer's activation as its kernels know it: a softmax layer keeps its logits
        #: (``identity``) until the output delta or :meth:`predict_proba` normalises them
        last = "identity" if output_activation == "softmax" else output_activation
        self.layer_activations = [activation] * (self.layout.n_layers - 1) + [last]
        #: NumPy folds the bias into the forward product and keeps samples as rows
        #: (see :class:`Workspace`); the kernel backends add the bias in ``bias_<activation>``.
        self.fold_bias = self.backend.name == "numpy"
        #: kernel backends: how each layer's products run (see :attr:`dense`)
        self._products = None if self.fold_bias else dense.products(dense.default_path(self.backend), self.backend)
        self.history = None
        #: the path training took (a :class:`gpunn.training.trajectory.Trajectory`) when it was recorded
        self.trajectory = None
        self.optimizer = None
        self.epochs_done = 0
        self.stop_training = False
        self._workspaces: dict[tuple, Workspace] = {}
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
            n_in, n_out = self.sizes[layer], self.sizes[layer + 1]
            if self.init == "glorot_uniform":  # scikit-learn's: U(-r, r) for W and b, r = sqrt(f / (n_in + n_out))
                bound = np.sqrt((2.0 if self.activation == "sigmoid" else 6.0) / (n_in + n_out))
                block[...] = rng.uniform(-bound, bound, block.shape)
                continue
            std = {"normal": 1.0, "scaled": 1 / np.sqrt(n_in), "xavier": np.sqrt(2 / (n_in + n_out)),
                   "he": np.sqrt(2 / n_in)}[self.init]
            block[:-1] = rng.standard_normal(block[:-1].shape) * std
            block[-1] = rng.standard_normal(n_out) if self.init in ("normal", "scaled") else 0.0
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

    @property
    def dense(self) -> str | None:
        """How the kernel backends run each layer's products: ``"fused"`` or ``"cublas"`` (NumPy: None).

        ``fused``: gpunn's kernels only, so that a GPU step can be one CUDA graph;
        ``cublas``: the library GEMM and gpunn's epilogue kernels (see :mod:`gpunn.compute.dense`).
        :meth:`fit` sets it for its batch size (``GPUNN_DENSE``, or the autotuner's
        pick on a GPU); before any fit a GPU uses ``cublas`` and ``emulated`` ``fused``,
        unless ``GPUNN_DENSE`` says otherwise.  May be assigned.
        """
        return None if self._products is None else self._products.name

    @dense.setter
    def dense(self, name: str) -> None:
        if self.fold_bias:
            raise ValueError("the NumPy backend folds the bias into its own products; dense applies to "
                             "the cupy and emulated backends")
        self._products = dense.products(name, self.backend)

    # -- buffers --------------------------------------------------------------
    def workspace(self, m: int, weighted: bool = False) -> Workspace:
        """The buffers for batches of ``m`` samples, with a weight per sample when ``weighted`` (made once)."""
        ws = self._workspaces.get((m, weighted))
        if ws is None:
            ws = self._workspaces[(m, weighted)] = Workspace(self.backend, self.sizes, m, self.dtype, self.fold_bias,
                                                             self.float_targets, weighted)
        return ws

    # -- forward and backward -------------------------------------------------
    def forward(self, ws: Workspace) -> None:
        """Feed ``ws.inputs`` through every layer; each layer's output stays in ``ws.acts``.

        A softmax output layer is left holding its logits (see the module docstring).
        """
        if self.fold_bias:
            activate_ = self.backend.kernels.activate_
            for weights_t, a_prev, z, activation in ws.views(self).forward:
                np.matmul(weights_t, a_prev, z)  # [W; b]^T [A_prev; 1]: weighted sums plus biases
                activate_(z, activation)
            return
        forward = self._products.forward
        for wb, a_in, z, activation in ws.views(self).kernel_forward:
            forward(wb, a_in, z, activation)

    def backward(self, ws: Workspace, loss_sum=None, correct=None, scale=1.0, layer_rates=None) -> None:
        """Backprop: gradients of the batch's summed loss into ``self.grads``.

        Uses the activations left by :meth:`forward`.  With device scalars ``loss_sum``
        and ``correct``, also adds the batch's loss and number of correct answers to
        them (the fused ``output_delta``).  Without them (the NumPy trainer, which works
        both out from the recorded outputs once per epoch) the gradients come out
        multiplied by ``scale``, and each layer's by its entry of ``layer_rates`` too.
        """
        kernels = self.backend.kernels
        last = self.layout.n_layers
        views = ws.views(self)
        if not self.fold_bias:
            kernels.output_delta(ws.outputs, ws.labels, ws.deltas[last], loss_sum, correct, self.objective,
                                 ws.targets, ws.weights)
            products = self._products
            for a_in, delta, grad, weights, delta_below, a_below, below in views.kernel_backward:
                products.weight_grad(a_in, delta, grad)
                if delta_below is not None:  # the chain rule, one layer down
                    products.backward(weights, delta, a_below, delta_below, below)
            return
        if loss_sum is None:
            rate = 1.0 if layer_rates is None else layer_rates[-1]
            kernels.output_error(ws.outputs, ws.targets, ws.deltas[last], self.objective, scale * rate,
                                 views.scratch[-1], ws.weights)
        else:
            kernels.output_delta(ws.outputs, ws.labels, ws.deltas[last], loss_sum, correct, self.objective,
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

    # -- inference --------------------------------------------------------------
    def device_samples(self, X, y=None, where: str = "X"):
        """Validate ``X`` (and ``y``), scale ``X`` and move both to the device in the layout training uses.

        NumPy: one sample per row, ``[x, 1, t]``: the (scaled) features, a one for the folded
        bias and the one-hot target (zeros without ``y``), ``(samples, inputs + 1 + classes)``.
        Kernel backends: samples as columns, ``(inputs, samples)``, the layout the GPU
        gather kernel reads.  Labels become int32 class indices (see :mod:`gpunn.nn.labels`).
        A regression network's targets are standardised (:attr:`target_scaling`): on NumPy
        they are the ``t`` of each row; on the kernel backends the second array returned
        is the ``(outputs, samples)`` float targets.  ``where`` names ``X`` in error messages.
        """
        samples, answers, _ = self.device_data(X, y, where)
        return samples, answers

    def device_data(self, X, y=None, where: str = "X", sample_weight=None):
        """:meth:`device_samples`, plus the samples' weights: ``(samples, answers, weights)``.

        ``sample_weight`` (n,) non-negative numbers, rescaled to mean 1
        (:func:`gpunn.nn.targets.normalised_weights`): on NumPy each row gets its weight as a
        last column and ``weights`` is None; on the kernel backends ``weights`` is an
        (n,) device array.  Without ``sample_weight``, ``weights`` is None.
        """
        X_host = self._as_samples(X, where)
        n, n_in = X_host.shape
        xp = self.backend.xp
        weights = None if sample_weight is None else normalised_weights(sample_weight, n)
        with self.backend.device():
            labels = targets = None
            if y is not None and self.multilabel:
                targets = multilabel_targets(y, n, self.sizes[-1])
            elif y is not None and self.task == "regression":
                targets = self._standardised_targets(y, n)
            elif y is not None:
                labels = self.backend.asarray(self.label_indices(y, n), np.int32)
            if self.fold_bias:
                samples = xp.zeros((n, n_in + 1 + self.sizes[-1] + int(weights is not None)), dtype=self.dtype)
                samples[:, :n_in] = X_host
                samples[:, n_in] = 1
                if labels is not None:
                    samples[np.arange(n), n_in + 1 + labels] = 1
                if targets is not None:
                    samples[:, n_in + 1 : n_in + 1 + self.sizes[-1]] = targets
                if weights is not None:
                    samples[:, -1] = weights
                features, feature_axis = samples[:, :n_in], 1
            else:
                samples = features = xp.ascontiguousarray(xp.asarray(X_host, dtype=self.dtype).T)
                feature_axis = 0
                if targets is not None:
                    labels = xp.ascontiguousarray(xp.asarray(targets.T, dtype=self.dtype))
                if weights is not None:
                    weights = xp.asarray(weights, dtype=self.dtype)
            if not _all_finite(xp, features):
                raise DataError(f"{where} contains NaN or infinite values; clean the data first")
            if self.scaler is not None and not self.scaler.identity:
                with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                    self.scaler.apply_(features, xp, feature_axis)
                if not _all_finite(xp, features):
                    raise DataError(f"{where}: scaled as the network's {self.scaler.method} scaling asks, some "
                                    f"features overflow {self.dtype.name}; use float64 (dtype / --dtype)")
        return samples, labels, (None if self.fold_bias else weights)

    def _standardised_targets(self, y, n: int, where: str = "y") -> np.ndarray:
        """A regression network's targets, (n, outputs) float64, standardised by :attr:`target_scaling`."""
        targets = regression_targets(y, n, self.sizes[-1], where)
        if self.target_scaling is None:
            raise ValueError("the network's target scaling is not fitted yet; fit the network first")
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = self.target_scaling.apply(targets)
        if not np.isfinite(scaled.astype(self.dtype)).all():
            raise DataError(f"{where}: standardised as the network's targets were, some targets overflow "
                            f"{self.dtype.name}; use float64 (dtype / --dtype)")
        return scaled

    def _as_samples(self, X, where: str):
        """``X`` as a 2-D (samples, features) array of numbers (host, or device on CuPy); one 1-D sample allowed."""
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        if not self.backend.is_gpu:
            X = to_numpy(X)
        if X.dtype.kind not in "biuf":
            raise DataError(f"{where} must hold real numbers, not {X.dtype}; convert it, e.g. X.astype(float)")
        if X.ndim == 1 and X.shape[0] == self.sizes[0]:
            X = X[None, :]  # one sample
        if X.ndim != 2:
            raise DataError(f"{where} must be 2-D (samples, features), got shape {tuple(X.shape)}")
        if X.shape[1] != self.sizes[0]:
            raise DataError(
                f"{where} has {X.shape[1]} features per sample but the network's input layer has "
                f"{self.sizes[0]} units; make {option_name('sizes', '--layers')} start with {X.shape[1]}"
            )
        return X

    def label_indices(self, y, n: int, where: str = "y") -> np.ndarray:
        """Class indices (int64) for the labels ``y`` of ``n`` samples, by :attr:`classes` when set."""
        if not hasattr(y, "shape"):
            y = np.asarray(y)
        if len(y) != n:
            raise DataError(f"{where} has {len(y)} labels but X has {n} samples; give one label per sample")
        classes = self.classes if self.classes is not None else infer_classes(y, self.sizes[-1], where)
        return class_indices(y, classes, where)

    def sample_count(self, samples) -> int:
        """Number of samples in an array made by :meth:`device_samples`."""
        return samples.shape[0] if self.fold_bias else samples.shape[1]

    def _chunks(self, n: int):
        for start in range(0, n, EVAL_CHUNK):
            yield start, min(start + EVAL_CHUNK, n)

    def predict_proba(self, X) -> np.ndarray:
        """Output activations, one row per sample (on the host); softmax probabilities for softmax nets.

        A regression network's outputs here are standardised (:meth:`predict` undoes that).
        """
        samples, _ = self.device_samples(X)
        n = self.sample_count(samples)
        out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        with self.backend.device():
            for start, stop in self._chunks(n):
                ws = self.workspace(stop - start)
                ws.set_inputs(samples, start, stop)
                self.forward(ws)
                if self.output_activation == "softmax":
                    self.backend.kernels.softmax_(ws.outputs)
                out[start:stop] = to_numpy(ws.outputs).T
        return out

    def predict(self, X) -> np.ndarray:
        """The answer for each sample: the class of the most active output node (see :attr:`classes`).

        A regression network answers with values in the targets' units (float64), shaped
        (samples,) when it has one output and was fitted on 1-D targets, else (samples, outputs).
        """
        if self.task == "regression":
            if self.target_scaling is None:
                raise ValueError("this regression network has not been fitted yet; call fit first")
            return self.target_scaling.undo(self.predict_proba(X))
        if self.multilabel:  # each label on its own: an indicator row per sample
            return (self.predict_proba(X) > 0.5).astype(np.int64)
        index = self.predict_proba(X).argmax(axis=1)
        return index if self.classes is None else self.classes[index]

    def evaluate(self, X, y) -> dict:
        """Mean loss per sample and accuracy on ``(X, y)``.

        A regression network returns ``loss`` (the squared error per sample, on the
        standardised targets training minimises) and, in the targets' units, ``mse``,
        ``mae`` and ``r2`` (as scikit-learn's metrics compute them).
        """
        result = self.evaluate_device(*self.device_samples(X, y))
        if self.task == "regression":
            n = self._as_samples(X, "X").shape[0]
            result.update(regression_metrics(self.predict(X), regression_targets(y, n, self.sizes[-1])))
        return result

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
                if self.float_targets and not self.fold_bias:
                    ws.targets[...] = labels[:, start:stop]
                elif not self.float_targets:
                    ws.labels[...] = labels[start:stop]
                self.forward(ws)
                self.backend.kernels.output_delta(
                    ws.outputs, ws.labels, ws.deltas[-1], loss_sum, correct, self.objective, ws.targets
                )
            if self.task == "regression":
                return {"loss": float(loss_sum) / n}
            return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}

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
        """Save to one ``.npz`` file, atomically; see :func:`gpunn.saving.model_file.save` (``gpunn.load`` reads it back)."""
        from gpunn.saving.model_file import save

        save(self, path, extra=extra)

    def to_onnx(self, path, classes=None) -> None:
        """Write this network as an ONNX model (outputs ``probabilities``, ``label``); see :mod:`gpunn.saving.onnx_export`."""
        from gpunn.saving.onnx_export import export

        export(self, path, classes=classes)

    def __reduce__(self):
        """Pickle (and copy) as the bytes of a model file, restored onto the same backend.

        What is stored is the model file (:func:`gpunn.saving.model_file.to_bytes`): numbers and JSON, read
        back through the loader's checks, so a pickled network resumes training exactly.
        The backend is named by its label (e.g. ``cupy:0``): unpickling needs it there too;
        settings of how it runs there (:attr:`dense`) take their defaults again.
        """
        from gpunn.saving.model_file import to_bytes

        return _unpickle, (to_bytes(self), self.backend.label)

    def __repr__(self) -> str:
        return (f"Network(sizes={list(self.sizes)}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, loss={self.loss!r}, init={self.init!r}, "
                f"backend={self.backend.label!r}, dtype={self.dtype.name!r})")


def _unpickle(data: bytes, backend: str) -> Network:
    from gpunn.saving.model_file import from_bytes

    return from_bytes(data, backend)
