"""The network's math (:class:`MLP`): layers of neurons, their parameters, forward pass and backprop.

A neuron computes a weighted sum of its inputs plus a bias, ``v = sum_i x_i w_i + b``,
and squashes it with the sigmoid, ``y = sigma(v)`` (the tutorial's neuron; ``tanh``
and ``relu`` are the other hidden activations).  A layer does that for many neurons
at once and for a whole minibatch at once: with the examples as the columns of
``A_prev`` (units x samples), the layer's output is ``A = f(W^T A_prev + b)``.  The
output layer is sigmoid (the tutorial's) or softmax, and its most active node is the
network's answer.

Parameters live in ONE flat buffer (:class:`gpunn.nn.parameters.ParameterLayout`): for each layer the
weights ``W`` (inputs x outputs, row-major) followed by the biases ``b``, so that the
block is the matrix ``[W; b]`` with the bias as its last row.  The gradients live in a
second flat buffer with the same layout.  The SGD update is then one fused operation
over the whole buffer, and a data-parallel all-reduce is one call.

Activations carry an extra row of ones (:class:`gpunn.nn.layout.Workspace`), so the gradient of
every ``[W; b]`` block is one product, ``[A_prev; 1] delta^T``: the bias gradient
falls out as its last row.  On NumPy the bias is folded into the forward product
too, ``[W; b]^T [A_prev; 1]``, which saves one pass per layer.  On the kernel backends
each layer's products run either as gpunn's fused kernels (the product, bias and
activation in one launch) or as library GEMMs followed by gpunn's epilogue kernels:
:attr:`MLP.dense` names the path (see :mod:`gpunn.compute.dense`).  What differs between
the two lives in one layout object per backend (:mod:`gpunn.nn.layout`).  A softmax output layer
keeps its logits after the forward pass; the fused output delta (or :meth:`MLP.predict_proba`) turns them into
probabilities, so that the loss can be computed from the max-shifted logits.

Limits: fully connected layers only, one activation for all hidden layers; float32 or
float64; no autograd engine: backprop is written out layer by layer, exactly as the
chain rule says.  Training, saving and export are the public :class:`gpunn.Network`'s, one
wing up; this class imports nothing above :mod:`gpunn.nn`.
"""

from __future__ import annotations

import numpy as np

from gpunn.compute.backend import get_backend, to_numpy
from gpunn.compute.ops import ACTIVATIONS, default_loss, objective, task
from gpunn.errors import DataError, option_name
from gpunn.memory import check_network_fits, require
from gpunn.nn.labels import class_indices, classes_from_json, infer_classes
from gpunn.nn.layout import Workspace, layout_for
from gpunn.nn.parameters import DEFAULT_INIT, DTYPES, INITS, ParameterLayout, check_sizes, initial_parameters
from gpunn.nn.preprocessing import SCALINGS, Scaler
from gpunn.nn.targets import multilabel_targets, normalised_weights, regression_metrics, regression_targets

#: Samples per forward pass in predict / evaluate.
EVAL_CHUNK = 1024


def _dense_rows(X) -> np.ndarray:
    """A SciPy sparse matrix as a dense host array, converted in chunks of rows (no SciPy import here)."""
    X = X.tocsr()
    require(X.shape[0] * X.shape[1] * X.dtype.itemsize, "the sparse X made dense", "give fewer samples at a time")
    dense = np.empty(X.shape, dtype=X.dtype)
    for start in range(0, X.shape[0], EVAL_CHUNK):
        dense[start : start + EVAL_CHUNK] = X[start : start + EVAL_CHUNK].toarray()
    return dense


def _checked_classes(classes, n_outputs: int) -> np.ndarray:
    values = [c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes).tolist()]
    try:
        return classes_from_json(sorted(values), n_outputs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"classes {values!r} {exc}") from None


class MLP:
    """A fully connected network: its parameters, forward pass, backprop and predictions.

    The public :class:`gpunn.Network` adds training, saving and export on top.

    Args:
        sizes: units per layer, input first, e.g. ``[784, 30, 10]``.
        activation: the hidden layers' ``"sigmoid"`` (the tutorial's, default),
            ``"tanh"``, ``"relu"`` or ``"identity"`` (linear units).
        output_activation: ``"sigmoid"`` (default: every output unit squashed on its
            own), ``"softmax"`` (probabilities over the classes) or ``"identity"``
            (regression: the outputs are values, trained on float targets, see :attr:`task`).
        loss: ``"quadratic"`` (the tutorial's 1/2 (t - y)^2; sigmoid or identity outputs) or
            ``"cross_entropy"`` (per-unit binary on sigmoid outputs, categorical on
            softmax); default: cross_entropy for softmax outputs, else quadratic.
        init: how the weights are drawn (biases: N(0, 1) for the first two, 0 for the next two;
            ``"glorot_uniform"``, scikit-learn's, draws both, see :func:`~gpunn.nn.parameters.initial_parameters`):
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
            (:mod:`gpunn.nn.labels`).  ``predict`` answers with these.  A regression network has none.
        multilabel: several labels per sample: ``y`` is a 0/1 indicator matrix (samples,
            outputs), trained with sigmoid outputs and the binary cross-entropy
            (``output_activation="sigmoid", loss="cross_entropy"`` only); ``predict``
            answers with indicator rows.

    A regression network (``output_activation="identity"``) trains on float targets of one
    or more columns, standardised by the first fit (:attr:`target_scaling`,
    :mod:`gpunn.nn.targets`); ``predict`` answers in the targets' units and ``evaluate``
    returns ``loss``, ``mse``, ``mae`` and ``r2``.
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
        #: how the samples are laid out and each layer's products run: rows and the bias folded
        #: into the products on NumPy, columns and fused bias + activation on the kernel backends
        #: (see :mod:`gpunn.nn.layout`)
        self.sample_layout = layout_for(self.backend)
        self.history = None
        #: the path training took (a :class:`gpunn.training.trajectory.Trajectory`) when it was recorded
        self.trajectory = None
        self.optimizer = None
        self.epochs_done = 0
        self.stop_training = False
        self._workspaces: dict[tuple, Workspace] = {}
        xp = self.backend.xp
        with self.backend.device():
            self.params = xp.asarray(initial_parameters(self.layout, self.init, self.seed, self.activation),
                                     dtype=self.dtype)
            self.grads = xp.zeros(self.layout.size, dtype=self.dtype)
        self._bind_views()

    # -- parameters -------------------------------------------------------------
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
        Training (:func:`gpunn.training.loop.fit`) sets it for its batch size (``GPUNN_DENSE``, or the autotuner's
        pick on a GPU); before any fit a GPU uses ``cublas`` and ``emulated`` ``fused``,
        unless ``GPUNN_DENSE`` says otherwise.  May be assigned.
        """
        return self.sample_layout.dense

    @dense.setter
    def dense(self, name: str) -> None:
        self.sample_layout.dense = name

    # -- buffers --------------------------------------------------------------
    def workspace(self, m: int, weighted: bool = False) -> Workspace:
        """The buffers for batches of ``m`` samples, with a weight per sample when ``weighted`` (made once)."""
        ws = self._workspaces.get((m, weighted))
        if ws is None:
            ws = self._workspaces[(m, weighted)] = self.sample_layout.workspace(self.sizes, m, self.dtype,
                                                                                self.float_targets, weighted)
        return ws

    # -- forward and backward -------------------------------------------------
    def forward(self, ws: Workspace) -> None:
        """Feed ``ws.inputs`` through every layer; each layer's output stays in ``ws.acts``.

        A softmax output layer is left holding its logits (see the module docstring).
        """
        self.sample_layout.forward(self, ws)

    def backward(self, ws: Workspace, loss_sum=None, correct=None, scale=1.0, layer_rates=None) -> None:
        """Backprop: gradients of the batch's summed loss into ``self.grads``.

        Uses the activations left by :meth:`forward`.  With device scalars ``loss_sum``
        and ``correct``, also adds the batch's loss and number of correct answers to
        them (the fused ``output_delta``).  Without them (the NumPy trainer, which works
        both out from the recorded outputs once per epoch) the gradients come out
        multiplied by ``scale``, and each layer's by its entry of ``layer_rates`` too.
        """
        self.sample_layout.backward(self, ws, loss_sum, correct, scale, layer_rates)

    # -- inference --------------------------------------------------------------
    def device_samples(self, X, y=None, where: str = "X"):
        """Validate ``X`` (and ``y``), scale ``X`` and move both to the device in the layout training uses.

        NumPy: one sample per row, ``[x, 1, t]``: the (scaled) features, a one for the folded
        bias and the one-hot target (zeros without ``y``), ``(samples, inputs + 1 + classes)``.
        Kernel backends: samples as columns, ``(inputs, samples)``, the layout the GPU
        gather kernel reads.  Labels become int32 class indices (see :mod:`gpunn.nn.labels`).
        Float targets (a regression network's, standardised by :attr:`target_scaling`, or
        multilabel 0/1 rows) are the ``t`` of each row on NumPy; on the kernel backends the
        second array returned is the ``(outputs, samples)`` targets.  ``where`` names ``X``
        in error messages.
        """
        samples, answers, _ = self.device_data(X, y, where)
        return samples, answers

    def device_data(self, X, y=None, where: str = "X", sample_weight=None):
        """:meth:`device_samples`, plus the samples' weights: ``(samples, answers, weights)``.

        ``sample_weight``: (n,) non-negative numbers, rescaled to mean 1
        (:func:`gpunn.nn.targets.normalised_weights`); on NumPy each row also gets its weight as
        a last column.  ``weights`` is an (n,) array in the network's dtype on the device, or
        None without ``sample_weight``.
        """
        X_host = self._as_samples(X, where)
        n = X_host.shape[0]
        weights = None if sample_weight is None else normalised_weights(sample_weight, n)
        labels = targets = None
        if y is not None and self.multilabel:
            targets = multilabel_targets(y, n, self.sizes[-1])
        elif y is not None and self.task == "regression":
            targets = self._standardised_targets(y, n)
        elif y is not None:
            labels = self.label_indices(y, n)
        with self.backend.device():
            samples = self.sample_layout.build(X_host, labels, self.sizes[-1], self.dtype, where, self.scaler,
                                               targets, weights)
            if labels is not None:
                labels = self.backend.asarray(labels, np.int32)
            answers = self.sample_layout.answers(labels, None if targets is None else targets.astype(self.dtype))
            if weights is not None:
                weights = self.backend.asarray(weights, self.dtype)
        return samples, answers, weights

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
        """``X`` as a 2-D (samples, features) array of numbers (host, or device on CuPy); one 1-D sample allowed.

        A SciPy sparse matrix (anything with ``tocsr``) is made dense, :data:`EVAL_CHUNK` rows at a time.
        """
        if hasattr(X, "tocsr") and hasattr(X, "toarray"):
            X = _dense_rows(X)
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
        return self.sample_layout.sample_count(samples)

    def _chunks(self, n: int):
        for start in range(0, n, EVAL_CHUNK):
            yield start, min(start + EVAL_CHUNK, n)

    def predict_proba(self, X) -> np.ndarray:
        """Output activations, one row per sample (on the host); softmax probabilities for softmax nets.

        Computed in the network's dtype, a batch (up to 1024 samples) per product.  A BLAS
        may add the products of a batch's edge columns in another order than the others'
        (OpenBLAS's Prescott kernel does), so in float32 a sample's outputs can differ in
        the last bit with its position among the samples of the call; for answers that do
        not depend on the other samples (as scikit-learn asks), predict with
        :meth:`inference_copy` in float64.
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

    def inference_copy(self, dtype) -> "MLP":
        """This network for predicting in ``dtype``: the same parameters (converted), scaling and classes.

        No optimizer, no history, no training records: it is for :meth:`predict_proba` and
        :meth:`predict` only, and does not follow later training of this network (make a
        new one).  float32 parameters convert to float64 exactly, so a float64 copy
        computes the same function as this network with float64 rounding: each sample's
        answer then differs with the order of the samples or the BLAS kernel by about
        1e-16, not float32's 1e-7.  Returns this network itself when ``dtype`` is its own.
        """
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        copy = MLP(self.sizes, activation=self.activation, output_activation=self.output_activation,
                   loss=self.loss, init=self.init, backend=self.backend, dtype=dtype.name, seed=self.seed,
                   scale=self.scale, classes=self.classes, multilabel=self.multilabel)
        copy.scaler = self.scaler
        copy.target_scaling = self.target_scaling
        with self.backend.device():
            copy.params[...] = self.params.astype(copy.dtype)
        return copy

    def predict(self, X) -> np.ndarray:
        """The answer for each sample: the class of the most active output node (see :attr:`classes`).

        A regression network answers with values in the targets' units (float64), (samples,)
        when it was fitted on 1-D targets, else (samples, outputs); a multilabel network with
        an indicator row per sample (each output above 0.5).
        """
        if self.task == "regression":
            if self.target_scaling is None:
                raise ValueError("this regression network has not been fitted yet; call fit first")
            return self.target_scaling.undo(self.predict_proba(X))
        if self.multilabel:
            return (self.predict_proba(X) > 0.5).astype(np.int64)
        index = self.predict_proba(X).argmax(axis=1)
        return index if self.classes is None else self.classes[index]

    def evaluate(self, X, y) -> dict:
        """Mean loss per sample and accuracy on ``(X, y)`` (multilabel: every label right).

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
                if not self.float_targets:
                    ws.labels[...] = labels[start:stop]
                elif ws.rows is None:  # the column layout's float targets travel beside the samples
                    ws.targets[...] = labels[:, start:stop]
                self.forward(ws)
                self.backend.kernels.output_delta(
                    ws.outputs, ws.labels, ws.deltas[-1], loss_sum, correct, self.objective, ws.targets
                )
            if self.task == "regression":
                return {"loss": float(loss_sum) / n}
            return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(sizes={list(self.sizes)}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, loss={self.loss!r}, init={self.init!r}, "
                f"backend={self.backend.label!r}, dtype={self.dtype.name!r})")

