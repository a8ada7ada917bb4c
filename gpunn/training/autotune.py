"""Which dense path a GPU trains with: measured on the device once per shape, then cached on disk.

For narrow layers and small batches gpunn's fused kernels, replayed as one CUDA graph
per step, beat cuBLAS launched kernel by kernel from Python; for wide layers cuBLAS
wins (see :mod:`gpunn.compute.dense`).  Where the crossover lies depends on the device, so, as
cuDNN and Triton's ``autotune`` do, the GPU backend times both the first time it
trains a network shape, keeps the faster, and remembers the pick.

:func:`pick_dense` decides, in this order:

1. ``fit(dense=...)`` or ``$GPUNN_DENSE`` naming ``fused`` or ``cublas``: that path;
2. the ``emulated`` backend: ``fused`` (it exists to run gpunn's kernels; nothing to time);
3. a pick cached for this device, CuPy version and shape (layer sizes, batch, dtype);
4. else :func:`measure_on_device`: a throwaway network of the same shape trains a few
   warm steps on synthetic data with each path, the fused step replayed as a CUDA
   graph and the cuBLAS step launched call by call, timed with CUDA events; the
   faster is cached (ties go to cuBLAS, the reference path).  A failure to time falls
   back to ``cublas`` with a warning and caches nothing.

The cache is one JSON file, ``$XDG_CACHE_HOME/gpunn/dense_tuning.json`` (else
``~/.cache/gpunn/``), written atomically (:func:`gpunn.files.atomic_write`)::

    {"format": 1,
     "devices": {"NVIDIA H200 (sm_90), cupy 14.2.0":
                 {"784-30-10 batch 10 float32":
                  {"pick": "fused", "step_us": {"fused": 21.5, "cublas": 160.2},
                   "tuned": "2026-05-01T12:00:00+00:00"}}}}

An unreadable or foreign file is treated as empty (and replaced at the next pick);
a cache folder that cannot be written only costs a re-measurement next time.  Two
processes tuning at once may each write their pick; the file stays whole and the
later one wins.  ``gpunn info`` lists the cached picks.
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from gpunn.compute import dense
from gpunn.files import atomic_write, cache_root
from gpunn.nn.mlp import MLP
from gpunn.nn.targets import TargetScaling
from gpunn.training.cuda_graph import GraphedStep
from gpunn.training.device_step import DeviceStep
from gpunn.training.optim import SGD

CACHE_FILE = "dense_tuning.json"
CACHE_FORMAT = 1
#: Steps each path trains before the clock starts (cuBLAS handles, first launches)...
WARMUP_STEPS = 3
#: ...and steps timed, between two CUDA events.
TIMED_STEPS = 20


class Decision(NamedTuple):
    """A dense path and why it was chosen (``fit(dense=)``, ``GPUNN_DENSE``, ``emulated``, ``cached``,
    ``measured`` or ``fallback``)."""

    path: str
    source: str


def cache_path() -> Path:
    """Where the picks are kept: ``dense_tuning.json`` in gpunn's cache folder."""
    return cache_root() / CACHE_FILE


def shape_key(sizes, batch: int, dtype) -> str:
    """The cache key of a network shape, e.g. ``"784-30-10 batch 10 float32"``."""
    return f"{'-'.join(str(int(s)) for s in sizes)} batch {int(batch)} {np.dtype(dtype).name}"


def device_key(backend) -> str:
    """The cache key of ``backend``'s GPU and CuPy version, e.g. ``"NVIDIA H200 (sm_90), cupy 14.2.0"``."""
    cupy = backend.xp
    props = cupy.cuda.runtime.getDeviceProperties(backend.device_id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"{name} (sm_{props['major']}{props['minor']}), cupy {cupy.__version__}"


class TuningCache:
    """The picks on disk: ``{device key: {shape key: record}}`` in one JSON file (see the module docstring)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else cache_path()

    def load(self) -> dict:
        """Every device's picks; empty when the file is missing, unreadable or not gpunn's."""
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT:
            return {}
        devices = content.get("devices")
        return devices if isinstance(devices, dict) else {}

    def get(self, device: str, shape: str) -> dict | None:
        """The record cached for ``device`` and ``shape``, if it names a known path."""
        record = self.load().get(device, {}).get(shape)
        if isinstance(record, dict) and record.get("pick") in dense.PATHS:
            return record
        return None

    def put(self, device: str, shape: str, record: dict) -> None:
        """Add (or replace) one record, rewriting the file atomically; a write that fails only warns."""
        devices = self.load()
        devices.setdefault(device, {})[shape] = record
        text = json.dumps({"format": CACHE_FORMAT, "devices": devices}, indent=1, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))
        except OSError as exc:
            warnings.warn(f"could not save the dense-path pick to {self.path} ({exc}); it will be measured "
                          "again next time", RuntimeWarning, stacklevel=2)


def fastest(step_seconds: dict[str, float]) -> str:
    """The path with the shortest step; on a tie ``cublas``, the reference path."""
    return min(dense.PATHS[::-1], key=lambda path: step_seconds[path])


def pick_dense(network, batch: int, asked: str | None = None, *, cache: TuningCache | None = None,
               measure: Callable | None = None) -> Decision | None:
    """The dense path ``network`` should train batches of ``batch`` with (None on NumPy).

    ``asked``: ``fit``'s ``dense`` argument (None: ``$GPUNN_DENSE``, else ``auto``).
    ``cache`` and ``measure`` (``measure(network, batch) -> {path: seconds per step}``,
    default :func:`measure_on_device`) are replaceable for tests.  See the module
    docstring for the order of the rules.
    """
    if not network.sample_layout.device_steps:  # NumPy: no dense paths to choose between
        return None
    path = dense.requested(asked)
    if path != "auto":
        return Decision(path, "fit(dense=)" if asked else dense.ENV_VAR)
    backend = network.backend
    if not backend.is_gpu:
        return Decision("fused", "emulated")
    cache = cache if cache is not None else TuningCache()
    device, shape = device_key(backend), shape_key(network.sizes, batch, network.dtype)
    record = cache.get(device, shape)
    if record is not None:
        return Decision(record["pick"], "cached")
    try:
        seconds = (measure or measure_on_device)(network, batch)
        pick = fastest(seconds)
    except Exception as exc:  # any failure to time: train on the reference path rather than not at all
        warnings.warn(f"could not time the dense paths for {shape} ({type(exc).__name__}: {exc}); "
                      "training with cuBLAS", RuntimeWarning, stacklevel=2)
        return Decision("cublas", "fallback")
    cache.put(device, shape, {"pick": pick, "step_us": {p: round(s * 1e6, 2) for p, s in seconds.items()},
                              "tuned": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return Decision(pick, "measured")


def measure_on_device(network, batch: int, warmup: int = WARMUP_STEPS, timed: int = TIMED_STEPS) -> dict:
    """Seconds per training step of each dense path for ``network``'s shape at ``batch``, on its GPU.

    A throwaway :class:`~gpunn.nn.mlp.MLP` of the same sizes, activations, loss and dtype takes plain
    SGD steps (a tiny learning rate) on ``batch * (warmup + timed)`` synthetic samples,
    so ``network`` itself is untouched.  The fused step is captured once and replayed
    as a CUDA graph, the cuBLAS step runs call by call: each as training would run it.
    Timed with CUDA events on a non-blocking stream (``cupy.cuda.Event.record`` and
    ``cupy.cuda.get_elapsed_time``, milliseconds; CuPy 14.2, cupy/cuda/stream.pyx).
    """
    backend = network.backend
    cupy = backend.xp
    probe = MLP(network.sizes, activation=network.activation, output_activation=network.output_activation,
                loss=network.loss, backend=backend, dtype=network.dtype.name, seed=0,
                multilabel=network.multilabel)
    probe.optimizer = SGD(backend, probe.layout, probe.dtype, lr=1e-6)
    n = batch * (warmup + timed)
    rng = np.random.default_rng(0)
    X = rng.random((n, network.sizes[0]), dtype=np.float32)
    if probe.float_targets:  # the same step as training takes: float targets, gathered beside the samples
        y = rng.integers(0, 2, (n, network.sizes[-1])).astype(np.float64)
        if probe.task == "regression":
            probe.target_scaling = TargetScaling.fit(y)
    else:
        y = rng.integers(0, network.sizes[-1], n)
    seconds = {}
    with backend.device():
        data = probe.device_samples(X, y)
        order = cupy.arange(n, dtype=np.int64)
        loss_sum, correct = cupy.zeros((), np.float64), cupy.zeros((), np.int64)
        cupy.cuda.Device().synchronize()  # the uploads above ran on the default stream
        stream = cupy.cuda.Stream(non_blocking=True)
        for path in dense.PATHS:
            probe.dense = path
            # Everything from here on runs on `stream`, the set-up included: building the step
            # zeroes its step counter and (the first time) fills its workspace's row of ones
            # (gpunn.nn.layout.Workspace, `a[-1] = 1`), and CuPy enqueues those on the current
            # stream.  Outside `with stream` that is the legacy default stream, which a non-blocking stream does
            # not wait for (CUDA's cudaStreamNonBlocking; CuPy's cupy/cuda/stream.pyx:
            # _BaseStream.__enter__ pushes the stream as the current one, and begin_capture's
            # docstring captures on Stream(non_blocking=True), as GraphedStep does here), so the
            # replayed graph could read them unwritten.  training.loop.fit likewise builds its step
            # inside its work stream.
            with stream:
                body = DeviceStep(probe, data, order, batch, loss_sum, correct)
                step = body
                if body.capturable:
                    graphed = GraphedStep(body, stream)
                    graphed.capture()
                    step = lambda: graphed.graph.launch(stream)  # noqa: E731 - one replay, as training does
                body.step.fill(0)
                for _ in range(warmup):
                    step()
                start, end = cupy.cuda.Event(), cupy.cuda.Event()
                start.record(stream)
                for _ in range(timed):
                    step()
                end.record(stream)
                end.synchronize()
            seconds[path] = cupy.cuda.get_elapsed_time(start, end) / 1e3 / timed
    return seconds
