"""What ``fit`` sets up once, and what it counts in an epoch's time: the device generator, the
step path, the dense path, the clock."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

import gpunn
from gpunn.training import loop as train
from gpunn.compute.backend import is_cupy_array


class FakeRandomState:
    """Stands in for cupy.random.RandomState: records how many are made, and their seeds."""

    made: list = []

    def __init__(self, seed=None, method=None):
        FakeRandomState.made.append(self)
        self.method, self.seeds = method, []

    def seed(self, seed):
        self.seeds.append(seed)
        self._rng = np.random.default_rng(seed)

    def permutation(self, n):
        return self._rng.permutation(n)


PHILOX = 6  # the value of cupy.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10 does not matter here


def test_a_gpu_fit_reseeds_one_philox_generator_each_epoch(monkeypatch):
    """Making a cuRAND generator runs a set-up kernel and freeing one synchronizes the device:
    one per fit, reseeded from (seed, epoch) so that resuming stays exact."""
    FakeRandomState.made = []
    xp = SimpleNamespace(arange=np.arange, random=SimpleNamespace(RandomState=FakeRandomState),
                         cuda=SimpleNamespace(curand=SimpleNamespace(CURAND_RNG_PSEUDO_PHILOX4_32_10=PHILOX)))
    network = SimpleNamespace(backend=SimpleNamespace(is_gpu=True, xp=xp), seed=4)
    batches = train._Batches(network, 20, 5, shuffle=True)
    orders = []
    for epoch in (0, 1, 2, 1):
        batches.reshuffle(epoch)
        orders.append(batches.order.copy())
    (generator,) = FakeRandomState.made
    assert generator.method == PHILOX
    assert generator.seeds == [4 * 1_000_003 + epoch for epoch in (0, 1, 2, 1)]
    assert sorted(orders[0]) == list(range(20)) and not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(orders[1], orders[3])  # the order is a function of (seed, epoch)


def test_an_epochs_time_leaves_out_fits_set_up(monkeypatch):
    """Choosing the dense path and building (on a GPU: capturing) the step happen before the clock."""
    slow = 0.5

    def slowly(real):
        def wrapper(*args, **kwargs):
            time.sleep(slow)
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(train, "pick_dense", slowly(train.pick_dense))
    monkeypatch.setattr(train, "_full_batch_step", slowly(train._full_batch_step))
    rng = np.random.default_rng(0)
    net = gpunn.Network([5, 4, 3], backend="emulated", seed=1)
    started = time.perf_counter()
    history = net.fit(rng.random((40, 5)), rng.integers(0, 3, 40), epochs=1, batch_size=10)
    assert time.perf_counter() - started > 2 * slow
    assert history.history["seconds"][0] < slow


@pytest.mark.parametrize("backend,dense,step", [("numpy", None, "numpy"), ("emulated", "fused", "launches"),
                                                ("emulated", "cublas", "launches")])
def test_history_says_which_paths_ran(backend, dense, step):
    rng = np.random.default_rng(0)
    net = gpunn.Network([5, 4, 3], backend=backend, seed=1)
    history = net.fit(rng.random((30, 5)), rng.integers(0, 3, 30), epochs=1, batch_size=10, dense=dense)
    assert (history.params["dense"], history.params["step"]) == (dense, step)
    assert net.dense == dense


def test_emulated_full_batches_and_a_short_last_batch_train_like_numpy():
    """Four full batches through the device-counter step (DeviceStep), the short fifth through train_step."""
    rng = np.random.default_rng(3)
    X, y = rng.random((23, 6)), rng.integers(0, 4, 23)
    runs = [gpunn.Network([6, 5, 4], backend=backend, dtype="float64", seed=2)
            .fit(X, y, epochs=2, batch_size=5, lr=0.5, shuffle="host").history for backend in ("emulated", "numpy")]
    np.testing.assert_allclose(runs[0]["loss"], runs[1]["loss"], rtol=1e-12)


def test_only_cupy_arrays_count_as_device_arrays():
    class FakeCupyArray:
        def get(self):
            return np.zeros(1)

    FakeCupyArray.__module__ = "cupy._core.core"
    assert is_cupy_array(FakeCupyArray())
    assert not is_cupy_array(np.zeros(3)) and not is_cupy_array([[1.0, 2.0]])


def test_fit_takes_lists_on_a_kernel_backend():
    net = gpunn.Network([2, 3, 2], backend="emulated", seed=0)
    history = net.fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [1, 1, 0], epochs=1, batch_size=2)
    assert np.isfinite(history.history["loss"][0])


def test_a_batch_size_above_the_sample_count_makes_no_larger_workspace():
    """batch_size 1000 on 12 samples: one batch of 12, so every buffer holds 12 columns, not 1000
    (the full-batch step's workspace was made for batch_size)."""
    rng = np.random.default_rng(4)
    net = gpunn.Network([6, 5, 4], backend="emulated", seed=2)
    net.fit(rng.random((12, 6)), rng.integers(0, 4, 12), epochs=1, batch_size=1000)
    assert sorted(net._workspaces) == [(12, False)]  # keyed by (columns, weighted)
    assert all(a.shape[1] == 12 for a in net._workspaces[(12, False)].acts)
