"""A network's loss and gradient over a whole data set, as one function of one float64 vector.

SciPy's L-BFGS-B (``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``) wants
``f(theta) -> (loss, gradient)`` over a flat float64 vector.  gpunn keeps every weight
and bias in one flat buffer already (:class:`gpunn.network.ParameterLayout`), so
:class:`FullBatchObjective` copies ``theta`` into that buffer, runs gpunn's own forward
pass and backprop over the whole training set (the fused output delta adds up the
loss on the way), and hands the flat gradient buffer back: one array in, one out.

The objective is scikit-learn's for its ``lbfgs`` solver: the mean loss per sample
(weighted by the samples' weights when given), plus ``alpha / (2 n) ||W||^2`` over the
weights only (biases are not penalised), with ``n`` the number of samples or the sum of
their weights, and its gradient.  This is the one place in
gpunn where the L2 penalty spares the biases: the optimizers' weight decay covers
the whole buffer.

Limits: the whole data set is one workspace (memory ~ samples x widest layer); each
call reads the loss back from the device (L-BFGS needs it on the host anyway).
"""

from __future__ import annotations

import numpy as np

from gpunn.compute.backend import to_numpy


class FullBatchObjective:
    """``objective(theta) -> (loss, gradient)`` of ``network`` on ``(X, y)``, both float64 on the host.

    Args:
        network: a :class:`gpunn.Network` whose scaling, classes or target
            standardisation are already fitted (they are applied to ``X`` and ``y``).
        X, y: the training data.
        sample_weight: optional per-sample weights.
        alpha: the L2 penalty's strength (scikit-learn's ``alpha``): one number, or one per layer.
        loss_scale: multiplies the loss and its gradient (e.g. 1/outputs, to average a
            regression loss over the outputs as scikit-learn does).
    """

    def __init__(self, network, X, y, sample_weight=None, alpha: float = 0.0, loss_scale: float = 1.0):
        self.network = network
        samples, answers, weights = network.device_data(X, y, sample_weight=sample_weight)
        self.n = network.sample_count(samples)
        self.loss_scale = float(loss_scale)
        #: what the penalty is divided by: the samples, or the sum of their weights (scikit-learn's sw_sum)
        self.penalty_n = self.n if sample_weight is None else float(np.sum(sample_weight))
        xp = network.backend.xp
        with network.backend.device():
            self.ws = ws = network.workspace(self.n, sample_weight is not None)
            ws.set_inputs(samples, 0, self.n)  # NumPy's rows bring their targets and weights along
            if ws.rows is None:  # the column layout: float targets and weights travel beside the samples
                if ws.targets is not None:
                    ws.targets[...] = answers
                if weights is not None:
                    ws.weights[...] = weights
            if not network.float_targets:
                ws.labels[...] = answers
            self.loss_sum = xp.zeros((), dtype=np.float64)
            self.correct = xp.zeros((), dtype=np.int64)
        #: each parameter's penalty strength: its layer's alpha for a weight, 0 for a bias
        strength = np.empty(network.layout.size)
        alphas = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (network.layout.n_layers,))
        for layer, block in enumerate(network.layout.blocks(strength)):
            block[:-1] = alphas[layer]
            block[-1] = 0.0
        self.strength = strength

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        network = self.network
        with network.backend.device():
            network.params[...] = network.backend.xp.asarray(theta, dtype=network.dtype)
            self.loss_sum.fill(0)
            network.forward(self.ws)
            with np.errstate(all="ignore"):  # a wild step of the line search may overflow; L-BFGS copes
                network.backward(self.ws, self.loss_sum, self.correct)
            grad = to_numpy(network.grads).astype(np.float64)
            loss = float(self.loss_sum)
        theta = np.asarray(theta, dtype=np.float64)
        penalised = theta * self.strength
        loss = loss * self.loss_scale / self.n + 0.5 * float(penalised @ theta) / self.penalty_n
        grad = grad * (self.loss_scale / self.n) + penalised / self.penalty_n
        return loss, grad

    def initial(self) -> np.ndarray:
        """The network's parameters now, as the float64 vector L-BFGS starts from."""
        return to_numpy(self.network.params).astype(np.float64)
