"""The optimizers: how every weight and bias moves downhill, over one flat parameter buffer.

Each optimizer updates the whole flat buffer (:class:`gpunn.nn.parameters.ParameterLayout`)
in ONE fused operation per step (one kernel on the GPU), however many layers the
network has, and keeps its state in flat buffers of the same length:

``sgd``
    ``torch.optim.SGD``'s arithmetic: ``g = mean grad + weight_decay * theta``; with
    momentum ``v <- momentum v + g`` and ``theta <- theta - lr v`` (or, with Nesterov,
    ``theta <- theta - lr (g + momentum v)``); without, ``theta <- theta - lr g``.
    Optionally a per-layer step size (``lr_scale``, see :func:`lr_scaling_rates`).
``adam``, ``adamw``
    ``torch.optim.Adam`` / ``AdamW`` with their bias corrections; Adam's weight decay is
    an L2 term added to the gradient, AdamW's a decoupled ``theta *= 1 - lr * weight_decay``.
    The step counter lives in device memory, so a captured CUDA graph stays correct.

On the NumPy backend the update runs as one compiled loop over the buffers
(:mod:`gpunn.compute.cpu_updates`) when the host C++ compiler is there, else as the
NumPy twins of the kernels; both give the same results to float rounding.

Weight decay applies to every parameter in the buffer, biases included, like PyTorch's
optimizers over all parameters.  An optimizer's :meth:`~Optimizer.settings` and
:meth:`~Optimizer.state` are what a model file stores, so that resuming is exact.
"""

from __future__ import annotations

import math

import numpy as np

from gpunn.compute.cpu_updates import CpuUpdates, cpu_updates

OPTIMIZERS = ("sgd", "adam", "adamw")
#: The learning rate each optimizer gets when none is given: the tutorial's eta = 3 for
#: SGD on sigmoid units (with per-layer step sizes, see :func:`lr_scaling_rates`), PyTorch's
#: default for Adam and AdamW.
DEFAULT_LR = {"sgd": 3.0, "adam": 1e-3, "adamw": 1e-3}
#: SGD's learning rate for a regression network when none is given: its identity outputs are
#: unbounded, so the sigmoid tutorial's eta = 3 makes the squared error diverge (measured on the
#: smooth three-feature target of the tests: 0.3 already jumps about, 0.1 learns it to R^2 0.96).
REGRESSION_SGD_LR = 0.1
#: Weight decay when none is given: 0, except AdamW's 0.01 (PyTorch's default).
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}
LR_SCALINGS = ("fan_in", "none")
#: The fan-in at which the per-layer step size equals ``lr`` (the embedded digits' 64 inputs).
REFERENCE_FAN_IN = 64


def lr_scaling_rates(sizes, scaling: str) -> list[float]:
    """Each layer's multiplier of the learning rate: all 1 for ``none``; for ``fan_in``, by fan-in n:

    * hidden layers: ``min(1, sqrt(64 / n))``, LeCun, Bottou, Orr and Mueller's rule
      ("Efficient BackProp", 1998, section 4.7: step sizes proportional to 1/sqrt(fan-in));
    * the output layer: ``min(1, 64 / n)``.

    Why: one SGD step changes a unit's weighted sum by about ``eta * delta * sum_i a_i^2``
    over its n inputs.  Sigmoid outputs are all positive, so that sum grows like n, not
    like sqrt(n).  At the output layer the deltas of a one-hot target agree in sign
    (nine of ten outputs are pushed down on every sample), so the steps add up
    coherently and the whole layer saturates at once unless the step shrinks like 1/n:
    with eta = 3, 784-512-512-10 on MNIST collapses to chance in its first epoch
    without scaling, and also with 1/sqrt(n) on every layer.  A hidden unit's delta mixes
    the output errors with weights of both signs, so its steps add up like a random walk
    and LeCun's 1/sqrt(n) suffices; shrinking them like 1/n as well left a 784-1024-1024-
    1024-10 net at 0.69 test accuracy after 10 epochs, against 0.91 with this rule (see the
    README).  Layers of at most :data:`REFERENCE_FAN_IN` inputs keep ``lr`` itself, so the
    tutorial's eta = 3 on the 8x8 digits (64 inputs, 64 hidden units) is unchanged.
    """
    if scaling not in LR_SCALINGS:
        raise ValueError(f"unknown lr scaling {scaling!r}: use one of {', '.join(LR_SCALINGS)}")
    if scaling == "none":
        return [1.0] * (len(sizes) - 1)
    *hidden, output = sizes[:-1]
    return [min(1.0, math.sqrt(REFERENCE_FAN_IN / n)) for n in hidden] + [min(1.0, REFERENCE_FAN_IN / output)]


def _positive(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _fraction(name: str, value, low_open: bool = False) -> float:
    value = float(value)
    if not (0 < value < 1 if low_open else 0 <= value < 1):
        raise ValueError(f"{name} must be in {'(' if low_open else '['}0, 1), got {value}")
    return value


def _non_negative(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return value


def update_kernels(backend):
    """What runs an optimizer's update on ``backend``: its kernels, or on NumPy the compiled loops.

    The NumPy backend gets :class:`~gpunn.compute.cpu_updates.CpuUpdates` when they build
    (and ``GPUNN_CPU_UPDATES`` allows them), else its NumPy twins; the kernel backends
    always run their own ``sgd_update`` / ``adam_update`` kernels.
    """
    if backend.name == "numpy":
        compiled = cpu_updates()
        if compiled is not None:
            return compiled
    return backend.kernels


class Optimizer:
    """What every optimizer offers the trainer and the model files."""

    name = ""
    backend = None
    _updates = None
    #: (params, grads, hyper-parameters, their update as a call taking 1/m), see :meth:`_update_of`
    _bound = None

    @property
    def updates(self):
        """What runs the update (:func:`update_kernels`), found on first use."""
        if self._updates is None:
            self._updates = update_kernels(self.backend)
        return self._updates

    def _update_of(self, params, grads):
        """The update of ``params`` by ``grads`` as a call taking 1/m, made again only when something changed.

        A trainer passes the same buffers at every step; binding them once saves the
        compiled updates their checks and address look-ups at each step.  The
        hyper-parameters are compared at every step (scikit-learn's ``partial_fit``
        changes the weight decay of a live optimizer).
        """
        hyper = self._hyper()
        bound = self._bound
        if bound is None or bound[0] is not params or bound[1] is not grads or bound[2] != hyper:
            bound = self._bound = (params, grads, hyper, self._bind(params, grads, hyper))
        return bound[3]

    def _hyper(self) -> tuple:
        """The scalar hyper-parameters the update takes, in the order :meth:`_bind` passes them on."""
        raise NotImplementedError

    def _bind(self, params, grads, hyper: tuple):
        """The update of these buffers with ``hyper`` as a call taking 1/m (see :meth:`_update_of`)."""
        raise NotImplementedError

    def step(self, params, grads, m: int) -> None:
        """Apply the summed gradients ``grads`` of a batch of ``m`` samples (``grads`` is consumed)."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The hyper-parameters, as JSON-ready numbers (stored in model files)."""
        raise NotImplementedError

    def state(self) -> dict:
        """Name -> flat device array of the optimizer's state (stored in model files)."""
        raise NotImplementedError

    def matches(self, name: str, settings: dict) -> bool:
        """Whether ``name`` with ``settings`` is this optimizer, so its state can carry on."""
        return name == self.name and settings == self.settings()


class SGD(Optimizer):
    """Minibatch SGD with optional (Nesterov) momentum, weight decay and per-layer step sizes.

    ``layer_rates``: ``None``, or one multiplier of ``lr`` per layer (see
    :func:`lr_scaling_rates`); from them ``lr_scale``, a flat buffer shaped like the
    parameters, is made once for the update kernel (``None`` when every rate is 1).
    """

    name = "sgd"

    def __init__(self, backend, layout, dtype, lr: float = DEFAULT_LR["sgd"], momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, layer_rates=None):
        self.backend = backend
        self.lr = _positive("the learning rate", lr)
        self.momentum = _fraction("momentum", momentum)
        self.weight_decay = _non_negative("weight decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and not self.momentum:
            raise ValueError("Nesterov momentum needs a momentum above 0 (e.g. momentum 0.9)")
        self.layer_rates = None if layer_rates is None else [_positive("a layer rate", r) for r in layer_rates]
        if self.layer_rates is not None and len(self.layer_rates) != layout.n_layers:
            raise ValueError(f"{len(self.layer_rates)} layer rates for {layout.n_layers} layers")
        self.lr_scale = self.velocity = None
        with backend.device():
            if self.layer_rates is not None and any(rate != 1 for rate in self.layer_rates):
                self.lr_scale = backend.xp.asarray(_per_parameter(layout, self.layer_rates), dtype=dtype)
            if self.momentum:
                self.velocity = backend.xp.zeros(layout.size, dtype=dtype)
        if not self.plain:  # plain SGD on NumPy subtracts pre-scaled gradients: it may never need them
            self._updates = update_kernels(backend)

    def step(self, params, grads, m: int) -> None:
        self._update_of(params, grads)(1.0 / m)

    def _hyper(self) -> tuple:
        return self.lr, self.momentum, self.weight_decay, self.nesterov

    def _bind(self, params, grads, hyper: tuple):
        updates, velocity, lr_scale = self.updates, self.velocity, self.lr_scale
        if isinstance(updates, CpuUpdates):
            return updates.bind_sgd(params, grads, velocity, *hyper, lr_scale)
        lr, momentum, weight_decay, nesterov = hyper
        return lambda inv_m: updates.sgd_update(params, grads, velocity, lr, inv_m, momentum, weight_decay,
                                                nesterov, lr_scale)

    @property
    def plain(self) -> bool:
        """No momentum and no weight decay: the step is theta -= (eta_l/m) sum grad and nothing else."""
        return not self.momentum and not self.weight_decay

    def step_prescaled(self, params, scaled_grads) -> None:
        """Plain SGD when the gradients already carry each layer's factor eta_l/m: one subtraction.

        The NumPy trainer folds eta/m (and the per-layer rates) into the deltas, so the
        gradient comes out scaled and the (large) parameter buffer is touched once.
        """
        self.backend.xp.subtract(params, scaled_grads, out=params)

    def settings(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov, "layer_rates": self.layer_rates}

    def state(self) -> dict:
        return {} if self.velocity is None else {"velocity": self.velocity}


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) exactly as ``torch.optim.Adam`` computes it; weight decay as L2."""

    name = "adam"
    decoupled = False

    def __init__(self, backend, layout, dtype, lr: float = DEFAULT_LR["adam"], betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.backend = backend
        self._updates = update_kernels(backend)
        self.lr = _positive("the learning rate", lr)
        beta1, beta2 = betas
        self.betas = (_fraction("beta1", beta1), _fraction("beta2", beta2))
        self.eps = _positive("eps", eps)
        self.weight_decay = _non_negative("weight decay", weight_decay)
        xp = backend.xp
        with backend.device():
            self.m = xp.zeros(layout.size, dtype=dtype)
            self.v = xp.zeros(layout.size, dtype=dtype)
            #: the number of steps taken, in device memory (incremented before each update)
            self.steps = xp.zeros((), dtype=np.int32)

    def step(self, params, grads, m: int) -> None:
        self.backend.kernels.advance_step(self.steps)
        self._update_of(params, grads)(1.0 / m)

    def _hyper(self) -> tuple:
        return (self.lr, *self.betas, self.eps, self.weight_decay, self.decoupled)

    def _bind(self, params, grads, hyper: tuple):
        updates, m, v, steps = self.updates, self.m, self.v, self.steps
        if isinstance(updates, CpuUpdates):
            return updates.bind_adam(params, grads, m, v, steps, *hyper)
        return lambda inv_m: updates.adam_update(params, grads, m, v, steps, inv_m, *hyper)

    def settings(self) -> dict:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def state(self) -> dict:
        return {"adam_m": self.m, "adam_v": self.v, "adam_steps": self.steps}


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019) as ``torch.optim.AdamW``: decoupled weight decay."""

    name = "adamw"
    decoupled = True


CLASSES = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name: str, backend, layout, dtype, settings: dict) -> Optimizer:
    """A fresh optimizer ``name`` with ``settings`` (as :meth:`Optimizer.settings` returns them)."""
    if name not in CLASSES:
        raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    return CLASSES[name](backend, layout, dtype, **settings)


def _per_parameter(layout, rates) -> np.ndarray:
    """The flat buffer holding each layer's rate at every one of its parameters."""
    flat = np.empty(layout.size)
    offsets = layout.offsets()
    for layer, rate in enumerate(rates):
        flat[offsets[layer]:offsets[layer + 1]] = rate
    return flat
