"""The fused operations of one training step, as NumPy twins of the CUDA kernels.

Every CUDA kernel in ``kernels/`` has a twin here with the same arguments and the
same meaning, so that one training step can be written once and run on any
backend: :class:`NumpyKernels` (this module), ``CupyKernels`` (the kernels on a
GPU, :mod:`gpunn.compute.cuda_kernels`) and ``HostKernels`` (the same kernel sources
compiled for the CPU, :mod:`gpunn.compute.host_kernels`).

Conventions shared by all three:

* matrices are C-contiguous and laid out *units x samples*: column ``c`` holds one
  example, exactly like the column vectors of the tutorial and of Nielsen's book;
* every operation works in place or into a buffer the caller owns: after the first
  call with a given shape, nothing here allocates an array (NumPy keeps its scratch
  buffers in a small cache keyed by shape and dtype);
* the sigmoid is computed as ``tanh(z/2)/2 + 1/2``: no exponential that could
  overflow, so any finite ``z`` gives a value in [0, 1] without a warning;
* the derivative of the sigmoid is taken from the saved output, ``a(1 - a)``.
"""

from __future__ import annotations

import numpy as np

#: Hidden-layer activations; each has a fused kernel pair bias_<name> / <name>_backward.
#: ``identity`` (no squashing: a linear layer, scikit-learn's ``activation="identity"``) is
#: also what a softmax or regression output layer computes before its output delta.
ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
#: Output-layer activations.  A softmax layer's kernels keep its logits until the output
#: delta (or :meth:`NumpyKernels.softmax_`) turns them into probabilities; ``identity``
#: is a regression network's output: the weighted sums themselves.
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity")
LOSSES = ("quadratic", "cross_entropy")
#: What the output-delta kernels compute, one per sensible (output activation, loss) pair.
OBJECTIVES = ("quadratic", "cross_entropy", "softmax_cross_entropy", "squared_error", "multilabel_cross_entropy")
#: The objectives that score float targets (a regression network's, or multilabel 0/1 rows)
#: instead of class labels.
TARGET_OBJECTIVES = ("squared_error", "multilabel_cross_entropy")

#: Floor for ``1 - |a - t|`` inside the cross-entropy's logarithm, so that a
#: saturated wrong answer costs ``-log(1e-12) ~ 27.6`` instead of infinity.
CROSS_ENTROPY_FLOOR = 1e-12


def objective(output_activation: str, loss: str) -> str:
    """The output-delta kernel for an output activation and a loss; ValueError for nonsense.

    sigmoid + quadratic: the tutorial's ``1/2 (t - y)^2``; sigmoid + cross_entropy: the
    binary cross-entropy of every output unit; softmax + cross_entropy: the categorical
    cross-entropy ``-log p_label``; identity + quadratic: regression, the squared
    error ``1/2 |y - t|^2`` against float targets (``squared_error``).  Softmax with
    the quadratic loss is refused: its delta would need the softmax's full Jacobian,
    and the quadratic loss on probabilities learns slowly for the same reason it does
    on saturated sigmoids.  Identity with the cross-entropy is refused: an unbounded
    output is no probability.
    """
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown output activation {output_activation!r}: use one of "
                         f"{', '.join(OUTPUT_ACTIVATIONS)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSSES)}")
    if output_activation == "softmax":
        if loss != "cross_entropy":
            raise ValueError("a softmax output layer is trained with loss cross_entropy, not "
                             f"{loss}; use the sigmoid output layer for the quadratic loss")
        return "softmax_cross_entropy"
    if output_activation == "identity":
        if loss != "quadratic":
            raise ValueError(f"an identity output layer (regression) is trained with loss quadratic, not {loss}; "
                             "use the sigmoid or softmax output layer for the cross-entropy")
        return "squared_error"
    return loss


def task(output_activation: str) -> str:
    """``"regression"`` for an identity output layer, else ``"classification"``."""
    return "regression" if output_activation == "identity" else "classification"


def default_loss(output_activation: str) -> str:
    """The loss a network gets when none is given: quadratic, except cross-entropy for softmax outputs."""
    return "cross_entropy" if output_activation == "softmax" else "quadratic"


# Constants in the arrays' own dtype: a Python float operand costs a ufunc call about a
# quarter of its time (NumPy resolves the scalar's type at every call).
_HALF = {np.dtype(t): t(0.5) for t in (np.float32, np.float64)}
_ONE = {np.dtype(t): t(1.0) for t in (np.float32, np.float64)}
_ZERO = {np.dtype(t): t(0.0) for t in (np.float32, np.float64)}


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Plain (allocating) sigmoid, the reference formula the fused twins are tested against."""
    return 0.5 * np.tanh(0.5 * z) + 0.5


def softmax(z: np.ndarray) -> np.ndarray:
    """Plain (allocating) softmax over axis 0 (units x samples), max-shifted."""
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


#: Plain (allocating) reference formulas: each activation and its derivative from the output.
REFERENCE_ACTIVATIONS = {
    "sigmoid": (sigmoid, lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda z: z, np.ones_like),
}


class NumpyKernels:
    """The fused operations on NumPy arrays, each a short sequence of in-place ufunc calls."""

    def __init__(self):
        self._scratch: dict[tuple, np.ndarray] = {}
        self._columns: dict[int, np.ndarray] = {}

    def _buffer(self, shape, dtype, tag: str = "") -> np.ndarray:
        key = (tag, shape, dtype)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = np.empty(shape, dtype)
        return buf

    # -- forward --------------------------------------------------------------
    @staticmethod
    def activate_(z: np.ndarray, activation: str) -> None:
        """z <- act(z), in place, for ``sigmoid``, ``tanh``, ``relu`` or ``identity``.

        NumPy only: here the bias is already folded into the matrix product
        (:meth:`gpunn.nn.layout.RowLayout.forward`); the GPU path uses :meth:`bias_act`.
        """
        if activation == "sigmoid":
            half = _HALF[z.dtype]
            np.multiply(z, half, z)
            np.tanh(z, z)
            np.multiply(z, half, z)
            np.add(z, half, z)
        elif activation == "tanh":
            np.tanh(z, z)
        elif activation == "relu":
            np.maximum(z, _ZERO[z.dtype], out=z)
        elif activation != "identity":
            raise ValueError(f"unknown activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")

    def bias_act(self, z: np.ndarray, b: np.ndarray, activation: str) -> None:
        """z <- act(z + b[:, None]) in place: the weighted sums become the layer's outputs.

        Args:
            z: (units, samples) weighted sums ``W^T a_prev``.
            b: (units,) biases.
            activation: ``sigmoid``, ``tanh``, ``relu`` or ``identity`` (a softmax layer's logits).
        """
        np.add(z, b[:, None], out=z)
        self.activate_(z, activation)

    def softmax_(self, z: np.ndarray) -> None:
        """Each column of z (logits of one sample) becomes its softmax probabilities, in place.

        The same operations as the ``softmax_columns`` kernel: subtract the column's
        maximum, exponentiate, divide by the column's sum (added up row after row).
        """
        column = self._buffer((z.shape[1],), z.dtype, "smx")
        np.maximum.reduce(z, axis=0, out=column)
        np.subtract(z, self._spread(column, z.shape), out=z)
        np.exp(z, out=z)
        np.add.reduce(z, axis=0, out=column)
        np.divide(z, self._spread(column, z.shape), out=z)

    def _spread(self, column: np.ndarray, shape) -> np.ndarray:
        """``column`` copied into every row of a scratch matrix shaped ``shape``.

        A ufunc that broadcasts a row against a matrix (``z - column``) allocates an
        iteration buffer at every call (NumPy 2.4, measured: 6 KB for a 10 x 64 float64
        matrix); one of equal shapes allocates nothing, and the assignment that spreads
        the row allocates nothing either.
        """
        spread = self._buffer(shape, column.dtype, "spread")
        np.copyto(spread, column)
        return spread

    # -- dense layers: the three products of a step, each with its epilogue -------
    # Twins of the fused dense kernels (dense_forward_<act>, dense_backward_<act>,
    # dense_weight_grad): the same products by BLAS, then the same epilogues.  The
    # kernels add each product's terms in order of the inner index; BLAS in its own
    # order, so results agree to the rounding of a dot product, not to the bit.
    def dense_forward(self, wb: np.ndarray, a_in: np.ndarray, z: np.ndarray, activation: str) -> None:
        """z <- act([W; b]^T [A_prev; 1]): a layer's outputs from its inputs.

        Args:
            wb: the layer's ``[W; b]`` block, (inputs + 1, units).
            a_in: the inputs with a row of ones beneath them, (inputs + 1, samples).
            z: receives the outputs, (units, samples).
            activation: ``sigmoid``, ``tanh``, ``relu`` or ``identity``.
        """
        np.matmul(wb.T, a_in, out=z)
        self.activate_(z, activation)

    def dense_backward(self, w, delta, a_below, delta_below, activation: str) -> None:
        """delta_below <- (W delta) * act'(a_below): the chain rule one layer down.

        ``w`` (inputs, units) is the layer's weights without the bias row; ``a_below``
        (inputs, samples) holds the outputs of the layer below, whose activation is
        ``activation``.
        """
        np.matmul(w, delta, out=delta_below)
        self.act_backward(delta_below, a_below, activation)

    @staticmethod
    def dense_weight_grad(a_in, delta, grad) -> None:
        """grad <- [A_prev; 1] delta^T: the gradient of a layer's ``[W; b]`` block, bias last."""
        np.matmul(a_in, delta.T, out=grad)

    # -- backward -------------------------------------------------------------
    def act_backward(self, g: np.ndarray, a: np.ndarray, activation: str, tmp: np.ndarray | None = None) -> None:
        """g <- g * act'(z) in place, act' from the saved outputs ``a``: the chain rule through a layer.

        sigmoid ``a(1 - a)``, tanh ``1 - a^2``, relu ``1 where a > 0``.  ``tmp``: optional
        scratch shaped like ``a`` (else one from the cache).
        """
        if tmp is None:
            tmp = self._buffer(a.shape, a.dtype, "ab")
        if activation == "sigmoid":
            np.subtract(_ONE[a.dtype], a, tmp)
            np.multiply(tmp, a, tmp)
        elif activation == "tanh":
            np.multiply(a, a, tmp)
            np.subtract(_ONE[a.dtype], tmp, tmp)
        elif activation == "relu":
            # 1.0 where a > 0, else 0.0 (NaN included).  Straight into the float ``tmp`` the
            # comparison's bools would be cast through a buffer NumPy allocates per call;
            # a bool scratch and an assignment (which casts without one) allocate nothing.
            mask = self._buffer(a.shape, np.bool_, "relu")
            np.greater(a, _ZERO[a.dtype], out=mask)
            np.copyto(tmp, mask)
        elif activation == "identity":  # identity' = 1: g is already the answer
            return
        else:
            raise ValueError(f"unknown activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        np.multiply(g, tmp, g)

    def output_delta(self, a, labels, delta, loss_sum, correct, objective="quadratic", targets=None,
                     weights=None):
        """The output layer's error, fused with the batch's loss and correct-answer count.

        Args:
            a: (classes, samples) output activations; for ``softmax_cross_entropy`` the
                logits, which become the probabilities in place.
            labels: (samples,) int32 true classes (unused by ``squared_error``).
            delta: (classes, samples) buffer that receives dE/dz of the output layer:
                quadratic ``(a - t) a (1 - a)``; cross-entropy (sigmoid) and softmax
                cross-entropy ``a - t`` (``p - t``); squared error ``a - t``.
            loss_sum: 0-d float64 array; the batch's summed loss is added to it
                (quadratic and squared error ``1/2 |a - t|^2`` per sample; cross-entropy
                ``-sum[t log a + (1 - t) log(1 - a)]``, with the log's argument floored at
                :data:`CROSS_ENTROPY_FLOOR`; softmax cross-entropy ``-log p_label``,
                computed as ``log sum_j exp(z_j - max) - (z_label - max)``).
            correct: 0-d int64 array; the number of samples whose most active output
                (first one on ties) equals the label is added to it (nothing for
                ``squared_error``).
            objective: one of :data:`OBJECTIVES` (see :func:`objective`).
            targets: (classes, samples) float targets: required by ``squared_error``;
                for the label objectives the optional one-hot of ``labels`` (saves building it).
            weights: optional (samples,) weights: each sample's delta and loss are
                multiplied by its weight (after they are computed, as the kernels do).
        """
        classes, samples = a.shape
        tmp = self._buffer(a.shape, a.dtype, "od")
        if objective in TARGET_OBJECTIVES:
            self._float_target_delta(a, targets, delta, loss_sum, correct, objective, weights, tmp)
            return
        if objective == "softmax_cross_entropy":
            self._softmax_loss(a, labels, loss_sum, weights)
        if targets is None:
            targets = self._one_hot(labels, classes, a.dtype)
        np.subtract(a, targets, out=delta)
        if objective == "quadratic":
            if weights is None:
                # vdot sums in the array's dtype (the kernels sum in float64): one call
                # instead of two, and float32 is ample for a per-epoch loss report.
                np.add(loss_sum, 0.5 * np.vdot(delta, delta), out=loss_sum)
            else:
                np.multiply(delta, delta, out=tmp)
                self._add_loss(loss_sum, tmp, weights, 0.5)
            np.subtract(1.0, a, out=tmp)
            np.multiply(tmp, a, out=tmp)
            np.multiply(delta, tmp, out=delta)
        elif objective == "cross_entropy":
            # t a + (1 - t)(1 - a) == 1 - |a - t| for a one-hot t.
            np.abs(delta, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            np.maximum(tmp, CROSS_ENTROPY_FLOOR, out=tmp)
            np.log(tmp, out=tmp)
            self._add_loss(loss_sum, tmp, weights, -1.0)
        elif objective != "softmax_cross_entropy":
            raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
        if weights is not None:
            np.multiply(delta, weights, out=delta)
        # np.argmax over axis 0 copies its input; a transposed copy into a scratch buffer
        # followed by a row-wise argmax allocates nothing.
        by_sample = self._buffer((samples, classes), a.dtype, "byrow")
        np.copyto(by_sample, a.T)
        predicted = self._buffer((samples,), np.intp, "pred")
        np.argmax(by_sample, axis=1, out=predicted)
        hits = self._buffer((samples,), np.bool_, "hits")
        np.equal(predicted, labels, out=hits)
        np.add(correct, np.count_nonzero(hits), out=correct)

    def _float_target_delta(self, a, targets, delta, loss_sum, correct, objective, weights, tmp) -> None:
        """:meth:`output_delta` for float targets: ``delta = a - t`` (times the weights); the loss is
        ``squared_error``'s 1/2 (a - t)^2 or ``multilabel_cross_entropy``'s per-output binary
        cross-entropy, which also counts the samples whose every output is on the right side of 0.5."""
        np.subtract(a, targets, out=delta)
        if objective == "squared_error":
            np.multiply(delta, delta, out=tmp)
            self._add_loss(loss_sum, tmp, weights, 0.5)
        else:
            np.abs(delta, out=tmp)  # t a + (1 - t)(1 - a) == 1 - |a - t| for t of 0 or 1
            np.subtract(1.0, tmp, out=tmp)
            np.maximum(tmp, CROSS_ENTROPY_FLOOR, out=tmp)
            np.log(tmp, out=tmp)
            self._add_loss(loss_sum, tmp, weights, -1.0)
            above = self._buffer(a.shape, np.bool_, "ml_a")
            wanted = self._buffer(a.shape, np.bool_, "ml_t")
            np.greater(a, a.dtype.type(0.5), out=above)
            np.greater(targets, a.dtype.type(0.5), out=wanted)
            np.equal(above, wanted, out=above)
            hits = self._buffer((a.shape[1],), np.bool_, "ml_hits")
            np.logical_and.reduce(above, axis=0, out=hits)
            np.add(correct, np.count_nonzero(hits), out=correct)
        if weights is not None:
            np.multiply(delta, weights, out=delta)

    @staticmethod
    def _add_loss(loss_sum, terms, weights, factor: float) -> None:
        """loss_sum += factor * (the sum of ``terms``, each column weighted by ``weights`` when given)."""
        if weights is not None:
            np.multiply(terms, weights, out=terms)
        np.add(loss_sum, factor * terms.sum(dtype=np.float64), out=loss_sum)

    def _softmax_loss(self, z, labels, loss_sum, weights=None) -> None:
        """z (logits) <- softmax(z) in place, adding the samples' -log p_label to ``loss_sum``.

        The loss comes from the max-shifted logits, ``log sum exp(z - max) - (z_label - max)``,
        so it stays finite where p_label itself would underflow to 0.  ``weights``: optional
        per-sample weights of the loss.
        """
        classes, samples = z.shape
        column = self._buffer((samples,), z.dtype, "sl_max")
        at_label = self._buffer((samples,), z.dtype, "sl_lab")
        np.maximum.reduce(z, axis=0, out=column)
        np.subtract(z, self._spread(column, z.shape), out=z)
        np.take(z.reshape(-1), self._flat_index(labels, samples), out=at_label, mode="clip")
        np.exp(z, out=z)
        np.add.reduce(z, axis=0, out=column)
        np.divide(z, self._spread(column, z.shape), out=z)
        np.log(column, out=column)
        np.subtract(column, at_label, out=column)
        self._add_loss(loss_sum, column, weights, 1.0)

    def output_error(self, a, targets, delta, objective="quadratic", scale=1.0, tmp=None, weights=None):
        """delta <- scale * dE/dz of the output layer, without the loss and accuracy bookkeeping.

        The NumPy trainer's cheaper variant of :meth:`output_delta`: it keeps the batch's
        outputs and works out the epoch's loss and accuracy from them once, at the end
        of the epoch (:class:`gpunn.nn.layout.OutputRecord`).  ``scale`` folds the SGD step
        size eta/m into the (small) delta, so the update of the (large) parameter buffer
        is a single subtraction.  ``tmp``: optional scratch shaped like ``a``.  For
        ``softmax_cross_entropy`` ``a`` holds the logits and receives the probabilities.
        ``targets``: one-hot, or for ``squared_error`` the float targets; ``weights``:
        optional per-sample weights, multiplied into each sample's delta last.
        """
        if objective == "softmax_cross_entropy":
            self.softmax_(a)
        # targets is usually a transposed view; a ufunc mixing memory orders buffers
        # (allocates), a copy into delta's order does not.
        np.copyto(delta, targets)
        np.subtract(a, delta, delta)
        scale = a.dtype.type(scale)
        if objective == "quadratic":
            if tmp is None:
                tmp = self._buffer(a.shape, a.dtype, "oe")
            np.subtract(_ONE[a.dtype], a, tmp)
            np.multiply(tmp, a, tmp)
            if scale != 1:
                np.multiply(tmp, scale, tmp)
            np.multiply(delta, tmp, delta)
        elif objective in ("cross_entropy", "softmax_cross_entropy", *TARGET_OBJECTIVES):
            if scale != 1:
                np.multiply(delta, scale, delta)
        else:
            raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
        if weights is not None:
            np.multiply(delta, weights, delta)

    def _flat_index(self, labels, samples):
        """labels * samples + column: where each sample's label sits in a flattened (classes, samples) array."""
        flat = self._buffer((samples,), np.intp, "flat")
        columns = self._columns.get(samples)
        if columns is None:
            columns = self._columns[samples] = np.arange(samples, dtype=np.intp)
        np.multiply(labels, samples, out=flat)
        np.add(flat, columns, out=flat)
        return flat

    def _one_hot(self, labels, classes, dtype):
        samples = labels.shape[0]
        t = self._buffer((classes, samples), dtype, "onehot")
        t.fill(0)
        np.put(t, self._flat_index(labels, samples), 1)
        return t

    # -- update ---------------------------------------------------------------
    def sgd_update(self, theta, grad, velocity, lr, inv_m, momentum=0.0, weight_decay=0.0, nesterov=False,
                   lr_scale=None):
        """One SGD step over the whole flat parameter buffer, in place (``torch.optim.SGD``'s arithmetic).

        With ``g = grad * inv_m + weight_decay * theta`` (``grad`` is the batch *sum* of
        per-sample gradients, ``inv_m`` = 1/batch size): plain ``theta -= lr g``; with
        momentum ``v = momentum v + g`` and ``theta -= lr v``, or with Nesterov
        ``theta -= lr (g + momentum v)``.  ``lr_scale``: optional per-parameter multiplier
        of the step (the per-layer step sizes).  ``grad``'s contents are undefined
        afterwards (it is used as scratch).
        """
        if not momentum and not weight_decay and lr_scale is None:
            np.multiply(grad, lr * inv_m, out=grad)
            np.subtract(theta, grad, out=theta)
            return
        g = grad
        np.multiply(g, inv_m, out=g)
        if weight_decay:
            tmp = self._buffer(theta.shape, theta.dtype, "wd")
            np.multiply(theta, weight_decay, out=tmp)
            np.add(g, tmp, out=g)
        if momentum:
            np.multiply(velocity, momentum, out=velocity)
            np.add(velocity, g, out=velocity)
            if nesterov:
                tmp = self._buffer(theta.shape, theta.dtype, "nag")
                np.multiply(velocity, momentum, out=tmp)
                np.add(g, tmp, out=g)
            else:
                g = velocity
        tmp = self._buffer(theta.shape, theta.dtype, "lr")
        np.multiply(g, lr, out=tmp)
        if lr_scale is not None:
            np.multiply(tmp, lr_scale, out=tmp)
        np.subtract(theta, tmp, out=theta)

    def adam_update(self, theta, grad, m, v, step, inv_m, lr, beta1, beta2, eps, weight_decay=0.0,
                    decoupled=False):
        """One Adam (or AdamW, ``decoupled``) step over the flat buffer, in place.

        ``step`` is a 0-d int32 array holding the number of this step (1 for the first),
        from which the bias corrections are computed exactly as ``torch.optim.Adam`` does;
        ``m`` and ``v`` are the moment buffers.  Weight decay is an L2 term added to the
        gradient for Adam and a decoupled shrink ``theta *= 1 - lr * weight_decay`` for
        AdamW.  The same operations, in the same order, as the ``adam_update`` kernel
        (see ``gpunn_math.cuh``); ``grad``'s contents are undefined afterwards.
        """
        dtype = theta.dtype.type
        t = int(step)
        step_size = lr / (1.0 - beta1 ** t)
        bias_correction2_sqrt = (1.0 - beta2 ** t) ** 0.5
        g = grad
        np.multiply(g, dtype(inv_m), out=g)
        tmp = self._buffer(theta.shape, theta.dtype, "adam")
        if weight_decay and not decoupled:
            np.multiply(theta, dtype(weight_decay), out=tmp)
            np.add(g, tmp, out=g)
        if weight_decay and decoupled:
            np.multiply(theta, dtype(1.0 - lr * weight_decay), out=theta)
        np.subtract(g, m, out=tmp)                      # m <- m + (1 - beta1)(g - m)
        np.multiply(tmp, dtype(1.0 - beta1), out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(g, dtype(1.0 - beta2), out=tmp)     # v <- v beta2 + (1 - beta2) g g
        np.multiply(tmp, g, out=tmp)
        np.multiply(v, dtype(beta2), out=v)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)                             # theta -= step_size m / (sqrt(v)/bc2 + eps)
        np.divide(tmp, dtype(bias_correction2_sqrt), out=tmp)
        np.add(tmp, dtype(eps), out=tmp)
        np.divide(m, tmp, out=tmp)
        np.multiply(tmp, dtype(step_size), out=tmp)
        np.subtract(theta, tmp, out=theta)

    # -- CUDA-graph helpers ------------------------------------------------------
    @staticmethod
    def gather_batch(src, labels_src, order, step, out, labels_out, batch, first=0):
        """out[:, c] = src[:, order[step*batch + first + c]], labels likewise.

        The twin of the kernel that lets a CUDA graph gather a new batch at each replay:
        ``step`` is a 0-d int32 array holding the step number.
        """
        offset = int(step) * batch + first
        index = order[offset : offset + out.shape[1]]
        np.take(src, index, axis=1, out=out, mode="clip")
        np.take(labels_src, index, out=labels_out, mode="clip")

    @staticmethod
    def gather_columns(src, order, step, out, batch, first=0):
        """out[:, c] = src[:, order[step*batch + first + c]]: the twin of the ``gather_columns`` kernel."""
        offset = int(step) * batch + first
        np.take(src, order[offset : offset + out.shape[1]], axis=1, out=out, mode="clip")

    @staticmethod
    def advance_step(step):
        """step += 1."""
        np.add(step, 1, out=step)
