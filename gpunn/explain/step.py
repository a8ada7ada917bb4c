"""One training step on one sample, computed by gpunn and kept with all its numbers (``gpunn explain``).

The tutorial's arithmetic is: each neuron's ``v = sum_i x_i w_i + b`` and ``y = f(v)``;
the answer is the most active output; the error ``E`` (``1/2 (t - y)^2`` per output,
or the chosen loss); each neuron's ``delta = dE/dv`` by the chain rule, output layer
first; ``dE/dw = y_in * delta`` and ``dE/db = delta``; the update
``W(k+1) = W(k) - eta * dE/dW``.  :func:`explain_step` has gpunn compute all of it
and returns a :class:`Step` holding every number, for :mod:`gpunn.explain.text` to
write out and for ``gpunn explain --json``.

It checks gpunn against itself, so each number comes from the library's own code,
run on a float64 copy of the network on the NumPy backend:

* the outputs ``y`` of every layer from :meth:`Network.forward`;
* the error from :data:`gpunn.nn.losses.LOSS_FUNCTIONS`, and its share per output from
  :data:`gpunn.nn.losses.LOSS_TERMS`;
* the deltas and the gradients from :meth:`Network.backward` (the fused output-delta
  operation, then ``[y_in; 1] delta^T`` layer by layer);
* the new weights from :class:`gpunn.training.optim.SGD` with ``lr = eta`` at every layer, no
  momentum, no weight decay: plain ``W - eta dE/dW`` (training's per-layer step sizes,
  ``lr_scaling``, are left out here, as in the tutorial);
* the error after the step from a second forward pass.

Only the weighted sums ``v`` are worked out here, as ``y_in W + b`` from the library's
own weights and outputs, because the forward pass turns them into ``y`` in place.  The
finite-difference check compares the gradient of :meth:`Network.backward` with central
differences ``(E(w + h) - E(w - h)) / 2h`` of the same error, one parameter at a time.

Limits: one sample, so the batch mean is the sample itself.  The cross-entropy losses
take targets of 0 and 1 only (one-hot labels, as in training): gpunn's cross-entropy is
``-ln(t y + (1 - t)(1 - y))``, the binary cross-entropy only for such targets.  The
finite-difference check costs two forward passes per parameter, so a network with more
than :data:`FD_MAX_PARAMS` parameters has a seeded random sample of them checked (the
step says how many).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpunn.errors import GpunnError
from gpunn.nn.labels import classes_to_json
from gpunn.nn.losses import LOSS_FUNCTIONS, LOSS_TERMS
from gpunn.network import Network
from gpunn.training.optim import SGD

#: The default learning rate: small enough that one step lowers the error of the default
#: networks for every activation and loss, large enough that the change shows in 4 digits.
DEFAULT_LR = 0.5
#: The finite-difference step h: truncation error ~h^2, rounding error ~1e-16 E / h.
FD_STEP = 1e-5
#: A gradient smaller than FD_FLOOR * max(1, E) is compared with that floor instead of with itself:
#: float64 rounding leaves a central difference about 1e-11 E off, so a smaller gradient cannot be
#: resolved to 1e-6 (trained networks have many such gradients).
FD_FLOOR = 1e-4
#: At most this many parameters are checked by finite differences (all of them in small networks).
FD_MAX_PARAMS = 5000


@dataclass
class LayerStep:
    """One layer's part of the step; weights are (inputs, outputs), as :meth:`Network.get_weights` gives them."""

    W: np.ndarray
    b: np.ndarray
    v: np.ndarray  #: weighted sums plus bias, ``y_in W + b``
    y: np.ndarray  #: outputs ``f(v)`` (softmax probabilities on a softmax layer)
    delta: np.ndarray  #: ``dE/dv``
    grad_W: np.ndarray
    grad_b: np.ndarray
    W_next: np.ndarray
    b_next: np.ndarray


@dataclass
class Step:
    """Every number of one training step of a network on one sample (see the module docstring)."""

    sizes: tuple
    activation: str
    output_activation: str
    loss: str
    x: np.ndarray
    t: np.ndarray
    lr: float
    layers: list
    errors: np.ndarray  #: each output's share of the error
    error: float
    answer: int  #: index of the most active output (the first one on ties)
    error_after: float
    fd_checked: np.ndarray  #: flat indices of the parameters checked by finite differences
    fd_rel_err: np.ndarray  #: their relative disagreement |g - fd| / max(|g|, |fd|, FD_FLOOR max(1, E))
    n_params: int
    classes: list | None = None  #: what each output stands for, when the network knows (else its index)

    def class_name(self, index: int) -> str:
        """Output ``index`` as the class it stands for."""
        return str(index if self.classes is None else self.classes[index])

    @property
    def fd_max_rel_err(self) -> float:
        return float(self.fd_rel_err.max(initial=0.0))

    @property
    def fd_worst(self) -> int:
        """Flat index of the parameter whose gradient disagrees most with its finite difference."""
        return int(self.fd_checked[np.argmax(self.fd_rel_err)])

    def to_json(self) -> dict:
        """The ``gpunn explain --json`` record: nested lists of numbers, W as inputs x outputs."""
        layers = self.layers
        return {
            "sizes": list(self.sizes), "activation": self.activation,
            "output_activation": self.output_activation, "loss": self.loss,
            "x": self.x.tolist(), "t": self.t.tolist(), "lr": self.lr,
            "layers": [{"W": s.W.tolist(), "b": s.b.tolist(), "v": s.v.tolist(), "y": s.y.tolist()} for s in layers],
            "answer": self.answer, "errors": self.errors.tolist(), "error": self.error,
            "deltas": [s.delta.tolist() for s in layers],
            "grad_W": [s.grad_W.tolist() for s in layers], "grad_b": [s.grad_b.tolist() for s in layers],
            "W_next": [s.W_next.tolist() for s in layers], "b_next": [s.b_next.tolist() for s in layers],
            "error_after": self.error_after,
            "fd_max_rel_err": self.fd_max_rel_err, "fd_checked": int(self.fd_checked.size),
            "n_params": self.n_params, **({} if self.classes is None else {"classes": self.classes}),
        }


def float64_copy(net: Network) -> Network:
    """The same network, weights and classes as a float64 Network on the NumPy backend.

    Its inputs are not scaled: the step takes ``x`` as the network's input layer sees it.
    """
    copy = Network(net.sizes, activation=net.activation, output_activation=net.output_activation, loss=net.loss,
                   init=net.init, backend="numpy", dtype="float64", seed=net.seed, classes=net.classes)
    copy.target_scaling = net.target_scaling
    copy.set_weights(net.get_weights())
    return copy


def network_input(net: Network, features) -> np.ndarray:
    """A sample's raw features as ``net``'s input layer sees them: scaled as in training (float64)."""
    x = np.asarray(features, dtype=np.float64)[None, :]
    return (net.scaler.transform(x) if net.scaler is not None else x)[0]


def default_input(n_inputs: int) -> np.ndarray:
    """0.05, 0.10, 0.15, ...: the tutorial's input (0.05, 0.10) for two inputs."""
    return 0.05 * np.arange(1, n_inputs + 1)


def default_target(net: Network) -> np.ndarray:
    """The tutorial's target (0.01, 0.99) for the quadratic error; for cross-entropy, the last class;
    for a regression network 0.5 per output (targets as the network sees them: standardised)."""
    if net.objective == "quadratic":
        t = np.full(net.sizes[-1], 0.01)
        t[-1] = 0.99
        return t
    if net.objective == "squared_error":  # a regression network's (standardised) target
        return np.full(net.sizes[-1], 0.5)
    return one_hot_target(net.sizes[-1] - 1, net.sizes[-1])


def one_hot_target(label: int, classes: int) -> np.ndarray:
    if not 0 <= label < classes:
        raise GpunnError(f"class {label} does not exist: the network has {classes} outputs, classes 0 to "
                         f"{classes - 1}")
    t = np.zeros(classes)
    t[label] = 1.0
    return t


def check_sample(net: Network, x, t) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``t`` as float64 vectors that fit ``net``; GpunnError saying what is wrong."""
    x, t = np.asarray(x, dtype=np.float64).ravel(), np.asarray(t, dtype=np.float64).ravel()
    for name, values, width in (("input", x, net.sizes[0]), ("target", t, net.sizes[-1])):
        if values.size != width:
            raise GpunnError(f"the {name} has {values.size} values but the network has {width} "
                             f"{'inputs' if name == 'input' else 'outputs'}")
        if not np.isfinite(values).all():
            raise GpunnError(f"the {name} must be finite numbers, got {values.tolist()}")
    if net.output_activation == "sigmoid" and not ((t >= 0) & (t <= 1)).all():
        raise GpunnError(f"sigmoid outputs lie between 0 and 1, so the target must too, got {t.tolist()}")
    if net.output_activation == "softmax" and net.sizes[-1] < 2:
        raise GpunnError("a softmax layer of one output always says 1 and cannot learn; give it 2 or more")
    if net.objective == "softmax_cross_entropy" and not (np.isin(t, (0, 1)).all() and t.sum() == 1):
        raise GpunnError("a softmax network's target is one class: give its index (e.g. --target 1) "
                         "or a one-hot vector")
    if net.objective == "cross_entropy" and not np.isin(t, (0, 1)).all():
        raise GpunnError("gpunn's cross-entropy, -ln(t y + (1 - t)(1 - y)), takes targets of 0 and 1 only; "
                         "give a class index (e.g. --target 1) or use --loss quadratic")
    return x, t


def explain_step(net: Network, x, t, lr: float = DEFAULT_LR, fd_max_params: int = FD_MAX_PARAMS) -> Step:
    """One SGD step of ``net`` on the sample ``(x, t)``, computed by gpunn (see the module docstring).

    ``net`` itself is left untouched: the step runs on :func:`float64_copy` of it.  ``x``
    is the input layer's values (scaled, if the network scales its inputs: see
    :func:`network_input`); ``t`` the target vector of the output layer (see :func:`check_sample`).
    """
    net = float64_copy(net)
    x, t = check_sample(net, x, t)
    ws = net.workspace(1)
    ws.set_inputs(np.concatenate([x, [1.0], t])[None, :], 0, 1)  # one [x, 1, t] row: the NumPy layout

    error = _forward_error(net, ws, t)
    outputs = [a[:-1, 0].copy() for a in ws.acts[1:]]  # a softmax layer holds its logits until backward
    net.backward(ws)  # the gradient of this sample's error, into net.grads
    if net.output_activation == "softmax":
        outputs[-1] = ws.outputs[:, 0].copy()  # the output delta turned the logits into probabilities
    deltas = [d[:, 0].copy() for d in ws.deltas[1:]]
    grads = net.grads.copy()
    theta = net.params.copy()
    weights = net.get_weights()

    SGD(net.backend, net.layout, net.dtype, lr=lr).step(net.params, net.grads, 1)
    after = net.get_weights()
    error_after = _forward_error(net, ws, t)

    net.params[...] = theta
    checked, rel_err = _finite_difference_check(net, ws, t, grads, fd_max_params, FD_FLOOR * max(1.0, error))

    layers, y_in = [], x
    for layer, grad in enumerate(net.layout.blocks(grads)):
        W, b = weights[2 * layer], weights[2 * layer + 1]
        layers.append(LayerStep(W=W, b=b, v=y_in @ W + b, y=outputs[layer], delta=deltas[layer],
                                grad_W=grad[:-1].copy(), grad_b=grad[-1].copy(),
                                W_next=after[2 * layer], b_next=after[2 * layer + 1]))
        y_in = outputs[layer]
    last = layers[-1]
    share = last.v if net.objective == "softmax_cross_entropy" else last.y  # softmax terms take logits
    return Step(sizes=net.sizes, activation=net.activation, output_activation=net.output_activation,
                loss=net.loss, x=x, t=t, lr=float(lr), layers=layers,
                errors=LOSS_TERMS[net.objective](share[:, None], t[:, None])[:, 0], error=error,
                answer=int(np.argmax(last.y)), error_after=error_after, fd_checked=checked, fd_rel_err=rel_err,
                n_params=net.layout.size, classes=None if net.classes is None else classes_to_json(net.classes))


def _forward_error(net: Network, ws, t: np.ndarray) -> float:
    """Feed the workspace's sample forward and return its error by gpunn's reference formula."""
    net.forward(ws)
    return float(LOSS_FUNCTIONS[net.objective](ws.outputs.copy(), t[:, None])[0])


def _finite_difference_check(net: Network, ws, t, grads, max_params: int, floor: float):
    """(indices checked, relative disagreement) of ``grads`` with central differences of the error;
    gradients below ``floor`` are measured against it (see :data:`FD_FLOOR`)."""
    n = net.layout.size
    if n <= max_params:
        checked = np.arange(n)
    else:
        checked = np.sort(np.random.default_rng(net.seed).choice(n, size=max_params, replace=False))
    numeric = np.empty(checked.size)
    params = net.params
    for k, i in enumerate(checked):
        kept = params[i]
        params[i] = kept + FD_STEP
        up = _forward_error(net, ws, t)
        params[i] = kept - FD_STEP
        down = _forward_error(net, ws, t)
        params[i] = kept
        numeric[k] = (up - down) / (2 * FD_STEP)
    analytic = grads[checked]
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    return checked, np.abs(analytic - numeric) / scale


def parameter_name(sizes, index: int) -> str:
    """A flat parameter index as the text names it, e.g. ``w(x1→h2)`` or ``b(o0)``."""
    offset = 0
    for layer in range(len(sizes) - 1):
        rows, cols = sizes[layer] + 1, sizes[layer + 1]
        if index < offset + rows * cols:
            row, col = divmod(index - offset, cols)
            to = neuron_names(sizes, layer + 1)[col]
            return f"b({to})" if row == rows - 1 else f"w({neuron_names(sizes, layer)[row]}→{to})"
        offset += rows * cols
    raise IndexError(f"parameter {index} is beyond the {offset} of a {list(sizes)} network")


def neuron_names(sizes, layer: int) -> list[str]:
    """The units of ``layer`` (0: inputs) as the text names them.

    Inputs ``x1 x2 ...`` and hidden neurons ``h1 h2 ...`` count from 1, as the tutorial
    does (``h2.1`` is neuron 1 of hidden layer 2 when there are several); the outputs are
    named by the class they stand for, ``o0 o1 ...``, so that ``o7`` answers "7".
    """
    n = sizes[layer]
    if layer == 0:
        return [f"x{i}" for i in range(1, n + 1)]
    if layer == len(sizes) - 1:
        return [f"o{i}" for i in range(n)]
    if len(sizes) == 3:
        return [f"h{i}" for i in range(1, n + 1)]
    return [f"h{layer}.{i}" for i in range(1, n + 1)]
