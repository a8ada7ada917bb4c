"""The contestants that ``gpunn bench`` races gpunn against.

Every trainer here trains the same network on the same data with the same algorithm,
the configuration's (:class:`Config`): configurations A-D are the tutorial's network,
fully connected sigmoid layers, the quadratic loss ``1/2 |a - t|^2`` per sample and
plain minibatch SGD ``theta <- theta - (lr/m) sum_batch grad``; configuration E is the
network people train today, ReLU hidden layers, a softmax output with the categorical
cross-entropy (averaged over the batch) and Adam.  Minibatches come from a freshly
shuffled sample order each epoch (the last, partial batch is trained on).  All start
from the same initial parameters and use float32.  Only the implementation differs:

``gpunn-numpy``, ``gpunn-cupy``
    gpunn itself through :meth:`gpunn.Network.fit`, one epoch per call, timed by the
    epoch's ``seconds`` in its History (the training loop only: fit's upload of the
    data and its set-up before the loop, the dense-path choice and the CUDA-graph
    capture included, are not counted).  That set-up is timed on its own instead
    (:meth:`GpunnPeer.fit_fixed_cost`): ``fit(epochs=0)`` on the whole data set,
    against one ``X.astype(float32)`` copy of it.  ``gpunn-cupy`` takes the dense path the
    autotuner picks (:mod:`gpunn.training.autotune`); ``gpunn-cupy-fused`` and
    ``gpunn-cupy-cublas`` force one, to show both sides of the pick.  Their records
    say which ``dense`` path and which ``step`` path (``graph`` or ``launches``) ran.
``torch-cpu``, ``torch-cuda``
    PyTorch eager mode as its tutorials write it: ``nn.Linear`` + ``nn.Sigmoid`` (or
    ``nn.ReLU``) in an ``nn.Sequential``, ``mse_loss(reduction="sum") / 2`` scaled by
    ``1/m`` (or ``cross_entropy`` on the logits), ``torch.optim.SGD`` (or ``Adam``) with
    its defaults, data resident on the device.
``numpy-obvious``
    The vectorised NumPy version a competent person writes first: samples as rows,
    ``Z = A @ W + b``, ``1/(1 + exp(-Z))`` (or ``maximum(Z, 0)`` and a max-shifted
    softmax), backprop with temporaries, ``W -= lr/m * gW`` (or Adam's textbook update).
``textbook``
    Nielsen's ``network.py`` (``update_mini_batch`` and ``backprop``): column
    vectors, one sample at a time, gradients summed per minibatch.  It is about a
    thousand times slower than the others, so each of its epochs trains only a capped
    number of samples (:attr:`Problem.textbook_samples`) and its rate comes from those.
    The tutorial's network only: it sits out configuration E.
``gemm-floor-cpu``, ``gemm-floor-cuda``
    Not a trainer: only the matrix products of each training step at the real shapes
    (per layer the forward GEMM and the weight-gradient GEMM, and the delta GEMM for
    every layer but the first), into preallocated buffers, for an epoch's worth of
    steps.  No gather, no sigmoid, no update: a lower bound on the epoch time of any
    implementation that uses the same BLAS (NumPy's) or cuBLAS (through CuPy).

Limits: float32 only, and only what the benchmark configurations use; the peers exist
to be timed, not to be used as trainers.
"""

from __future__ import annotations

import abc
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np

from gpunn.compute.backend import get_backend
from gpunn.network import Network

DTYPE = np.float32


@dataclass(frozen=True)
class Config:
    """One network to race: layer sizes, minibatch size, learning rate and the kind of network.

    The default kind is the tutorial's: sigmoid hidden and output layers, the quadratic
    loss and plain SGD.
    """

    name: str
    sizes: tuple[int, ...]
    batch_size: int
    lr: float
    #: Too big to time on a CPU in reasonable time: run there only when asked for by name.
    gpu_sized: bool = False
    activation: str = "sigmoid"
    output_activation: str = "sigmoid"
    loss: str = "quadratic"
    optimizer: str = "sgd"

    @property
    def tutorial(self) -> bool:
        """Whether this is the tutorial's network (what every peer implements)."""
        return (self.activation, self.output_activation, self.loss, self.optimizer) == (
            "sigmoid", "sigmoid", "quadratic", "sgd")

    def describe(self) -> str:
        kind = "quadratic loss" if self.tutorial else (
            f"{self.activation}, {self.output_activation} + {self.loss}, {self.optimizer}")
        return f"{'-'.join(map(str, self.sizes))}, batch {self.batch_size}, lr {self.lr:g}, {kind}"


CONFIGS = {config.name: config for config in (
    Config("A", (784, 30, 10), 10, 3.0),
    Config("B", (784, 100, 10), 10, 3.0),
    Config("C", (784, 1024, 1024, 10), 128, 0.5),
    Config("D", (784, 4096, 4096, 10), 1024, 0.5, gpu_sized=True),
    Config("E", (784, 256, 10), 64, 1e-3, activation="relu", output_activation="softmax", loss="cross_entropy",
           optimizer="adam"),
)}


@dataclass
class Problem:
    """What every peer gets for one configuration (host arrays).

    Attributes:
        config: the network and its hyper-parameters.
        X: (samples, features) float32 inputs; one epoch trains on all of them.
        labels: (samples,) int64 classes.
        weights: the common initial parameters ``[W1, b1, W2, b2, ...]`` with ``W`` as
            (inputs, outputs), float32 (gpunn's layout).
        seed: seeds each peer's own shuffling.
        textbook_samples: how many samples the textbook peer trains per epoch.
    """

    config: Config
    X: np.ndarray
    labels: np.ndarray
    weights: list
    seed: int
    textbook_samples: int

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def one_hot(self) -> np.ndarray:
        """(samples, classes) float32 one-hot targets."""
        targets = np.zeros((self.n, self.config.sizes[-1]), dtype=DTYPE)
        targets[np.arange(self.n), self.labels] = 1
        return targets


def batch_bounds(n: int, m: int) -> list[tuple[int, int]]:
    """The [start, stop) of each minibatch of ``m`` over ``n`` samples, the partial last one included."""
    return [(start, min(start + m, n)) for start in range(0, n, m)]


class Peer(abc.ABC):
    """One contestant: built once per configuration, then trains one epoch per :meth:`epoch` call.

    Subclasses set ``name``, ``device`` (``"cpu"`` or ``"cuda"``) and ``summary`` (one
    line for the report), and override :meth:`unavailable` when they need a library or
    a device that may be missing.  Trainers also offer ``train_batch`` and
    ``parameters()`` so that tests can check that they compute the same step as gpunn.
    """

    name = ""
    device = "cpu"
    summary = ""

    def __init__(self, problem: Problem):
        self.problem = problem

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this peer cannot run on this machine, or None when it can."""
        return None

    @classmethod
    def unsupported(cls, config: Config) -> str | None:
        """Why this peer does not train ``config``, or None when it does."""
        return None

    @abc.abstractmethod
    def epoch(self) -> tuple[int, float]:
        """Train (or, for the floor, compute) one epoch; return (samples trained, seconds)."""

    def close(self) -> None:
        """Release what the peer holds before the next configuration (device memory)."""

    def details(self) -> dict:
        """Facts about how the last epoch ran, added to the peer's record (none by default)."""
        return {}


# -- gpunn ------------------------------------------------------------------------------
class GpunnPeer(Peer):
    """gpunn on NumPy, timed by the per-epoch ``seconds`` that :meth:`Network.fit` records.

    Each call continues training with ``fit(..., epochs=1)``; the result is bit for bit
    that of one ``fit`` over all the epochs.  ``fit`` validates and copies
    ``X`` into its training layout (uploads it, on a GPU) and builds its batch views on
    every call, about 0.1 s at 50,000 samples; that happens before its epoch clock
    starts and is not counted.
    """

    name = "gpunn-numpy"
    summary = "gpunn Network.fit, NumPy backend"
    backend_spec = "numpy"
    #: fit's dense path (None: $GPUNN_DENSE, else the autotuner's pick)
    dense = None

    def __init__(self, problem: Problem):
        super().__init__(problem)
        config = problem.config
        self.net = Network(config.sizes, activation=config.activation, output_activation=config.output_activation,
                           loss=config.loss, backend=self.backend_spec, dtype="float32", seed=problem.seed)
        self.net.set_weights(problem.weights)

    def epoch(self) -> tuple[int, float]:
        config = self.problem.config
        history = self.net.fit(self.problem.X, self.problem.labels, epochs=1, batch_size=config.batch_size,
                               optimizer=config.optimizer, lr=config.lr, dense=self.dense)
        return self.problem.n, history.history["seconds"][-1]

    def details(self) -> dict:
        """The dense path, why it was chosen, and the step path (``graph``, ``launches``, ``numpy``)."""
        params = self.net.history.params
        return {key: params.get(key) for key in ("dense", "dense_source", "step")}

    def fit_fixed_cost(self, repeats: int = 3) -> dict:
        """What a ``fit`` call costs before its first step, against copying X once.

        Times ``fit(X, y, epochs=0)`` with the configuration's settings on a fresh network
        built like this peer's (its validation of X and y, the copy of X into the training
        layout, on a GPU the upload, the optimizer, the batch plan; the network's first
        fit also decides its classes), and ``X.astype(float32)`` (one copy of X in
        memory).  Medians of ``repeats`` calls each; ``ratio`` is fit's over the copy's.
        """
        config, X, labels = self.problem.config, self.problem.X, self.problem.labels
        net = Network(config.sizes, activation=config.activation, output_activation=config.output_activation,
                      loss=config.loss, backend=self.backend_spec, dtype="float32", seed=self.problem.seed)
        fits, copies = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            net.fit(X, labels, epochs=0, batch_size=config.batch_size, optimizer=config.optimizer, lr=config.lr,
                    dense=self.dense)
            net.backend.synchronize()
            fits.append(time.perf_counter() - started)
            started = time.perf_counter()
            X.astype(np.float32)
            copies.append(time.perf_counter() - started)
        fit_seconds, copy_seconds = statistics.median(fits), statistics.median(copies)
        return {"fit_epochs0_seconds": fit_seconds, "astype_copy_seconds": copy_seconds,
                "ratio": fit_seconds / copy_seconds, "repeats": repeats}


class GpunnCupyPeer(GpunnPeer):
    """gpunn on CuPy and its fused CUDA kernels (fit's epoch clock stops after a device read-back)."""

    name = "gpunn-cupy"
    device = "cuda"
    summary = "gpunn Network.fit, CuPy backend and fused kernels"
    backend_spec = "cupy"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            get_backend(cls.backend_spec).kernels  # noqa: B018 - builds the kernels or says why not
        except Exception as exc:  # any failure here means "cannot run here", with its reason
            return f"{exc.__class__.__name__}: {exc}"
        return None

    def close(self) -> None:
        import cupy

        del self.net
        cupy.get_default_memory_pool().free_all_blocks()


class GpunnCupyFusedPeer(GpunnCupyPeer):
    """gpunn on CuPy with the fused dense kernels forced: every step one CUDA graph launch."""

    name = "gpunn-cupy-fused"
    summary = "gpunn Network.fit, CuPy, fused dense kernels forced (one graph per step)"
    dense = "fused"


class GpunnCupyCublasPeer(GpunnCupyPeer):
    """gpunn on CuPy with cuBLAS forced: the products by cuBLAS, the step launched kernel by kernel."""

    name = "gpunn-cupy-cublas"
    summary = "gpunn Network.fit, CuPy, cuBLAS products forced (launched kernel by kernel)"
    dense = "cublas"


# -- PyTorch ----------------------------------------------------------------------------
class TorchPeer(Peer):
    """PyTorch eager on the CPU: the textbook ``nn.Sequential`` + ``optim.SGD`` loop."""

    name = "torch-cpu"
    summary = "PyTorch eager, nn.Linear + Sigmoid, optim.SGD"
    torch_device = "cpu"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"PyTorch is not installed ({exc}); pip install torch"
        return None

    def __init__(self, problem: Problem):
        super().__init__(problem)
        import torch
        from torch import nn

        self.torch = torch
        self.dev = torch.device(self.torch_device)
        config = problem.config
        hidden = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[config.activation]
        pairs = list(zip(problem.weights[0::2], problem.weights[1::2]))
        layers = []
        for layer, (W, b) in enumerate(pairs):
            linear = nn.Linear(*W.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if layer < len(pairs) - 1:
                layers.append(hidden())
            elif config.output_activation == "sigmoid":
                layers.append(nn.Sigmoid())  # a softmax output stays logits: cross_entropy takes them
        self.model = nn.Sequential(*layers).to(self.dev)
        self.X = torch.from_numpy(problem.X).to(self.dev)
        self.T = torch.from_numpy(problem.one_hot()).to(self.dev)
        self.labels = torch.from_numpy(problem.labels).to(self.dev)
        optimizer = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[config.optimizer]
        self.optimizer = optimizer(self.model.parameters(), lr=config.lr)
        self.generator = torch.Generator(device=self.dev)
        self.generator.manual_seed(problem.seed)

    def _loss(self, outputs, index):
        """The batch's loss, averaged over its samples as gpunn's step is."""
        functional, config = self.torch.nn.functional, self.problem.config
        if config.output_activation == "softmax":
            return functional.cross_entropy(outputs, self.labels[index])
        t = self.T[index]
        if config.loss == "quadratic":
            return functional.mse_loss(outputs, t, reduction="sum") * (0.5 / t.shape[0])
        return functional.binary_cross_entropy(outputs, t, reduction="sum") / t.shape[0]

    def train_batch(self, index) -> None:
        """One optimizer step on the samples at ``index`` (a tensor of row numbers on the device)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(self.X[index]), index)
        loss.backward()
        self.optimizer.step()

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on the CPU)."""

    def epoch(self) -> tuple[int, float]:
        n = self.problem.n
        self.synchronize()
        started = time.perf_counter()
        order = self.torch.randperm(n, generator=self.generator, device=self.dev)
        for start, stop in batch_bounds(n, self.problem.config.batch_size):
            self.train_batch(order[start:stop])
        self.synchronize()
        return n, time.perf_counter() - started

    def parameters(self) -> list[np.ndarray]:
        """The parameters as ``[W1, b1, ...]`` in gpunn's layout, on the host."""
        out = []
        for layer in self.model:
            if isinstance(layer, self.torch.nn.Linear):
                out += [layer.weight.detach().cpu().numpy().T, layer.bias.detach().cpu().numpy()]
        return out


class TorchCudaPeer(TorchPeer):
    """PyTorch eager on CUDA; the clock is read after ``torch.cuda.synchronize``."""

    name = "torch-cuda"
    device = "cuda"
    torch_device = "cuda"

    @classmethod
    def unavailable(cls) -> str | None:
        reason = super().unavailable()
        if reason:
            return reason
        import torch

        if not torch.cuda.is_available():
            return f"torch.cuda.is_available() is False (torch {torch.__version__}: CPU-only build or no device)"
        return None

    def synchronize(self) -> None:
        self.torch.cuda.synchronize(self.dev)

    def close(self) -> None:
        del self.model, self.X, self.T, self.optimizer
        self.torch.cuda.empty_cache()


# -- plain NumPy ------------------------------------------------------------------------
class NumpyObviousPeer(Peer):
    """The straightforward vectorised NumPy trainer: samples as rows, a temporary per operation."""

    name = "numpy-obvious"
    summary = "vectorised NumPy, rows = samples, temporaries"

    def __init__(self, problem: Problem):
        super().__init__(problem)
        self.W = [W.copy() for W in problem.weights[0::2]]
        self.b = [b.copy() for b in problem.weights[1::2]]
        self.T = problem.one_hot()
        self.rng = np.random.default_rng(problem.seed)
        if problem.config.optimizer == "adam":
            self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in self.parameters()]
            self.steps = 0

    def train_batch(self, index) -> None:
        """One optimizer step on the samples at ``index`` (row numbers)."""
        config = self.problem.config
        x, t = self.problem.X[index], self.T[index]
        m = len(index)
        activations = [x]
        for layer, (W, b) in enumerate(zip(self.W, self.b)):
            z = activations[-1] @ W + b
            if layer < len(self.W) - 1 and config.activation == "relu":
                activations.append(np.maximum(z, 0))
            elif layer == len(self.W) - 1 and config.output_activation == "softmax":
                e = np.exp(z - z.max(axis=1, keepdims=True))
                activations.append(e / e.sum(axis=1, keepdims=True))
            else:
                activations.append(1.0 / (1.0 + np.exp(-z)))
        a = activations[-1]
        delta = (a - t) * a * (1 - a) if config.loss == "quadratic" else a - t
        grads = []
        for layer in range(len(self.W) - 1, -1, -1):
            a_prev = activations[layer]
            grads[:0] = [a_prev.T @ delta, delta.sum(axis=0)]
            if layer:
                if config.activation == "relu":
                    delta = (delta @ self.W[layer].T) * (a_prev > 0)
                else:
                    delta = (delta @ self.W[layer].T) * a_prev * (1 - a_prev)
        if config.optimizer == "adam":
            self._adam([g / m for g in grads])
            return
        for layer in range(len(self.W)):
            self.W[layer] -= config.lr / m * grads[2 * layer]
            self.b[layer] -= config.lr / m * grads[2 * layer + 1]

    def _adam(self, grads, beta1=0.9, beta2=0.999, eps=1e-8) -> None:
        """Adam's update as its paper writes it, for every parameter array in turn."""
        self.steps += 1
        lr = self.problem.config.lr
        for param, grad, (m, v) in zip(self.parameters(), grads, self.moments):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            m_hat = m / (1 - beta1 ** self.steps)
            v_hat = v / (1 - beta2 ** self.steps)
            param -= lr * m_hat / (np.sqrt(v_hat) + eps)

    def epoch(self) -> tuple[int, float]:
        n = self.problem.n
        with np.errstate(over="ignore"):  # exp(-z) may overflow to inf; 1/(1 + inf) = 0 is right
            started = time.perf_counter()
            order = self.rng.permutation(n)
            for start, stop in batch_bounds(n, self.problem.config.batch_size):
                self.train_batch(order[start:stop])
            return n, time.perf_counter() - started

    def parameters(self) -> list[np.ndarray]:
        return [part for W, b in zip(self.W, self.b) for part in (W, b)]


class TextbookPeer(Peer):
    """Nielsen's ``network.py``: per-sample backprop on column vectors (float32 arrays).

    Each epoch draws ``textbook_samples`` samples at random (before the clock starts)
    and trains on them in minibatches; the shuffle of the whole training list that
    Nielsen's ``SGD`` does is left out, since it would be charged to a few samples only.
    """

    name = "textbook"
    summary = "Nielsen's network.py, per-sample column vectors"

    @classmethod
    def unsupported(cls, config: Config) -> str | None:
        return None if config.tutorial else "Nielsen's network.py has sigmoid layers, the quadratic loss and SGD only"

    def __init__(self, problem: Problem):
        super().__init__(problem)
        self.weights = [np.ascontiguousarray(W.T) for W in problem.weights[0::2]]  # (out, in)
        self.biases = [b.reshape(-1, 1).copy() for b in problem.weights[1::2]]
        self.num_layers = len(problem.config.sizes)
        self.T = problem.one_hot()
        self.random = random.Random(problem.seed)

    def training_pairs(self, index) -> list[tuple[np.ndarray, np.ndarray]]:
        """The samples at ``index`` as Nielsen's (x, y) column-vector pairs."""
        return [(self.problem.X[i].reshape(-1, 1), self.T[i].reshape(-1, 1)) for i in index]

    # Nielsen's code, kept as he wrote it apart from the dtype of the zero arrays.
    def update_mini_batch(self, mini_batch, eta) -> None:
        nabla_b = [np.zeros(b.shape, b.dtype) for b in self.biases]
        nabla_w = [np.zeros(w.shape, w.dtype) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        self.weights = [w - (eta / len(mini_batch)) * nw for w, nw in zip(self.weights, nabla_w)]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b)]

    def backprop(self, x, y):
        nabla_b = [np.zeros(b.shape, b.dtype) for b in self.biases]
        nabla_w = [np.zeros(w.shape, w.dtype) for w in self.weights]
        activation = x
        activations = [x]
        zs = []
        for b, w in zip(self.biases, self.weights):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = _sigmoid(z)
            activations.append(activation)
        delta = (activations[-1] - y) * _sigmoid_prime(zs[-1])
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())
        for layer in range(2, self.num_layers):
            z = zs[-layer]
            sp = _sigmoid_prime(z)
            delta = np.dot(self.weights[-layer + 1].transpose(), delta) * sp
            nabla_b[-layer] = delta
            nabla_w[-layer] = np.dot(delta, activations[-layer - 1].transpose())
        return nabla_b, nabla_w

    def train_batch(self, index) -> None:
        self.update_mini_batch(self.training_pairs(index), self.problem.config.lr)

    def epoch(self) -> tuple[int, float]:
        count = min(self.problem.textbook_samples, self.problem.n)
        pairs = self.training_pairs(self.random.sample(range(self.problem.n), count))
        m, eta = self.problem.config.batch_size, self.problem.config.lr
        with np.errstate(over="ignore"):
            started = time.perf_counter()
            for start, stop in batch_bounds(count, m):
                self.update_mini_batch(pairs[start:stop], eta)
            return count, time.perf_counter() - started

    def parameters(self) -> list[np.ndarray]:
        return [part for w, b in zip(self.weights, self.biases) for part in (w.T, b.ravel())]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _sigmoid_prime(z):
    return _sigmoid(z) * (1 - _sigmoid(z))


# -- the GEMM floor ---------------------------------------------------------------------
class GemmFloorPeer(Peer):
    """Only the matrix products of an epoch's training steps, into preallocated buffers.

    Per step of ``m`` samples and per layer ``l`` (``n_l`` inputs, ``n_{l+1}`` outputs):
    forward ``(m x n_l) @ (n_l x n_{l+1})``, weight gradient
    ``(n_l x m) @ (m x n_{l+1})``, and for every layer but the first the delta
    ``(m x n_{l+1}) @ (n_{l+1} x n_l)``.  The buffers hold fixed finite values; what
    the products compute is thrown away.
    """

    name = "gemm-floor-cpu"
    summary = "matrix products only (NumPy's BLAS), preallocated out= buffers"

    def __init__(self, problem: Problem):
        super().__init__(problem)
        xp = self.xp = self.array_module()
        sizes = problem.config.sizes
        rng = np.random.default_rng(problem.seed)
        self.W = [xp.asarray(W) for W in problem.weights[0::2]]
        self.grads = [xp.empty_like(W) for W in self.W]
        self.steps = [stop - start for start, stop in batch_bounds(problem.n, problem.config.batch_size)]
        #: per distinct batch size: (activations per layer, deltas per layer), rows = samples
        self.buffers = {}
        for m in set(self.steps):
            acts = [xp.asarray(rng.random((m, n), dtype=DTYPE)) for n in sizes]
            deltas = [xp.asarray(rng.random((m, n), dtype=DTYPE) * DTYPE(1e-3)) for n in sizes]
            self.buffers[m] = (acts, deltas)

    def array_module(self):
        return np

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on the CPU)."""

    def epoch(self) -> tuple[int, float]:
        matmul = self.xp.matmul
        W, grads = self.W, self.grads
        self.synchronize()
        started = time.perf_counter()
        for m in self.steps:
            acts, deltas = self.buffers[m]
            for layer in range(len(W)):
                matmul(acts[layer], W[layer], out=acts[layer + 1])
            for layer in range(len(W) - 1, -1, -1):
                matmul(acts[layer].T, deltas[layer + 1], out=grads[layer])
                if layer:
                    matmul(deltas[layer + 1], W[layer].T, out=deltas[layer])
        self.synchronize()
        return self.problem.n, time.perf_counter() - started


class GemmFloorCupyPeer(GemmFloorPeer):
    """The GEMM floor on the GPU: cuBLAS through ``cupy.matmul``, synchronised around the clock."""

    name = "gemm-floor-cuda"
    device = "cuda"
    summary = "matrix products only (cuBLAS via CuPy), preallocated out= buffers"

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # a missing or broken CUDA setup can raise anything
            return f"{exc.__class__.__name__}: {exc}"
        return None if count else "no CUDA device"

    def array_module(self):
        import cupy

        return cupy

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def close(self) -> None:
        del self.W, self.grads, self.buffers
        self.xp.get_default_memory_pool().free_all_blocks()


#: Every peer, in the order each round runs them.
PEERS = {cls.name: cls for cls in (
    GpunnPeer, GpunnCupyPeer, GpunnCupyFusedPeer, GpunnCupyCublasPeer, TorchPeer, TorchCudaPeer,
    NumpyObviousPeer, TextbookPeer, GemmFloorPeer, GemmFloorCupyPeer,
)}

#: Names that select several peers at once.
PEER_ALIASES = {
    "gemm-floor": ("gemm-floor-cpu", "gemm-floor-cuda"),
    "gpunn": ("gpunn-numpy", "gpunn-cupy"),
    "gpunn-dense": ("gpunn-cupy", "gpunn-cupy-fused", "gpunn-cupy-cublas"),
    "torch": ("torch-cpu", "torch-cuda"),
    "all": tuple(PEERS),
}
