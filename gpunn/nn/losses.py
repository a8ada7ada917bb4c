"""The costs a network can be trained on, as plain (allocating) reference formulas.

The training step never calls these: it uses the fused ``output_delta`` operation
(:mod:`gpunn.compute.ops` and the CUDA kernels), which computes the same delta together with
the loss sum and the correct-answer count in one pass.  These readable versions are
what the fused ones are tested against, and what the docs point to.

For one sample with output activations ``a``, one-hot target ``t`` and weighted
inputs ``z`` of the output layer (``a = sigma(z)`` for sigmoid outputs):

* quadratic (the tutorial's): ``E = 1/2 sum (a - t)^2``, ``dE/dz = (a - t) a (1 - a)``;
* cross-entropy on sigmoid outputs: ``E = -sum [t ln a + (1 - t) ln(1 - a)]``,
  ``dE/dz = a - t``: the sigmoid's slope cancels, so saturated wrong outputs still
  learn fast;
* softmax cross-entropy: ``p = softmax(z)``, ``E = -ln p_label``, ``dE/dz = p - t``.
  (Its reference takes the logits ``z``, not ``p``.)
* squared error (regression: identity outputs ``a = z``, float targets ``t``):
  ``E = 1/2 sum (a - t)^2``, ``dE/dz = a - t``.
"""

from __future__ import annotations

import numpy as np

from gpunn.compute.ops import CROSS_ENTROPY_FLOOR


def one_hot(labels, classes: int, dtype=np.float64) -> np.ndarray:
    """(classes, samples) one-hot columns for integer labels."""
    t = np.zeros((classes, len(labels)), dtype=dtype)
    t[labels, np.arange(len(labels))] = 1
    return t


def quadratic_terms(a, t):
    """Each output's share of the quadratic cost, ``1/2 (a - t)^2`` (the tutorial's error)."""
    return 0.5 * (a - t) ** 2


def quadratic(a, t):
    """Summed loss and dE/dz for the quadratic cost; ``a``, ``t`` are (classes, samples)."""
    return np.sum(quadratic_terms(a, t)), (a - t) * a * (1 - a)


def cross_entropy_terms(a, t):
    """Each output's share of the cross-entropy, ``-ln(t a + (1 - t)(1 - a))``, floored like the kernels.

    For targets of 0 or 1 (one-hot labels, all that training uses) this is the binary
    cross-entropy ``-[t ln a + (1 - t) ln(1 - a)]``, whose gradient is ``a - t``; for
    other targets it is not, and :func:`cross_entropy`'s delta does not belong to it.
    """
    return -np.log(np.maximum(t * a + (1 - t) * (1 - a), CROSS_ENTROPY_FLOOR))


def cross_entropy(a, t):
    """Summed loss and dE/dz for the cross-entropy cost (log argument floored like the kernels)."""
    return np.sum(cross_entropy_terms(a, t)), a - t


def _log_softmax(z):
    shifted = z - z.max(axis=0)
    return shifted - np.log(np.exp(shifted).sum(axis=0))


def softmax_cross_entropy_terms(z, t):
    """Each output's share of softmax cross-entropy, ``-t ln p`` (nonzero at the label only), from logits."""
    return -t * _log_softmax(z)


def softmax_cross_entropy(z, t):
    """Summed loss and dE/dz for softmax + categorical cross-entropy, from the logits ``z``."""
    log_p = _log_softmax(z)
    return -np.sum(t * log_p), np.exp(log_p) - t


def squared_error_terms(a, t):
    """Each output's share of the regression loss, ``1/2 (a - t)^2`` (identity outputs, float targets)."""
    return 0.5 * (a - t) ** 2


def squared_error(a, t):
    """Summed loss and dE/dz for identity outputs and the squared error: ``a - t``."""
    return np.sum(squared_error_terms(a, t)), a - t


#: Reference formulas by objective (see :func:`gpunn.compute.ops.objective`).
LOSS_FUNCTIONS = {"quadratic": quadratic, "cross_entropy": cross_entropy,
                  "softmax_cross_entropy": softmax_cross_entropy, "squared_error": squared_error}
#: Each output unit's share of the loss, by objective (they add up to the loss above).
LOSS_TERMS = {"quadratic": quadratic_terms, "cross_entropy": cross_entropy_terms,
              "softmax_cross_entropy": softmax_cross_entropy_terms, "squared_error": squared_error_terms}
