"""The path training takes through parameter space: the weights at the start and after each epoch.

:class:`TrajectoryRecorder` is a :class:`~gpunn.training.callbacks.Callback` that copies the flat
parameter buffer to the host when training begins and after every epoch, into
``network.trajectory`` (a :class:`Trajectory`).  Model files keep it
(:func:`gpunn.saving.model_file.save`), and :mod:`gpunn.explain.landscape` draws the loss landscape around the
final weights with this path projected onto it.  ``gpunn train --record-trajectory``
turns it on; it is off by default.

Memory is bounded: at most ``max_snapshots`` snapshots (default 101: the start and 100
epochs) and at most ``max_bytes`` of them (default 64 MiB; a 784-30-10 network's
23,860 float32 parameters take 93 KiB a snapshot, so the count binds first).  When the
next snapshot would exceed either bound, every other snapshot is dropped and the
recording interval doubles, so the snapshots kept stay evenly spaced from the first
epoch to the latest: a run of 1,000 epochs keeps epochs 0, 16, 32, ... and its last.
The first snapshot (where training started) and the latest are always kept.

Full snapshots rather than a random projection of them, because the landscape's
directions are the trajectory's own principal components, which need the vectors.
A resumed model that carries a trajectory continues it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpunn.compute.backend import to_numpy
from gpunn.training.callbacks import Callback

DEFAULT_MAX_SNAPSHOTS = 101
DEFAULT_MAX_BYTES = 64 << 20
#: The most a trajectory may take in a model file (a larger ``max_bytes`` is refused).
MAX_TRAJECTORY_BYTES = 1 << 30


@dataclass
class Trajectory:
    """Snapshots of a network's flat parameter buffer.

    ``epochs[i]`` is the number of epochs trained when ``params[i]`` was taken (the first
    is where recording began, 0 for a new network); ``every`` is the current interval
    between kept snapshots, in epochs.
    """

    epochs: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)
    every: int = 1

    @property
    def params(self) -> np.ndarray:
        """(snapshots, parameters) array on the host, in the network's dtype."""
        return np.stack(self.snapshots)

    def __len__(self) -> int:
        return len(self.epochs)

    def add(self, epoch: int, params: np.ndarray, limit: int) -> None:
        """Append a snapshot, keeping at most ``limit`` of them (see the module docstring)."""
        start = self.epochs[0] if self.epochs else epoch
        if len(self.epochs) > 1 and (self.epochs[-1] - start) % self.every:
            self._drop(-1)  # the previous latest was off the interval; the new one replaces it
        self.epochs.append(int(epoch))
        self.snapshots.append(params)
        while len(self.epochs) > limit:
            self.every *= 2
            keep = [i for i, e in enumerate(self.epochs)
                    if (e - start) % self.every == 0 or i == len(self.epochs) - 1]
            self.epochs = [self.epochs[i] for i in keep]
            self.snapshots = [self.snapshots[i] for i in keep]

    @classmethod
    def from_arrays(cls, epochs, params) -> "Trajectory":
        """A trajectory read back from a model file: its epochs and (snapshots, parameters) array.

        The interval is the largest power of two that spaces all snapshots but the latest.
        """
        epochs = [int(e) for e in epochs]
        every = 1
        steps = [e - epochs[0] for e in epochs[1:-1]]
        while steps and all(step % (2 * every) == 0 for step in steps):
            every *= 2
        return cls(epochs=epochs, snapshots=list(np.asarray(params)), every=every)

    def _drop(self, index: int) -> None:
        del self.epochs[index], self.snapshots[index]


class TrajectoryRecorder(Callback):
    """Keep the parameters at the start of training and after every epoch in ``network.trajectory``.

    Args:
        max_snapshots: keep at most this many (at least 2: the start and the latest).
        max_bytes: and at most this many bytes of them (at most :data:`MAX_TRAJECTORY_BYTES`).

    Each snapshot is one copy of the flat parameter buffer to the host, once per epoch.
    Put it after callbacks that change the weights at the end of training (EarlyStopping
    restoring its best weights), so that the path ends where the network does.
    """

    def __init__(self, max_snapshots: int = DEFAULT_MAX_SNAPSHOTS, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_snapshots < 2:
            raise ValueError(f"max_snapshots must be at least 2 (the start and the end), got {max_snapshots}")
        if not 0 < max_bytes <= MAX_TRAJECTORY_BYTES:
            raise ValueError(f"max_bytes must be above 0 and at most {MAX_TRAJECTORY_BYTES}, got {max_bytes}")
        self.max_snapshots, self.max_bytes = int(max_snapshots), int(max_bytes)
        self.limit = self.max_snapshots

    def on_train_begin(self, logs=None):
        net = self.network
        self.limit = max(2, min(self.max_snapshots, self.max_bytes // (net.layout.size * net.dtype.itemsize)))
        if net.trajectory is None:
            net.trajectory = Trajectory()
        if not len(net.trajectory) or net.trajectory.epochs[-1] != net.epochs_done:
            self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self._snapshot()

    def on_train_end(self, logs=None):
        latest = self.network.trajectory.snapshots[-1]
        if not np.array_equal(latest, to_numpy(self.network.params)):  # weights changed after the last epoch
            self.network.trajectory._drop(-1)
            self._snapshot()

    def _snapshot(self) -> None:
        net = self.network
        net.trajectory.add(net.epochs_done, to_numpy(net.params).copy(), self.limit)
