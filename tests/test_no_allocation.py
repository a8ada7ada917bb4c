"""After the first step, a NumPy training step allocates no array (checked with tracemalloc).

NumPy reports every array data allocation to tracemalloc under its own domain, so
we count live allocations in that domain during a steady-state epoch.  Arrays of
under 1 KiB can come from NumPy's small-block cache unseen, so every buffer here is
kept larger than that (batch 64, float64).
"""

import tracemalloc

import numpy as np
import pytest

import gpunn
from gpunn.training.loop import train_step

NUMPY_DOMAIN = np.lib.tracemalloc_domain


class StepSpy(gpunn.Callback):
    """Measures NumPy-domain allocations between the start and end of epochs 2.."""

    def __init__(self):
        self.peaks = []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= 1:
            tracemalloc.start()
            self.before = _numpy_bytes()

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= 1:
            self.peaks.append(_numpy_bytes() - self.before)
            tracemalloc.stop()


def _numpy_bytes() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, NUMPY_DOMAIN)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


@pytest.mark.parametrize("momentum,weight_decay,loss", [(0.0, 0.0, "quadratic"), (0.9, 1e-4, "cross_entropy")])
def test_steady_state_steps_allocate_no_arrays(momentum, weight_decay, loss):
    rng = np.random.default_rng(0)
    X, y = rng.random((64 * 20 + 40, 30)), rng.integers(0, 10, 64 * 20 + 40)
    net = gpunn.Network([30, 24, 10], backend="numpy", dtype="float64", loss=loss)
    spy = StepSpy()
    net.fit(X, y, epochs=3, batch_size=64, lr=0.1, momentum=momentum, weight_decay=weight_decay, callbacks=[spy])
    # The per-epoch work outside the steps (the new sample order) is freed again;
    # a leaked or per-step array would show up as growth here.
    assert spy.peaks == [0, 0]


KINDS = {  # (network options, fit options)
    "sigmoid-sgd": ({}, dict(lr=0.1)),
    "sigmoid-momentum": ({}, dict(lr=0.1, momentum=0.9)),
    "relu-softmax-adam": (dict(activation="relu", output_activation="softmax"), dict(optimizer="adam")),
    "tanh-softmax-adamw": (dict(activation="tanh", output_activation="softmax"), dict(optimizer="adamw")),
    "relu-nesterov-decay": (dict(activation="relu"), dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)),
}


@pytest.mark.parametrize("updates", ["compiled", "numpy"])
@pytest.mark.parametrize("kind", KINDS)
def test_steps_make_no_temporary_arrays(kind, updates, monkeypatch):
    """Peak traced NumPy memory during steady-state steps stays at the live buffers.

    For every kind of network and optimizer, with the compiled updates and with the NumPy twins.
    """
    monkeypatch.setenv("GPUNN_CPU_UPDATES", updates)
    network_options, fit_options = KINDS[kind]
    rng = np.random.default_rng(1)
    X, y = rng.random((64 * 10, 30)), rng.integers(0, 10, 64 * 10)
    net = gpunn.Network([30, 24, 10], backend="numpy", dtype="float64", **network_options)
    net.fit(X, y, epochs=1, batch_size=64, **fit_options)  # first steps: buffers get made

    data = net.device_samples(X, y)
    index = np.arange(64)
    zero = np.zeros((), dtype=np.float64), np.zeros((), dtype=np.int64)
    tally = net.sample_layout.epoch_tally(net, [(index, 64)], *zero)  # the NumPy layout records the outputs

    def step():
        train_step(net, data, index, 64, tally, 0)

    step()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(20):
        step()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The smallest array a step could make is 10 x 64 x 8 = 5 KiB; Python's own small
    # objects (views, scalars) stay far below that.
    assert peak - base < 2048
    assert current - base < 512
