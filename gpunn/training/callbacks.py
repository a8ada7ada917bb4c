"""Callbacks for :meth:`gpunn.Network.fit`: the base class, epoch lines, checkpoints, early stopping.

:class:`ModelCheckpoint` and :class:`EarlyStopping` watch the per-epoch logs that
:func:`gpunn.training.loop.fit` passes to ``on_epoch_end`` (``loss``, ``accuracy``, and with
validation data ``val_loss`` and ``val_accuracy``).  "Better" means lower for a metric
whose name contains ``loss`` and higher otherwise, unless ``mode`` says ``"min"`` or
``"max"``.  :class:`EpochLogger` prints the epoch lines of ``fit(verbose=...)`` and of
``gpunn train``.
"""

from __future__ import annotations

import math
import sys

class Callback:
    """Base class for hooks called by :func:`fit`; override what you need.

    ``self.network`` is set before ``on_train_begin``.  Setting
    ``network.stop_training = True`` ends training after the current epoch.
    """

    network = None

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before each epoch (``epoch`` counts from 0)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch with its ``logs``: loss, accuracy, val_*, seconds."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch."""


class EpochLogger(Callback):
    """One line per epoch on ``stream`` (stderr), as ``gpunn train`` prints them.

    ``epoch   3/10  loss 0.08123  running train acc 0.9512  val acc 0.9466  61,234 samples/s``:
    the training loss and accuracy are measured during the epoch, as the weights moved
    (hence "running"); the validation figures after it.  ``show_warnings`` also prints
    each new diagnosis of the run (``history.warnings``) as a ``Warning: ...`` line, even
    without the epoch lines (``lines=False``); ``before_line`` is called first (e.g. to
    clear a progress bar).
    """

    def __init__(self, epochs: int, samples: int, val_label: str = "val", show_warnings: bool = False,
                 lines: bool = True, stream=None, before_line=None):
        self.epochs, self.samples, self.val_label = epochs, samples, val_label
        self.show_warnings, self.lines, self.stream, self.before_line = show_warnings, lines, stream, before_line
        self.warned = 0

    def on_epoch_end(self, epoch, logs=None):
        stream = self.stream or sys.stderr
        if self.before_line is not None:
            self.before_line()
        if self.show_warnings:
            found = self.network.history.warnings
            for warning in found[self.warned:]:
                print(f"Warning: {warning}", file=stream)
            self.warned = len(found)
        if not self.lines:
            return
        rate = self.samples / logs["seconds"] if logs["seconds"] > 0 else float("inf")
        if "accuracy" not in logs:  # a regression network: its loss, and the validation R^2
            val = f"  {self.val_label} r2 {logs['val_r2']:.4f}" if "val_r2" in logs else ""
            print(f"epoch {epoch + 1:>3}/{self.epochs}  loss {logs['loss']:.5f}{val}  {rate:,.0f} samples/s",
                  file=stream, flush=True)
            return
        val = f"  {self.val_label} acc {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
        print(f"epoch {epoch + 1:>3}/{self.epochs}  loss {logs['loss']:.5f}  running train acc "
              f"{logs['accuracy']:.4f}{val}  {rate:,.0f} samples/s", file=stream, flush=True)

MODES = ("auto", "min", "max")


def _minimizes(monitor: str, mode: str) -> bool:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return "loss" in monitor if mode == "auto" else mode == "min"


def _monitored(logs: dict, monitor: str, owner: str) -> float:
    if monitor not in logs:
        raise ValueError(
            f"{owner} monitors {monitor!r} but the epoch's logs have only {', '.join(sorted(logs))}; "
            f"pass validation_data to fit, or monitor one of those"
        )
    return logs[monitor]


class ModelCheckpoint(Callback):
    """Save the network to ``path`` (atomically, see :func:`gpunn.saving.model_file.save`) during training.

    Args:
        path: the model file; every save replaces it, so it always holds one whole model.
        every: save after epochs ``every``, ``2 * every``, ... counted from the start of
            training, so a resumed run keeps the schedule.
        monitor: with ``save_best_only``, the metric that decides what "best" is
            (default ``val_loss``).
        save_best_only: save only when the monitored metric is better than at every
            earlier save of this run.
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see the module docstring).
        extra: stored in the file as :func:`gpunn.saving.model_file.save`'s ``extra``.

    Each file is a complete resumable checkpoint: loading it and calling ``fit`` with
    the same options continues exactly as the uninterrupted run would have.
    """

    def __init__(self, path, every: int = 1, monitor: str | None = None, save_best_only: bool = False,
                 mode: str = "auto", extra=None):
        if every < 1:
            raise ValueError(f"every must be at least 1 epoch, got {every}")
        self.path, self.every, self.save_best_only, self.extra = path, int(every), save_best_only, extra
        self.monitor = monitor or "val_loss"
        self.minimize = _minimizes(self.monitor, mode)
        self.best = None

    def on_train_begin(self, logs=None):
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self.save_best_only:
            value = _monitored(logs or {}, self.monitor, "ModelCheckpoint")
            if not _improved(value, self.best, self.minimize, 0.0):
                return
            self.best = value
        self.network.save(self.path, extra=self.extra)


class EarlyStopping(Callback):
    """Stop training when the monitored metric has stopped improving.

    Args:
        monitor: the metric to watch, e.g. ``val_loss`` (default) or ``val_accuracy``.
        patience: stop after this many epochs in a row without improvement (at least 1).
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see the module docstring).
        restore_best_weights: at the end of training put back the parameters of the best
            epoch.  Only the parameters: the momentum buffer, ``epochs_done`` and the
            history stay those of the last epoch trained.
        min_delta: an improvement must be larger than this to count.

    After training, ``best``, ``best_epoch`` (0-based) and ``stopped_epoch`` (0-based,
    ``None`` when training ran to the end) say what happened.  A NaN value never counts
    as an improvement.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str = "auto",
                 restore_best_weights: bool = True, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be at least 1 epoch, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be non-negative, got {min_delta}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.minimize = _minimizes(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.best = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self._best_params = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs or {}, self.monitor, "EarlyStopping")
        if _improved(value, self.best, self.minimize, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                with self.network.backend.device():
                    self._best_params = self.network.params.copy()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.network.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_params is not None and self.best_epoch != self.network.epochs_done - 1:
            with self.network.backend.device():
                self.network.params[...] = self._best_params
        self._best_params = None


def _improved(value: float, best: float | None, minimize: bool, min_delta: float) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if minimize else value > best + min_delta
