"""The dense-path choice and its cache, on the CPU (the timing itself is real only on a GPU).

``pick_dense`` takes the measuring function as an argument, so a fake timer stands in
for :func:`gpunn.training.autotune.measure_on_device` here; the GPU tests run the real one.
"""

import contextlib
import json
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

import gpunn
from gpunn.training import autotune
from gpunn.compute import dense
from gpunn.training.autotune import Decision, TuningCache, pick_dense
from gpunn.training.autotune import cache_path as real_cache_path  # conftest points autotune.cache_path elsewhere

DEVICE = "Fake GPU (sm_90), cupy 14.2.0"


@pytest.fixture
def gpu_network(monkeypatch):
    """Just enough of a network on a (fake) GPU for pick_dense."""
    monkeypatch.setattr(autotune, "device_key", lambda backend: backend.device_name)
    monkeypatch.delenv(dense.ENV_VAR, raising=False)
    backend = SimpleNamespace(is_gpu=True, device_name=DEVICE)
    return SimpleNamespace(sample_layout=SimpleNamespace(device_steps=True), backend=backend, sizes=(784, 30, 10),
                           dtype=np.dtype("float32"))


class FakeTimer:
    """Seconds per step for each path, counting how often it is asked."""

    def __init__(self, **seconds):
        self.seconds, self.calls = seconds, 0

    def __call__(self, network, batch):
        self.calls += 1
        return dict(self.seconds)


def test_the_faster_path_is_picked_and_cached(gpu_network, tmp_path):
    cache = TuningCache(tmp_path / "tuning.json")
    timer = FakeTimer(fused=20e-6, cublas=150e-6)
    assert pick_dense(gpu_network, 10, cache=cache, measure=timer) == Decision("fused", "measured")
    record = cache.get(DEVICE, "784-30-10 batch 10 float32")
    assert record["pick"] == "fused" and record["step_us"] == {"fused": 20.0, "cublas": 150.0}
    # the next fit of the same shape reads the pick without timing anything
    assert pick_dense(gpu_network, 10, cache=cache, measure=timer) == Decision("fused", "cached")
    assert timer.calls == 1


def test_a_wide_shape_picks_cublas_and_each_shape_is_tuned_once(gpu_network, tmp_path):
    cache = TuningCache(tmp_path / "tuning.json")
    assert pick_dense(gpu_network, 10, cache=cache, measure=FakeTimer(fused=2e-5, cublas=1e-4)).path == "fused"
    gpu_network.sizes = (784, 4096, 4096, 10)
    timer = FakeTimer(fused=9e-3, cublas=4e-3)
    assert pick_dense(gpu_network, 1024, cache=cache, measure=timer) == Decision("cublas", "measured")
    assert pick_dense(gpu_network, 64, cache=cache, measure=timer) == Decision("cublas", "measured")  # new batch
    assert timer.calls == 2
    shapes = cache.load()[DEVICE]
    assert set(shapes) == {"784-30-10 batch 10 float32", "784-4096-4096-10 batch 1024 float32",
                           "784-4096-4096-10 batch 64 float32"}


def test_picks_are_kept_per_device_and_cupy_version(gpu_network, tmp_path):
    cache = TuningCache(tmp_path / "tuning.json")
    pick_dense(gpu_network, 10, cache=cache, measure=FakeTimer(fused=1e-5, cublas=2e-5))
    gpu_network.backend.device_name = "Fake GPU (sm_90), cupy 14.3.0"
    timer = FakeTimer(fused=3e-5, cublas=2e-5)
    assert pick_dense(gpu_network, 10, cache=cache, measure=timer) == Decision("cublas", "measured")
    assert timer.calls == 1 and len(cache.load()) == 2


def test_a_tie_goes_to_cublas_the_reference_path():
    assert autotune.fastest({"fused": 1e-5, "cublas": 1e-5}) == "cublas"
    assert autotune.fastest({"fused": 0.9e-5, "cublas": 1e-5}) == "fused"


@pytest.mark.parametrize("path", dense.PATHS)
def test_gpunn_dense_forces_a_path_without_timing(gpu_network, tmp_path, monkeypatch, path):
    monkeypatch.setenv(dense.ENV_VAR, path)
    timer = FakeTimer(fused=1.0, cublas=1.0)
    cache = TuningCache(tmp_path / "tuning.json")
    assert pick_dense(gpu_network, 10, cache=cache, measure=timer) == Decision(path, dense.ENV_VAR)
    assert timer.calls == 0 and not cache.path.exists()


def test_fits_dense_argument_overrides_gpunn_dense(gpu_network, tmp_path, monkeypatch):
    monkeypatch.setenv(dense.ENV_VAR, "cublas")
    cache = TuningCache(tmp_path / "tuning.json")
    assert pick_dense(gpu_network, 10, "fused", cache=cache) == Decision("fused", "fit(dense=)")
    timer = FakeTimer(fused=1e-5, cublas=2e-5)
    assert pick_dense(gpu_network, 10, "auto", cache=cache, measure=timer) == Decision("fused", "measured")


def test_a_bad_gpunn_dense_is_refused(gpu_network, monkeypatch):
    monkeypatch.setenv(dense.ENV_VAR, "cudnn")
    with pytest.raises(ValueError, match="GPUNN_DENSE='cudnn' is not a dense path: use fused, cublas or auto"):
        pick_dense(gpu_network, 10)


def test_a_failure_to_time_falls_back_to_cublas_with_a_warning(gpu_network, tmp_path):
    def broken(network, batch):
        raise RuntimeError("cudaErrorLaunchFailure")

    cache = TuningCache(tmp_path / "tuning.json")
    with pytest.warns(RuntimeWarning, match="could not time the dense paths.*cudaErrorLaunchFailure.*cuBLAS"):
        assert pick_dense(gpu_network, 10, cache=cache, measure=broken) == Decision("cublas", "fallback")
    assert cache.load() == {}, "a failed measurement is not cached"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"format": 99, "devices": {}}',
                                     '{"format": 1, "devices": {"' + DEVICE + '": {"784-30-10 batch 10 float32": '
                                     '{"pick": "cudnn"}}}}'])
def test_an_unreadable_or_foreign_cache_is_measured_again_and_replaced(gpu_network, tmp_path, content):
    path = tmp_path / "tuning.json"
    path.write_text(content)
    cache = TuningCache(path)
    assert pick_dense(gpu_network, 10, cache=cache, measure=FakeTimer(fused=1e-5, cublas=2e-5)).source == "measured"
    assert json.loads(path.read_text())["format"] == autotune.CACHE_FORMAT
    assert cache.get(DEVICE, "784-30-10 batch 10 float32")["pick"] == "fused"


def test_the_cache_file_is_replaced_atomically(gpu_network, tmp_path, monkeypatch):
    cache = TuningCache(tmp_path / "tuning.json")
    pick_dense(gpu_network, 10, cache=cache, measure=FakeTimer(fused=1e-5, cublas=2e-5))
    before = (tmp_path / "tuning.json").read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # the rename that publishes the new file fails
    gpu_network.sizes = (784, 100, 10)
    with pytest.warns(RuntimeWarning, match="could not save the dense-path pick.*disk full"):
        assert pick_dense(gpu_network, 10, cache=cache, measure=FakeTimer(fused=1e-5, cublas=2e-5)).path == "fused"
    assert (tmp_path / "tuning.json").read_text() == before, "the old file stays whole"
    assert [p.name for p in tmp_path.iterdir()] == ["tuning.json"], "no temporary file is left behind"


def test_cpu_backends_do_not_tune(monkeypatch):
    monkeypatch.delenv(dense.ENV_VAR, raising=False)

    def never(network, batch):
        raise AssertionError("nothing is timed on the CPU")

    assert pick_dense(gpunn.Network([4, 3], backend="numpy"), 10, measure=never) is None
    assert pick_dense(gpunn.Network([4, 3], backend="emulated"), 10, measure=never) == Decision("fused", "emulated")


def test_the_cache_lives_in_gpunns_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert real_cache_path() == tmp_path / "gpunn" / autotune.CACHE_FILE


class _FakeCuda:
    """Just the CUDA runtime measure_on_device uses, on the host: a "graph" replays the captured body."""

    class Stream:
        def __init__(self, non_blocking=False):
            self.captured = None

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def begin_capture(self):
            self.captured = []

        def end_capture(self):
            return _FakeGraph()

    class Event:
        def record(self, stream=None):
            self.at = time.perf_counter()

        def synchronize(self):
            pass

    class Device:
        def synchronize(self):
            pass

    @staticmethod
    def get_elapsed_time(start, end):
        return (end.at - start.at) * 1e3

    @staticmethod
    def using_allocator(allocator):
        return contextlib.nullcontext()


class _FakeGraph:
    body = None  # set by the test: the step a real graph would have recorded

    def upload(self, stream):
        pass

    def launch(self, stream=None):
        _FakeGraph.body()


class _FakeCupy:
    """NumPy with a host stand-in for cupy.cuda."""

    cuda = _FakeCuda

    def __getattr__(self, name):
        return getattr(np, name)


def test_measuring_trains_a_throwaway_network_with_each_path_and_leaves_the_real_one_alone(monkeypatch):
    from gpunn.training import cuda_graph
    from gpunn.compute.backend import get_backend

    backend = get_backend("emulated")
    backend.xp = _FakeCupy()
    real_capture = cuda_graph.GraphedStep.capture

    def capture(self):
        real_capture(self)  # runs the body once here (a real capture would only record it)
        _FakeGraph.body = self.body

    monkeypatch.setattr(cuda_graph.GraphedStep, "capture", capture)
    net = gpunn.Network([12, 7, 5], activation="relu", output_activation="softmax", backend=backend, seed=1)
    before = net.params.copy()
    seconds = autotune.measure_on_device(net, 6, warmup=1, timed=2)
    assert set(seconds) == set(dense.PATHS) and all(s > 0 for s in seconds.values())
    np.testing.assert_array_equal(net.params, before)
    assert net.dense == "fused" and net.optimizer is None


# -- the order of the device work around the captured step ---------------------------------
# On a GPU, work on the legacy default stream and work on a non-blocking stream are not ordered
# (CUDA's cudaStreamNonBlocking; CuPy 14.2, cupy/cuda/stream.pyx: Stream(non_blocking=True), and
# `with stream` makes it the current stream that CuPy's array operations launch on).  So every
# write measure_on_device enqueues before a step runs on the replay stream must be on that stream,
# or a device synchronization must come between.  The host fake below logs each write with the
# stream that was current, each device synchronization and each step, in order.


class _StreamLog:
    events: list = []
    current: list = [None]  # the stack of current streams; None: the legacy default stream


class _LoggedArray(np.ndarray):
    """A NumPy array whose element writes are logged with the current stream (as CuPy enqueues them)."""

    def __setitem__(self, key, value):
        _StreamLog.events.append(("write", _StreamLog.current[-1]))
        super().__setitem__(key, value)

    def fill(self, value):
        _StreamLog.events.append(("write", _StreamLog.current[-1]))
        super().fill(value)


class _LoggingCuda(_FakeCuda):
    class Stream(_FakeCuda.Stream):
        def __enter__(self):
            _StreamLog.current.append(self)
            return self

        def __exit__(self, *exc):
            _StreamLog.current.pop()
            return False

        def end_capture(self):
            return _LoggingGraph()

    class Device:
        def synchronize(self):
            _StreamLog.events.append(("synchronize device",))


class _LoggingGraph:
    body = None  # the captured DeviceStep

    def upload(self, stream):
        pass

    def launch(self, stream=None):
        _StreamLog.events.append(("step", stream))
        _LoggingGraph.run(_LoggingGraph.body)


class _LoggingCupy(_FakeCupy):
    """NumPy whose array-making functions log the writes they enqueue (``empty`` writes nothing)."""

    cuda = _LoggingCuda
    _WRITING = {"zeros", "ones", "full", "arange", "asarray", "array", "ascontiguousarray", "zeros_like",
                "ones_like", "full_like", "copy"}

    def __getattr__(self, name):
        function = getattr(np, name)
        if name not in self._WRITING | {"empty", "empty_like"}:
            return function

        def logged(*args, **kwargs):
            if name in self._WRITING:
                _StreamLog.events.append(("write", _StreamLog.current[-1]))
            result = function(*args, **kwargs)
            return result.view(_LoggedArray) if isinstance(result, np.ndarray) else result

        return logged


def test_the_timed_steps_run_after_their_set_up_on_the_same_stream(monkeypatch):
    """The step counter's zero and the workspace's row of ones (network.py) must be in place before
    the captured step replays on the non-blocking stream: written on that stream, or synchronized."""
    from gpunn.training import cuda_graph
    from gpunn.compute.backend import get_backend
    from gpunn.training.device_step import DeviceStep

    monkeypatch.setattr(_StreamLog, "events", [])
    monkeypatch.setattr(_StreamLog, "current", [None])
    run = DeviceStep.__call__

    def logged_step(self):  # a step launched call by call (the cublas path), on the current stream
        _StreamLog.events.append(("step", _StreamLog.current[-1]))
        run(self)

    monkeypatch.setattr(DeviceStep, "__call__", logged_step)
    monkeypatch.setattr(_LoggingGraph, "run", staticmethod(run), raising=False)

    def capture(self):  # a real capture records the step on self.stream; this runs it there once
        with self.stream:
            _StreamLog.events.append(("step", self.stream))
            run(self.body)
        self.graph = _LoggingGraph()
        _LoggingGraph.body = self.body

    monkeypatch.setattr(cuda_graph.GraphedStep, "capture", capture)
    backend = get_backend("emulated")
    backend.xp = _LoggingCupy()
    net = gpunn.Network([12, 7, 5], activation="tanh", backend=backend, seed=1)
    autotune.measure_on_device(net, 6, warmup=1, timed=2)

    steps = [event for event in _StreamLog.events if event[0] == "step"]
    assert len(steps) == 2 * (1 + 2) + 1, "each path's warm-up and timed steps, plus the fused capture"
    unsynchronized = set()  # streams written on since the last device synchronization
    for index, event in enumerate(_StreamLog.events):
        if event[0] == "synchronize device":
            unsynchronized.clear()
        elif event[0] == "write":
            unsynchronized.add(event[1])
        else:
            others = unsynchronized - {event[1]}
            assert not others, (f"event {index}: a step on {event[1]!r} may run before writes on "
                                f"{', '.join('the default stream' if s is None else repr(s) for s in others)}")
