"""Stochastic gradient descent over the flat parameter buffer.

Every weight and bias moves downhill, ``theta <- theta - (eta/m) sum_batch grad``,
in ONE fused operation over the whole buffer (one kernel on the GPU), however many
layers the network has.

Momentum (PyTorch's convention): ``v <- mu v + g; theta <- theta - eta v``.
Weight decay adds ``lambda theta`` to the mean gradient ``g`` (L2 regularisation of
``lambda/2 |theta|^2`` per sample).  It applies to every parameter in the buffer,
biases included, like PyTorch's ``SGD(weight_decay=...)`` over all parameters.
"""

from __future__ import annotations


class SGD:
    """Minibatch SGD with optional momentum and weight decay; state is one velocity buffer."""

    def __init__(self, backend, size: int, dtype, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"the learning rate must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight decay must be non-negative, got {weight_decay}")
        self.backend = backend
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = None
        if self.momentum:
            with backend.device():
                self.velocity = backend.xp.zeros(size, dtype=dtype)

    def matches(self, lr, momentum, weight_decay) -> bool:
        return (self.lr, self.momentum, self.weight_decay) == (float(lr), float(momentum), float(weight_decay))

    def step(self, params, grads, m: int) -> None:
        """Apply the summed gradients of a batch of ``m`` samples (``grads`` is consumed)."""
        self.backend.kernels.sgd_update(params, grads, self.velocity, self.lr, 1.0 / m,
                                        self.momentum, self.weight_decay)

    @property
    def plain(self) -> bool:
        """No momentum and no weight decay: the step is theta -= (eta/m) sum grad and nothing else."""
        return not self.momentum and not self.weight_decay

    def step_prescaled(self, params, scaled_grads) -> None:
        """Plain SGD when the gradients already carry the factor eta/m: one subtraction.

        The NumPy trainer folds eta/m into the output layer's (small) delta, so the
        gradient comes out scaled and the (large) parameter buffer is touched once.
        """
        self.backend.xp.subtract(params, scaled_grads, out=params)
