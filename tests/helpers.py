"""Small shared helpers for the tests (plain functions, imported by test modules)."""

import numpy as np

from gpunn.nn.losses import LOSS_FUNCTIONS, one_hot
from gpunn.compute.ops import REFERENCE_ACTIVATIONS


def reference_outputs(net, X):
    """The network's outputs (classes, samples) by the plain, allocating formulas (float64)."""
    a = np.asarray(X, dtype=np.float64).T
    weights = net.get_weights()
    layers = list(zip(weights[::2], weights[1::2]))
    for layer, (W, b) in enumerate(layers):
        z = W.T.astype(np.float64) @ a + b.astype(np.float64)[:, None]
        kind = net.activation if layer < len(layers) - 1 else net.output_activation
        a = z if kind == "softmax" else REFERENCE_ACTIVATIONS[kind][0](z)
    return a


def reference_loss(net, X, y):
    """Summed loss of ``net`` on (X, y) by the plain, allocating formulas (float64)."""
    loss, _ = LOSS_FUNCTIONS[net.objective](reference_outputs(net, X), one_hot(y, net.sizes[-1]))
    return loss


def batch_gradient(net, X, y):
    """The flat gradient of the summed loss on (X, y) computed by ``net.backward``."""
    xp = net.backend.xp
    ws = net.workspace(len(X))
    samples, labels = net.device_samples(X, y)
    ws.set_inputs(samples, 0, len(X))
    ws.labels[...] = labels
    loss_sum = xp.zeros((), dtype=np.float64)
    correct = xp.zeros((), dtype=np.int64)
    net.forward(ws)
    net.backward(ws, loss_sum, correct)
    grads = net.grads.get() if hasattr(net.grads, "get") else net.grads
    return np.array(grads, dtype=np.float64), float(loss_sum), int(correct)
