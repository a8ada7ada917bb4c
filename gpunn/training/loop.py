"""The minibatch training loop, its History, and the callback hooks.

One epoch: shuffle the sample order (on the device), cut it into minibatches of
``batch_size`` (the last, partial one is trained on, not dropped), and for each
batch gather the samples into preallocated buffers, feed forward, backprop, and move
every parameter downhill with one fused optimizer update over the flat buffer.

After the first step of each batch size nothing in a step allocates an array or waits
for the device: the loss and the count of correct answers accumulate in device
scalars that are read once per epoch.  A NaN or infinite loss then stops training
with an error that names the epoch, and a run whose network has stopped depending on
its input (saturated or dead units) is diagnosed within two epochs
(:mod:`gpunn.training.diagnosis`): ``history.warnings``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings

import numpy as np

from gpunn.errors import DataError, TrainingDiverged
from gpunn.nn.labels import infer_classes
from gpunn.nn.preprocessing import Scaler
from gpunn.nn.targets import TargetScaling, normalised_weights, regression_metrics, regression_targets
from gpunn.training.autotune import pick_dense
from gpunn.training.callbacks import Callback, EpochLogger  # noqa: F401 - Callback is also gpunn.training.loop.Callback
from gpunn.training.cuda_graph import GraphedStep
from gpunn.training.device_step import DeviceStep
from gpunn.training.diagnosis import CollapseWatch
from gpunn.training.optim import (DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OPTIMIZERS, REGRESSION_SGD_LR, make_optimizer,
                                  lr_scaling_rates)


class History:
    """What :func:`fit` returns: ``history`` maps each metric to its per-epoch list.

    Keys: ``loss``, ``accuracy`` (training, measured during the epoch as the weights
    moved), ``val_loss`` and ``val_accuracy`` with validation data, and ``seconds``
    (wall time of each epoch's training, device work included).  ``params`` holds the
    settings of the latest ``fit``; ``warnings`` the diagnoses of runs that stopped
    learning (empty when all is well).
    """

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.params: dict = {}
        self.warnings: list[str] = []

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


def rank_share(batch: int, rank: int, ranks: int) -> tuple[int, int]:
    """The [lo, hi) part of a ``batch``-sample minibatch that ``rank`` of ``ranks`` trains on.

    The remainder is spread deterministically: the first ``batch % ranks`` ranks take one more.
    """
    base, extra = divmod(batch, ranks)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class _Batches:
    """The epoch's sample order on the device, and this rank's part of each minibatch as views."""

    def __init__(self, network, n: int, batch_size: int, shuffle, rank: int = 0, ranks: int = 1):
        self.network, self.n, self.shuffle, self.ranks = network, n, shuffle, ranks
        xp = network.backend.xp
        self.order = xp.arange(n, dtype=np.int64)
        self._generator = None  # the device's generator, made at the first reshuffle
        #: (this rank's index view, global batch size m) per step
        self.steps = []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            lo, hi = rank_share(m, rank, ranks)
            self.steps.append((self.order[start + lo : start + hi], m))

    def local_order(self):
        """This rank's samples in the order its steps train on them (the whole order on one rank)."""
        if self.ranks == 1:
            return self.order
        return self.network.backend.xp.concatenate([index for index, _ in self.steps])

    def reshuffle(self, epoch: int) -> None:
        """New order for ``epoch``: a pure function of (seed, epoch), so resuming is exact.

        On a GPU one cuRAND Philox generator serves every epoch of the ``fit``, reseeded
        each epoch: making a generator runs a set-up kernel, and destroying one
        synchronizes the device.  ``cupy.random.RandomState.seed`` reseeds the generator
        it holds and rewinds its offset (CuPy 14.2, cupy/random/_generator.py,
        ``RandomState.seed``: ``setPseudoRandomGeneratorSeed``, ``setGeneratorOffset(0)``),
        and ``permutation(n)`` is an argsort of n fresh 32-bit draws (``_permutation``).
        """
        if not self.shuffle:
            return
        seed = self.network.seed * 1_000_003 + epoch
        backend = self.network.backend
        if self.shuffle == "host" or not backend.is_gpu:
            order = np.random.default_rng(seed).permutation(self.n)
            self.order[...] = backend.xp.asarray(order)
            return
        if self._generator is None:
            xp = backend.xp
            self._generator = xp.random.RandomState(method=xp.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
        self._generator.seed(seed)
        self.order[...] = self._generator.permutation(self.n)


def fit(network, X, y, epochs=30, batch_size=10, optimizer="sgd", lr=None, momentum=0.0, nesterov=False,
        betas=(0.9, 0.999), eps=1e-8, weight_decay=None, lr_scaling=None, validation_data=None,
        validation_split=0.0, callbacks=None, verbose=0, shuffle=True, progress=None, communicator=None,
        cuda_graph=True, dense=None, sample_weight=None) -> History:
    """Train ``network`` on ``(X, y)`` for ``epochs`` more epochs of minibatch gradient descent.

    Calling ``fit`` again trains further: epoch numbers count on in the History, and the
    sample order of epoch ``k`` depends only on ``(seed, k)``, so ``fit(epochs=2)`` then
    ``fit(epochs=3)`` gives bit for bit the weights of ``fit(epochs=5)``.

    Args:
        X: (samples, features) array, NumPy or CuPy, or a SciPy sparse matrix (made dense).
        y: integer labels (samples,) or one-hot rows (samples, classes); for a regression
            network (``output_activation="identity"``) float targets (samples,) or
            (samples, outputs), standardised internally (:mod:`gpunn.nn.targets`); for a
            multilabel network a 0/1 indicator matrix.
        epochs: how many epochs to train in this call.
        batch_size: samples per minibatch (m); gradients are averaged over the batch.
        optimizer: ``"sgd"`` (the tutorial's), ``"adam"`` or ``"adamw"`` (see :mod:`gpunn.training.optim`).
        lr: learning rate; default 3.0 for SGD (the tutorial's eta; 0.1 for a regression network),
            0.001 for Adam/AdamW.
        momentum, nesterov: SGD's (Nesterov) momentum.
        betas, eps: Adam's and AdamW's moment decay rates and denominator term.
        weight_decay: L2 for SGD and Adam, decoupled for AdamW; default 0 (AdamW: 0.01).
        lr_scaling: ``"fan_in"`` gives each layer the step size ``lr * sqrt(64 / fan_in)``
            (see :func:`gpunn.training.optim.lr_scaling_rates`) so that wide layers do not saturate;
            ``"none"`` uses ``lr`` everywhere, step for step what ``torch.optim.SGD``
            computes.  Default: ``fan_in`` for SGD when ``lr`` is left at its default,
            ``none`` otherwise.  SGD only.
        validation_data: optional (X_val, y_val), evaluated after every epoch.
        validation_split: instead, the fraction of (X, y) held out for validation: its
            last samples, before any shuffling (as Keras does).
        callbacks: list of :class:`Callback`.
        verbose: 0 silent; 1 or 2 print one line per epoch on stderr, as ``gpunn train``
            does (:class:`~gpunn.training.callbacks.EpochLogger`).
        shuffle: True (device generator), False (fixed order), or ``"host"`` (NumPy's
            generator on every backend: the same batch order everywhere, for comparing
            backends).
        progress: optional ``progress(step, steps_per_epoch)`` called from the host about
            50 times per epoch (it never waits for the device).
        communicator: for data-parallel training (:mod:`gpunn.training.distributed`): each rank
            trains on its share of every global minibatch of ``batch_size`` samples, the
            flat gradient buffer is summed across ranks with one all-reduce per step, and
            every rank applies the same update.  ``None`` trains in this process alone.
        cuda_graph: on the CuPy backend (one process), replay each full-batch step as one
            CUDA graph launch (:mod:`gpunn.training.cuda_graph`) when the step can be captured
            (the ``fused`` dense path); False launches the kernels one by one.  A step
            on the ``cublas`` path is never captured (CuPy refuses cuBLAS during a
            capture), and nothing is tried or warned about.
        dense: kernel backends: ``"fused"``, ``"cublas"`` or ``"auto"`` (default:
            ``$GPUNN_DENSE``, else ``auto``: measured on the GPU and cached, see
            :mod:`gpunn.training.autotune`); the NumPy backend ignores it.
        sample_weight: optional (samples,) non-negative weights: each sample's loss and
            gradient count that many times (rescaled to mean 1, see
            :func:`gpunn.nn.targets.normalised_weights`); the reported loss is the
            weighted mean.  Not with ``validation_split`` or a communicator.

    ``history.params`` records ``dense`` (the path, None on NumPy), ``dense_source`` (why)
    and ``step``: ``graph`` (one CUDA graph launch per full batch), ``launches`` (kernel
    by kernel) or ``numpy``.

    The first ``fit`` of a network also fits its feature scaling (``Network(scale=...)``)
    on ``X`` and decides its classes from ``y`` (:mod:`gpunn.nn.labels`), or for a
    regression network the targets' standardisation.

    A regression network's History has ``loss`` (the squared error per sample on the
    standardised targets) and with validation data ``val_loss``, ``val_mse``, ``val_mae``
    and ``val_r2`` (in the targets' units); no accuracy.

    Returns:
        The network's :class:`History` (continued across calls and resumed runs).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if epochs < 0:
        raise ValueError(f"epochs must be 0 or more, got {epochs}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    settings = optimizer_settings(network, optimizer, lr, momentum, nesterov, betas, eps, weight_decay, lr_scaling)
    if sample_weight is not None and (validation_split or communicator is not None):
        raise ValueError("sample_weight cannot be combined with validation_split or distributed training")
    if hasattr(X, "tocsr"):  # a SciPy sparse matrix: made dense once, in chunks (gpunn's layers are dense)
        X = network._as_samples(X, "X")
    X, y, validation_data = _split_validation(X, y, validation_data, validation_split)
    backend, xp = network.backend, network.backend.xp
    regression = network.task == "regression"
    samples, labels, weights = _first_samples(network, X, y, sample_weight)
    n = network.sample_count(samples)
    if n == 0:
        raise DataError("the training set is empty; give fit at least one sample")
    val = None
    if validation_data is not None:
        val = network.device_samples(*validation_data, where="the validation X")
        val_n = network.sample_count(val[0])
    if network.history is None:
        network.history = History()
    history = network.history
    history.params = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, **settings,
                      "samples": n}
    if optimizer == "sgd":
        history.params["lr_scaling"] = "none" if settings["layer_rates"] is None else "fan_in"
    callbacks = list(callbacks or [])
    if verbose:
        callbacks.append(EpochLogger(network.epochs_done + epochs, n))
    for cb in callbacks:
        cb.network = network
    network.optimizer = _optimizer_for(network, optimizer, settings)
    network.stop_training = False
    watch = CollapseWatch(network, X, y, epochs, optimizer, settings)

    rank, ranks = (communicator.rank, communicator.size) if communicator is not None else (0, 1)
    if batch_size < ranks:
        raise DataError(
            f"a minibatch of {batch_size} samples cannot be split across {ranks} ranks; "
            f"use --batch-size {ranks} or more, or fewer ranks"
        )

    decision = pick_dense(network, min(batch_size, n), dense)
    if decision is not None:
        network.dense = decision.path
    first_epoch = network.epochs_done
    with backend.device(), _work_stream(backend) as stream:
        batches = _Batches(network, n, min(batch_size, n), shuffle, rank, ranks)
        data = (samples, labels) if weights is None else (samples, labels, weights)
        loss_sum = xp.zeros((), dtype=np.float64)
        correct = xp.zeros((), dtype=np.int64)
        # how the epoch's loss and hits are counted: summed on the device, or recorded and scored at its end
        tally = network.sample_layout.epoch_tally(network, batches.steps, loss_sum, correct)
        steps = len(batches.steps)
        report_every = max(1, steps // 50)
        full_steps = n // batch_size if batch_size <= n else 0
        # set-up before the clock: the step of full batches, captured as a graph where it can be;
        # its workspace has min(batch_size, n) columns, as every batch here, never more than the data
        full_batches, step_path = _full_batch_step(network, data, batches.order, min(batch_size, n), loss_sum,
                                                   correct, stream, communicator, cuda_graph and full_steps > 0)
        history.params.update(dense=network.dense, dense_source=decision.source if decision else None,
                              step=step_path)

        for cb in callbacks:
            cb.on_train_begin()
        for epoch in range(first_epoch, first_epoch + epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            backend.synchronize()  # set-up and last epoch's work are done before the clock starts
            started = time.perf_counter()
            batches.reshuffle(epoch)
            loss_sum.fill(0)
            correct.fill(0)
            first = 0
            with np.errstate(all="ignore"):  # a diverging run is diagnosed below, not warned about per ufunc
                if full_batches is not None and full_steps:
                    full_batches.run_epoch(full_steps, progress, report_every)
                    first = full_steps
                for step, (index, m) in enumerate(batches.steps[first:], start=first):
                    train_step(network, data, index, m, tally, step, communicator)
                    if progress is not None and step % report_every == 0:
                        progress(step, steps)
                tally.finish(data, batches)
            if communicator is not None:
                communicator.allreduce_sum(loss_sum)
                communicator.allreduce_sum(correct)
            train_loss = float(loss_sum) / n  # the epoch's one read-back (waits for the device)
            train_accuracy = int(correct) / n
            seconds = time.perf_counter() - started
            if not math.isfinite(train_loss):
                raise TrainingDiverged(
                    f"the training loss became {train_loss} in epoch {epoch + 1}; "
                    f"{watch.advice()}"
                )
            logs = {"loss": train_loss} if regression else {"loss": train_loss, "accuracy": train_accuracy}
            if val is not None:
                with np.errstate(all="ignore"):  # a diverged network's validation is reported as such
                    result = network.evaluate_device(*val)
                    if regression:
                        val_y = regression_targets(validation_data[1], val_n, network.sizes[-1])
                        result.update(regression_metrics(network.predict(validation_data[0]), val_y))
                if regression:
                    logs.update(val_loss=result["loss"], val_mse=result["mse"], val_mae=result["mae"],
                                val_r2=result["r2"])
                else:
                    logs.update(val_loss=result["loss"], val_accuracy=result["accuracy"])
            logs["seconds"] = seconds
            network.epochs_done = epoch + 1
            history.append(epoch, logs)
            warning = watch.check(epoch - first_epoch, logs)
            if warning:
                history.warnings.append(warning)
                warnings.warn(warning, TrainingWarning, stacklevel=2)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if network.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
    return history


def _split_validation(X, y, validation_data, fraction):
    """``(X, y, validation_data)`` with the last ``fraction`` of (X, y) held out when asked."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}")
    if not fraction:
        return X, y, validation_data
    if validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    n = len(X)
    held_out = int(n * fraction)
    if held_out < 1 or held_out >= n:
        raise DataError(f"validation_split={fraction} of {n} samples leaves no training or no validation samples")
    cut = n - held_out
    return X[:cut], y[:cut], (X[cut:], y[cut:])


def _first_samples(network, X, y, sample_weight=None):
    """:meth:`MLP.device_data` of the training data, fitting the scaling and the classes on first use.

    A regression network fits its targets' standardisation (weighted by ``sample_weight``)
    instead of the classes; a multilabel network has neither.
    """
    regression = network.task == "regression"
    fresh_scaler = network.scaler is None
    fresh_classes = not network.float_targets and network.classes is None
    fresh_targets = regression and network.target_scaling is None
    try:
        if fresh_scaler:
            network.scaler = Scaler.fit(network._as_samples(X, "X"), network.scale)
        if fresh_classes:
            network.classes = infer_classes(y, network.sizes[-1])
        if fresh_targets:
            n = network._as_samples(X, "X").shape[0]
            weights = None if sample_weight is None else normalised_weights(sample_weight, n)
            network.target_scaling = TargetScaling.fit(regression_targets(y, n, network.sizes[-1]), np.ndim(y),
                                                       weights)
        return network.device_data(X, y, sample_weight=sample_weight)
    except Exception:
        if fresh_scaler:
            network.scaler = None
        if fresh_classes:
            network.classes = None
        if fresh_targets:
            network.target_scaling = None
        raise


class TrainingWarning(UserWarning):
    """A run that goes on but has stopped learning (see :mod:`gpunn.training.diagnosis`)."""


def optimizer_settings(network, optimizer, lr, momentum, nesterov, betas, eps, weight_decay, lr_scaling) -> dict:
    """The optimizer's settings with the defaults filled in; ValueError for options it does not take."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    lr_given = lr is not None
    if lr is None:
        lr = REGRESSION_SGD_LR if optimizer == "sgd" and network.task == "regression" else DEFAULT_LR[optimizer]
    weight_decay = DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else weight_decay
    if optimizer != "sgd":
        if momentum or nesterov:
            raise ValueError(f"momentum and nesterov are SGD options; {optimizer} has betas instead")
        if lr_scaling not in (None, "none"):
            raise ValueError(f"lr_scaling applies to SGD only, not to {optimizer}")
        return {"lr": lr, "betas": [float(b) for b in betas], "eps": eps, "weight_decay": weight_decay}
    if lr_scaling is None:
        lr_scaling = "none" if lr_given else "fan_in"
    rates = lr_scaling_rates(network.sizes, lr_scaling)
    return {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": bool(nesterov),
            "layer_rates": None if lr_scaling == "none" else rates}


def train_step(network, data, index, m, tally, step: int, communicator=None) -> None:
    """One minibatch: gather, forward, backprop, (all-reduce,) update; no host sync and no allocation.

    Args:
        data: ``(samples, labels)`` on the device, as made by :meth:`MLP.device_samples`, or
            ``(samples, answers, weights)`` (:meth:`MLP.device_data`) when training is weighted.
        index: this rank's sample indices for the batch (a view into the epoch order).
        m: the global batch size (the step divides by it).
        tally: the layout's epoch bookkeeping (``network.sample_layout.epoch_tally``): it runs the
            batch forward and backward and counts its loss and hits (in device scalars, or by
            recording the outputs, step ``step``, for the end of the epoch), then applies the update.
    """
    if index.shape[0]:
        ws = network.workspace(index.shape[0], weighted=len(data) > 2)
        network.sample_layout.gather(ws, data, index)
        tally.learn(ws, step, m)
    else:  # this rank's share of a short last batch is empty
        network.grads.fill(0)
    if communicator is not None:
        communicator.allreduce_sum(network.grads)
    tally.update(m)


def _work_stream(backend):
    """The stream training runs on: a new non-blocking CUDA stream on CuPy, else nothing.

    A stream that does not wait for the legacy default stream is what a CUDA graph can
    be captured on; the device is synchronized first so that the data copied to it
    on the default stream is in place.
    """
    if not backend.is_gpu:
        return contextlib.nullcontext()
    backend.xp.cuda.Device().synchronize()
    return backend.xp.cuda.Stream(non_blocking=True)


def _full_batch_step(network, data, order, batch_size, loss_sum, correct, stream, communicator, cuda_graph):
    """How this ``fit`` takes its full-batch steps: ``(runner or None, step path)``.

    NumPy: ``(None, "numpy")``, every step by :func:`train_step` from the host.  Kernel
    backends in one process: a :class:`~gpunn.training.device_step.DeviceStep`, which a GPU
    records as a CUDA graph when the step is capturable (the ``fused`` dense path) and
    ``cuda_graph`` allows: ``"graph"``; otherwise it runs call by call: ``"launches"``.
    With a communicator every step takes :func:`train_step` (the all-reduce sits in
    the middle of the step): ``(None, "launches")``.
    """
    if not network.sample_layout.device_steps:
        return None, "numpy"
    if communicator is not None:
        return None, "launches"
    body = DeviceStep(network, data, order, batch_size, loss_sum, correct)
    if not (cuda_graph and network.backend.is_gpu and body.capturable):
        return body, "launches"
    graphed = _capture(body, stream)
    return (body, "launches") if graphed is None else (graphed, "graph")


def _capture(body, stream):
    """``body`` as a captured :class:`~gpunn.training.cuda_graph.GraphedStep`, or None (with a warning) if capture fails.

    Only a capturable step gets here, so a failure is unexpected (a CUDA error, an
    allocation in the step): training goes on launch by launch and says why.
    """
    graphed = GraphedStep(body, stream)
    try:
        graphed.capture()
    except Exception as exc:  # any capture failure: fall back to launching kernels one by one
        warnings.warn(f"CUDA graph capture failed ({exc}); training without it", RuntimeWarning, stacklevel=4)
        return None
    return graphed


def _optimizer_for(network, name: str, settings: dict):
    """Reuse the network's optimizer (and its state) when training on with the same settings."""
    existing = getattr(network, "optimizer", None)
    if existing is not None and existing.matches(name, settings):
        return existing
    return make_optimizer(name, network.backend, network.layout, network.dtype, settings)
