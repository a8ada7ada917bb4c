"""The fused operations of one training step, as NumPy twins of the CUDA kernels.

Every CUDA kernel in ``kernels/`` has a twin here with the same arguments and the
same meaning, so that one training step can be written once and run on any
backend: :class:`NumpyKernels` (this module), ``CupyKernels`` (the kernels on a
GPU, :mod:`gpunn.cuda_kernels`) and ``HostKernels`` (the same kernel sources
compiled for the CPU, :mod:`gpunn.host_kernels`).

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

LOSSES = ("quadratic", "cross_entropy")

#: Floor for ``1 - |a - t|`` inside the cross-entropy's logarithm, so that a
#: saturated wrong answer costs ``-log(1e-12) ~ 27.6`` instead of infinity.
CROSS_ENTROPY_FLOOR = 1e-12


# Constants in the arrays' own dtype: a Python float operand costs a ufunc call about a
# quarter of its time (NumPy resolves the scalar's type at every call).
_HALF = {np.dtype(t): t(0.5) for t in (np.float32, np.float64)}
_ONE = {np.dtype(t): t(1.0) for t in (np.float32, np.float64)}


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Plain (allocating) sigmoid, the reference formula the fused twins are tested against."""
    return 0.5 * np.tanh(0.5 * z) + 0.5


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
    def sigmoid_(z: np.ndarray) -> None:
        """z <- sigmoid(z), in place.

        NumPy only: here the bias is already folded into the matrix product
        (:meth:`gpunn.network.Network.forward`); the GPU path uses :meth:`bias_sigmoid`.
        """
        half = _HALF[z.dtype]
        np.multiply(z, half, z)
        np.tanh(z, z)
        np.multiply(z, half, z)
        np.add(z, half, z)

    def bias_sigmoid(self, z: np.ndarray, b: np.ndarray) -> None:
        """z <- sigmoid(z + b[:, None]) in place: the weighted sum becomes the layer's output.

        Args:
            z: (units, samples) weighted sums ``W^T a_prev``.
            b: (units,) biases.
        """
        np.add(z, b[:, None], out=z)
        self.sigmoid_(z)

    # -- backward -------------------------------------------------------------
    def sigmoid_backward(self, g: np.ndarray, a: np.ndarray, tmp: np.ndarray | None = None) -> None:
        """g <- g * a * (1 - a) in place: the chain rule through a sigmoid layer.

        ``tmp``: optional scratch shaped like ``a`` (else one from the cache).
        """
        if tmp is None:
            tmp = self._buffer(a.shape, a.dtype, "sb")
        np.subtract(_ONE[a.dtype], a, tmp)
        np.multiply(tmp, a, tmp)
        np.multiply(g, tmp, g)

    def output_delta(self, a, labels, delta, loss_sum, correct, loss="quadratic", targets=None):
        """The output layer's error, fused with the batch's loss and correct-answer count.

        Args:
            a: (classes, samples) output activations.
            labels: (samples,) int32 true classes.
            delta: (classes, samples) buffer that receives dE/dz of the output layer:
                quadratic ``(a - t) a (1 - a)``; cross-entropy ``a - t``.
            loss_sum: 0-d float64 array; the batch's summed loss is added to it
                (quadratic ``1/2 |a - t|^2`` per sample; cross-entropy
                ``-sum[t log a + (1 - t) log(1 - a)]``, with the log's argument floored at
                :data:`CROSS_ENTROPY_FLOOR`).
            correct: 0-d int64 array; the number of samples whose most active output
                (first one on ties) equals the label is added to it.
            loss: ``"quadratic"`` or ``"cross_entropy"``.
            targets: optional (classes, samples) one-hot of ``labels``; saves building it.
        """
        classes, samples = a.shape
        if targets is None:
            targets = self._one_hot(labels, classes, a.dtype)
        np.subtract(a, targets, out=delta)
        tmp = self._buffer(a.shape, a.dtype, "od")
        if loss == "quadratic":
            # vdot sums in the array's dtype (the kernels sum in float64): one call
            # instead of two, and float32 is ample for a per-epoch loss report.
            np.add(loss_sum, 0.5 * np.vdot(delta, delta), out=loss_sum)
            np.subtract(1.0, a, out=tmp)
            np.multiply(tmp, a, out=tmp)
            np.multiply(delta, tmp, out=delta)
        elif loss == "cross_entropy":
            # t a + (1 - t)(1 - a) == 1 - |a - t| for a one-hot t.
            np.abs(delta, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            np.maximum(tmp, CROSS_ENTROPY_FLOOR, out=tmp)
            np.log(tmp, out=tmp)
            np.subtract(loss_sum, tmp.sum(dtype=np.float64), out=loss_sum)
        else:
            raise ValueError(f"unknown loss {loss!r}: use one of {LOSSES}")
        # np.argmax over axis 0 copies its input; a transposed copy into a scratch buffer
        # followed by a row-wise argmax allocates nothing.
        by_sample = self._buffer((samples, classes), a.dtype, "byrow")
        np.copyto(by_sample, a.T)
        predicted = self._buffer((samples,), np.intp, "pred")
        np.argmax(by_sample, axis=1, out=predicted)
        hits = self._buffer((samples,), np.bool_, "hits")
        np.equal(predicted, labels, out=hits)
        np.add(correct, np.count_nonzero(hits), out=correct)

    def output_error(self, a, targets, delta, loss="quadratic", scale=1.0, tmp=None):
        """delta <- scale * dE/dz of the output layer, without the loss and accuracy bookkeeping.

        The NumPy trainer's cheaper variant of :meth:`output_delta`: it keeps the batch's
        outputs and works out the epoch's loss and accuracy from them once, at the end
        of the epoch (:class:`gpunn.train.OutputRecord`).  ``scale`` folds the SGD step
        size eta/m into the (small) delta, so the update of the (large) parameter buffer
        is a single subtraction.  ``tmp``: optional scratch shaped like ``a``.
        """
        # targets is usually a transposed view; a ufunc mixing memory orders buffers
        # (allocates), a copy into delta's order does not.
        np.copyto(delta, targets)
        np.subtract(a, delta, delta)
        scale = a.dtype.type(scale)
        if loss == "quadratic":
            if tmp is None:
                tmp = self._buffer(a.shape, a.dtype, "oe")
            np.subtract(_ONE[a.dtype], a, tmp)
            np.multiply(tmp, a, tmp)
            if scale != 1:
                np.multiply(tmp, scale, tmp)
            np.multiply(delta, tmp, delta)
        elif loss == "cross_entropy":
            if scale != 1:
                np.multiply(delta, scale, delta)
        else:
            raise ValueError(f"unknown loss {loss!r}: use one of {LOSSES}")

    def _one_hot(self, labels, classes, dtype):
        samples = labels.shape[0]
        t = self._buffer((classes, samples), dtype, "onehot")
        flat = self._buffer((samples,), np.intp, "flat")
        columns = self._columns.get(samples)
        if columns is None:
            columns = self._columns[samples] = np.arange(samples, dtype=np.intp)
        t.fill(0)
        np.multiply(labels, samples, out=flat)
        np.add(flat, columns, out=flat)
        np.put(t, flat, 1)
        return t

    # -- update ---------------------------------------------------------------
    def sgd_update(self, theta, grad, velocity, lr, inv_m, momentum=0.0, weight_decay=0.0):
        """One SGD step over the whole flat parameter buffer, in place.

        With ``g = grad * inv_m + weight_decay * theta`` (``grad`` is the batch *sum* of
        per-sample gradients, ``inv_m`` = 1/batch size):
        plain ``theta -= lr g``; with momentum ``v = momentum v + g; theta -= lr v``.
        ``grad``'s contents are undefined afterwards (it is used as scratch).
        """
        if not momentum and not weight_decay:
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
            g = velocity
        tmp = self._buffer(theta.shape, theta.dtype, "lr")
        np.multiply(g, lr, out=tmp)
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
    def advance_step(step):
        """step += 1."""
        np.add(step, 1, out=step)
