"""One browser tab's playground: its data, its network, and the thread that trains it.

A :class:`Session` owns everything of one tab and shares nothing with the others.  Its
training thread calls :meth:`gpunn.Network.fit`: one epoch for a step, up to
:data:`EPOCHS_PER_CALL` while playing, ended after any epoch by a callback when the page
pauses or asks for something (epochs count on, and ``fit(epochs=k)`` gives bit for bit the
weights of k one-epoch fits).  So play, pause, step, the arithmetic and the downloads take
effect between epochs; a changed setting or a closed tab stops the epoch in progress at once
(through the ``progress`` hook of ``fit``), since its network is thrown away.

Frames (epoch, losses, weights, every drawn neuron's picture) are made by the training
thread itself, at most :data:`FRAME_RATE` a second, and put in a one-frame slot: the
sender takes the newest, and a frame the page was too slow for is replaced, never
waited for.  Training never waits for the page.

Everything that reads or changes the network (training, pictures, explain, save, a
weight edited by hand) holds the session's lock, so each sees the network between two
epochs.  Errors the page caused are :class:`gpunn.errors.GpunnError` with one line.

The data a session trains on is :mod:`gpunn.playground.data`'s, the frames' format
:mod:`gpunn.playground.frames`', the reproduction it shows :mod:`gpunn.playground.takeaway`'s.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from gpunn.errors import GpunnError
from gpunn.explain.step import explain_step, network_input, one_hot_target
from gpunn.memory import check_training_fits, require
from gpunn.network import Network
from gpunn.nn.parameters import DEFAULT_INIT
from gpunn.nn.preprocessing import Scaler
from gpunn.playground.data import MAX_UPLOAD, Data, build_data
from gpunn.playground.frames import encode_frame, finite, finite_list
from gpunn.playground.pictures import drawn, layer_values
from gpunn.playground.settings import Settings, parse
from gpunn.playground.takeaway import command_line
from gpunn.training.callbacks import Callback

log = logging.getLogger("gpunn.playground")

#: Most frames a second a session makes while it trains.
FRAME_RATE = 30
#: Most epochs one ``fit`` call trains while playing (its History is dropped after each call).
EPOCHS_PER_CALL = 1000
#: Test points the page draws at most (all training points up to the same number).
MAX_POINTS_DRAWN = 2000
#: The embedded digits' pixels run 0..16; the loader divides by 16.
DIGIT_LEVELS = 16


class Stopped(Exception):
    """Raised inside ``fit``'s progress hook to end an epoch early (the session is closing or changing)."""


class Session:
    """One tab's playground (see the module docstring).  ``notify`` is called (from the training
    thread) whenever a new frame is ready; :meth:`take_frame` hands out the newest."""

    def __init__(self, sid: str, notify=lambda: None):
        self.id = sid
        self.notify = notify
        self.lock = threading.RLock()
        self.wake = threading.Condition()
        self.settings: Settings | None = None
        self.data: Data | None = None
        self.net: Network | None = None
        self.upload: tuple[str, bytes] | None = None
        self.playing = False
        self.steps_wanted = 0
        self.closed = False
        self.generation = 0  #: counts rebuilds; a fit of an older generation stops early
        self.last_used = time.monotonic()
        self.message = ""  #: the newest diagnosis of the run, for the page
        self.edited = False  #: a weight was set by hand (the command line cannot reproduce that)
        self._frame: bytes | None = None
        self._frame_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._last_frame = 0.0
        self._samples = None
        self._plane_samples = None
        self._interrupts = 0  #: callers waiting for the lock: training pauses after the epoch in progress
        self._discarding = 0  #: rebuilds waiting for the lock: the epoch in progress stops at once
        self.epochs_per_second = 0.0
        self._rate_mark = (None, 0)  #: (time, epochs done) where the current rate measurement started
        self._thread = threading.Thread(target=self._run, name=f"playground-{sid[:8]}", daemon=True)
        self._thread.start()

    # -- settings and data ----------------------------------------------------------
    def configure(self, raw: dict) -> None:
        """Apply the page's settings: new data and a new network at epoch 0."""
        settings = parse(raw)
        data = build_data(settings, self.upload)
        net = self._network(settings, data)
        with self._interrupting(discard=True):
            self.settings, self.data = settings, data
            self._install(net)

    def set_upload(self, name: str, content: bytes) -> None:
        """Keep the tab's CSV (read, and refused when bad, by the next :meth:`configure`)."""
        if len(content) > MAX_UPLOAD:
            raise GpunnError(f"{name}: {len(content):,} bytes; the playground takes CSV files up to "
                             f"{MAX_UPLOAD // (1024 * 1024)} MB")
        self.upload = (name, content)

    def reset(self) -> None:
        """The same settings, a fresh network (same seed, so the same start), epoch 0."""
        with self._interrupting(discard=True):
            if self.settings is None:
                raise GpunnError("nothing to reset yet: the page has sent no settings")
            self._install(self._network(self.settings, self.data))

    @contextlib.contextmanager
    def _interrupting(self, discard: bool = False):
        """Hold the lock: training pauses after its epoch in progress, or with ``discard`` (the network
        is about to be replaced) stops within it."""
        with self._counter_lock:
            self._interrupts += 1
            self._discarding += discard
        try:
            with self.lock:
                yield
        finally:
            with self._counter_lock:
                self._interrupts -= 1
                self._discarding -= discard

    def _network(self, s: Settings, data: Data) -> Network:
        if data.problem == "regression":
            sizes, output = [data.X_train.shape[1], *s.hidden, 1], {"output_activation": "identity"}
        else:
            sizes = [data.X_train.shape[1], *s.hidden, len(data.classes)]
            output = {"output_activation": "softmax", "loss": "cross_entropy", "classes": data.class_values}
        activation = "identity" if s.activation == "linear" else s.activation
        init = DEFAULT_INIT.get(activation, "xavier") if s.init == "default" else s.init
        net = Network(sizes, activation=activation, init=init, backend="numpy", dtype="float32", seed=s.seed,
                      scale=data.scale, **output)
        buffers = 2 if s.optimizer == "adam" else (1 if s.momentum else 0)
        check_training_fits(net.sizes, net.dtype, len(data.X_train), len(data.X_test), s.batch, buffers)
        if data.plane is not None:  # every layer's values at every grid point, and their deltas
            require(2 * sum(n + 1 for n in net.sizes) * len(data.plane.points) * net.dtype.itemsize,
                    "the pictures of every neuron", "use fewer neurons")
        if net.scaler is None:
            net.scaler = Scaler.fit(data.X_train, data.scale)  # as gpunn train fits it, before training
        if data.problem == "regression":  # fit(epochs=0) fits the targets' standardisation, trains nothing
            net.fit(data.X_train, data.y_train, epochs=0, batch_size=s.batch)
            net.history = None
        return net

    def _install(self, net: Network) -> None:
        """Make ``net`` the session's network at epoch 0 (the lock is held)."""
        self.net = net
        self.generation += 1
        self.message = ""
        self.edited = False
        self.epochs_per_second, self._rate_mark = 0.0, (None, 0)
        self._samples = (net.device_samples(self.data.X_train, self.data.y_train),
                         net.device_samples(self.data.X_test, self.data.y_test))
        self._plane_samples = (None if self.data.plane is None
                               else net.device_samples(self.data.plane.inputs)[0])
        self.publish(force=True)

    def _require_network(self) -> None:
        if self.net is None:
            raise GpunnError("this tab has no network yet: the page has sent no settings")

    # -- controls ---------------------------------------------------------------------
    def play(self, on: bool) -> None:
        self.playing = bool(on)
        self._poke()

    def step(self) -> None:
        """Train exactly one more epoch (and pause)."""
        self.playing = False
        self.steps_wanted += 1
        self._poke()

    def close(self) -> None:
        """Stop training (within an epoch: see :class:`Stopped`) and end the thread."""
        self.closed = True
        self._poke()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _poke(self) -> None:
        with self.wake:
            self.wake.notify_all()

    # -- the training thread ----------------------------------------------------------
    def _run(self) -> None:
        while not self.closed:
            with self.wake:
                if not (self.playing or self.steps_wanted) or self.net is None:
                    self.wake.wait(0.5)
                    continue
            try:
                self._train_epoch()
            except Stopped:
                continue
            except GpunnError as exc:  # a diverged run: say so, stop playing
                self._stop_with(str(exc))
            except Exception as exc:  # a bug of ours: one line in the log and the page, the thread lives on
                log.error("playground: %s while training: %s", type(exc).__name__, exc)
                self._stop_with(f"training stopped: {type(exc).__name__}: {exc}")

    def _stop_with(self, message: str) -> None:
        self.playing, self.steps_wanted = False, 0
        self.message = message
        with self.lock:
            if self.net is not None and not self.closed:
                self.publish(force=True)

    def _train_epoch(self) -> None:
        """One ``fit`` call: one epoch for a step, or up to :data:`EPOCHS_PER_CALL` while playing.

        A callback after every epoch makes the frames (at most :data:`FRAME_RATE` a second) and ends
        the call when the page pauses or anything else wants the network (:meth:`_interrupting`);
        the ``progress`` hook ends it within the epoch when the network is being replaced or the
        tab closed (that epoch's half-done work is thrown away with the network).
        """
        with self.lock:
            if self.net is None or self.closed:
                return
            s, data, net, generation = self.settings, self.data, self.net, self.generation
            stepping = not self.playing

            def progress(step, steps):
                if self.closed or self._discarding or self.generation != generation:
                    raise Stopped

            session = self

            class Frames(Callback):
                def on_epoch_end(self, epoch, logs=None):
                    session._count_epoch(logs)
                    if stepping or not session.playing or session._interrupts or session.closed:
                        self.network.stop_training = True
                    elif session.publish():
                        time.sleep(0)  # give up the GIL for a moment: the server's loop sends the frame

            history = net.fit(data.X_train, data.y_train, epochs=1 if stepping else EPOCHS_PER_CALL,
                              batch_size=s.batch, optimizer=s.optimizer, lr=s.lr, momentum=s.momentum,
                              weight_decay=s.weight_decay, lr_scaling="none" if s.optimizer == "sgd" else None,
                              progress=progress, callbacks=[Frames()])
            if history.warnings:
                self.message = history.warnings[-1]
            net.history = None  # per-epoch records would grow without bound; the page keeps its curve
            if stepping and self.steps_wanted:
                self.steps_wanted -= 1
            self.publish(force=stepping or not self.playing)

    def _count_epoch(self, logs) -> None:
        """Epochs per second over the last half second or more of playing (frames and all), for the page."""
        now, done = time.monotonic(), self.net.epochs_done
        since, then = self._rate_mark
        if since is None or now - since > 2.0:  # the first epoch after a pause starts a new measurement
            self._rate_mark = (now, done)
        elif now - since >= 0.5:
            self.epochs_per_second = (done - then) / (now - since)
            self._rate_mark = (now, done)

    # -- frames -------------------------------------------------------------------------
    def publish(self, force: bool = False) -> bool:
        """Make a frame now when forced or when 1/FRAME_RATE s has passed since the last (lock held);
        whether one was made."""
        now = time.monotonic()
        if not force and now - self._last_frame < 1.0 / FRAME_RATE:
            return False
        self._last_frame = now
        frame = self.frame()
        with self._frame_lock:
            self._frame = frame
        try:
            self.notify()
        except RuntimeError:  # the tab's event loop has ended: the session is closing
            pass
        return True

    def republish(self) -> None:
        """Make a frame of the network as it is now (e.g. after the page has learnt its shape)."""
        with self._interrupting():
            if self.net is not None:
                self.publish(force=True)

    def take_frame(self) -> bytes | None:
        """The newest frame not yet taken (None when there is none)."""
        with self._frame_lock:
            frame, self._frame = self._frame, None
        return frame

    def losses(self) -> dict:
        """Loss and accuracy on the training and the test set; for regression the loss is the mean squared
        error in the targets' own units (with the mean absolute error and R^2), as ``evaluate`` gives them."""
        with self.lock, np.errstate(all="ignore"):
            if self.data.problem == "regression":
                data = self.data
                train, test = self.net.evaluate(data.X_train, data.y_train), self.net.evaluate(data.X_test, data.y_test)
                return {"train": {**train, "loss": train["mse"]}, "test": {**test, "loss": test["mse"]}}
            train = self.net.evaluate_device(*self._samples[0])
            test = self.net.evaluate_device(*self._samples[1])
        return {"train": train, "test": test}

    def frame(self) -> bytes:
        """One frame: a JSON header and the pictures as float32, see :func:`encode_frame`."""
        net, data = self.net, self.data
        losses = self.losses()
        epoch = net.epochs_done
        shown = [drawn(width) for width in net.sizes]
        weights = net.get_weights()
        header = {
            "type": "frame", "epoch": epoch, "sizes": list(net.sizes), "drawn": shown,
            "loss_train": finite(losses["train"]["loss"]), "loss_test": finite(losses["test"]["loss"]),
            "train": {k: finite(v) for k, v in losses["train"].items()},
            "test": {k: finite(v) for k, v in losses["test"].items()},
            "curve_point": [epoch, finite(losses["train"]["loss"]), finite(losses["test"]["loss"])],
            "playing": self.playing, "message": self.message,
            "epochs_per_second": round(self.epochs_per_second, 1),
            "weights": [finite_list(weights[2 * k][: shown[k], : shown[k + 1]]) for k in range(len(net.sizes) - 1)],
            "biases": [finite_list(weights[2 * k + 1][: shown[k + 1]]) for k in range(len(net.sizes) - 1)],
            "activation": net.activation, "output": net.output_activation, "edited": self.edited,
        }
        pictures = []
        if data.plane is not None:
            n = len(data.plane.points)
            with np.errstate(all="ignore"):
                values = layer_values(net, self._plane_samples, n)
                if data.problem == "regression":  # the output in the targets' units, as predict gives it
                    predicted = net.target_scaling.undo(values[-1].T.astype(np.float64))  # (points,) or (points, 1)
                    values[-1] = np.asarray(predicted, dtype=np.float32).reshape(values[-1].shape[::-1]).T
            header["grid"] = data.plane.grid
            for layer, v in enumerate(values):
                pictures.append(v[: shown[layer]])
            header["maps"] = [int(p.shape[0]) for p in pictures]
        elif data.kind == "digits":  # no plane: layer 1 shows each neuron's 64 incoming weights as 8x8 pixels
            pictures.append(weights[0][:, : shown[1]].T)
            header["weight_grid"], header["weight_maps"] = 8, shown[1]
        return encode_frame(header, pictures)

    def describe(self) -> dict:
        """The session's data and network, for the page to draw (sent after each rebuild)."""
        self._require_network()
        with self._interrupting():
            data, net, s = self.data, self.net, self.settings

            def points(p, y, limit):
                if p is None:
                    return None
                k = min(len(y), limit)
                return {"xy": np.round(p[:k], 4).tolist(), "label": _plain(y[:k], net, data)}

            return {
                "type": "data", "dataset": data.name, "kind": data.kind, "problem": data.problem,
                "classes": data.classes, "columns": data.columns, "sizes": list(net.sizes),
                "drawn": [drawn(w) for w in net.sizes],
                "extent": None if data.plane is None else [*data.plane.x_range, *data.plane.y_range],
                "surface": list(s.surface) if data.kind == "user" else [0, 1],
                "train": points(data.points_train, data.y_train, MAX_POINTS_DRAWN),
                "test": points(data.points_test, data.y_test, MAX_POINTS_DRAWN),
                "n_train": len(data.y_train), "n_test": len(data.y_test),
                "command": command_line(s, net, data.scale, data.problem),
            }

    # -- by hand: a weight, the arithmetic, a drawn digit --------------------------------
    def set_weight(self, layer: int, source: int, target: int, value) -> None:
        """Set weight ``layer`` (1: into the first hidden layer) from neuron ``source`` to ``target``;
        ``source`` equal to the layer below's width means the bias."""
        self._require_network()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise GpunnError(f"a weight must be a finite number, got {value!r:.40}")
        with self._interrupting():
            sizes = self.net.sizes
            if not (isinstance(layer, int) and 1 <= layer < len(sizes)):
                raise GpunnError(f"layer {layer!r:.20} does not exist: weights go into layers 1 to {len(sizes) - 1}")
            if not (isinstance(source, int) and 0 <= source <= sizes[layer - 1]
                    and isinstance(target, int) and 0 <= target < sizes[layer]):
                raise GpunnError(f"no weight from neuron {source!r:.20} to {target!r:.20} into layer {layer}")
            weights = self.net.get_weights()
            if source == sizes[layer - 1]:
                weights[2 * layer - 1][target] = value
            else:
                weights[2 * layer - 2][source, target] = value
            self.net.set_weights(weights)
            self.edited = True
            self.publish(force=True)

    def explain(self, layer, neuron, split: str = "test", sample: int = 0) -> dict:
        """One SGD step on one sample, as ``gpunn explain`` computes it, and neuron (layer, neuron)'s part."""
        self._require_network()
        if split not in ("train", "test"):
            raise GpunnError(f"split must be train or test, got {split!r:.20}")
        with self._interrupting():
            net, data, s = self.net, self.data, self.settings
            sizes = net.sizes
            if not (isinstance(layer, int) and 0 <= layer < len(sizes)):
                raise GpunnError(f"layer {layer!r:.20} does not exist: layers 0 (inputs) to {len(sizes) - 1}")
            if not (isinstance(neuron, int) and 0 <= neuron < sizes[layer]):
                raise GpunnError(f"layer {layer} has neurons 0 to {sizes[layer] - 1}, not {neuron!r:.20}")
            X, y = (data.X_test, data.y_test) if split == "test" else (data.X_train, data.y_train)
            if not (isinstance(sample, int) and 0 <= sample < len(y)):
                raise GpunnError(f"sample {sample!r:.20} is not in the {split} set (0 to {len(y) - 1})")
            x = network_input(net, X[sample])
            if data.problem == "regression":  # the target as the network learns it: standardised
                t = net.target_scaling.apply(np.array([[float(y[sample])]]))[0]
            else:
                t = one_hot_target(int(net.label_indices(y[sample:sample + 1], 1)[0]), sizes[-1])
            step = explain_step(net, x, t, lr=s.lr)
        record = step.to_json()
        record.update(type="explain", layer=layer, neuron=neuron, split=split, sample=sample,
                      target_note="standardised, as the network learns it" if data.problem == "regression" else None,
                      point=None if data.points_test is None else
                      (data.points_test if split == "test" else data.points_train)[sample].tolist(),
                      command=(f"gpunn explain --model playground-model.npz --dataset playground-data.npz "
                               f"--sample {sample} --lr {s.lr:g}" if split == "test" else None),
                      optimizer_note=None if (s.optimizer == "sgd" and not s.momentum and not s.weight_decay)
                      else "the step shown is plain SGD with the same learning rate, as gpunn explain computes "
                           "it; training itself uses your optimizer settings")
        return record

    def predict_digit(self, pixels) -> dict:
        """Class probabilities for a drawn 8x8 digit, ``pixels`` 64 values 0..16 as the embedded digits."""
        self._require_network()
        with self._interrupting():
            if self.data.kind != "digits":
                raise GpunnError("drawing a digit needs the digits data set; choose it first")
            try:
                values = np.asarray(pixels, dtype=np.float64) if isinstance(pixels, list) else None
            except (TypeError, ValueError):
                values = None
            if values is None or values.shape != (64,) or not np.isfinite(values).all() \
                    or values.min() < 0 or values.max() > DIGIT_LEVELS:
                raise GpunnError("a drawn digit is 64 numbers from 0 to 16 (8x8 pixels, as the embedded digits)")
            probabilities = self.net.predict_proba(values[None, :] / DIGIT_LEVELS)[0].astype(np.float64)
        return {"type": "digit", "probabilities": probabilities.tolist(), "classes": self.data.classes}

    # -- take it with you ---------------------------------------------------------------
    def model_bytes(self, kind: str) -> bytes:
        """The network as a gpunn model file (``npz``) or an ONNX model (``onnx``)."""
        self._require_network()
        with self._interrupting(), tempfile.TemporaryDirectory(prefix="gpunn-playground-") as folder:
            path = Path(folder) / f"model.{kind}"
            if kind == "npz":
                self.net.save(path, extra={"playground": asdict(self.settings)})
            else:
                self.net.to_onnx(path)
            return path.read_bytes()

    def data_bytes(self) -> bytes:
        """The data set as an .npz with its own test set (``gpunn train --dataset`` reads it)."""
        self._require_network()
        with self._interrupting():
            data = self.data
            buffer = io.BytesIO()
            np.savez(buffer, X=data.X_train, y=data.y_train, X_test=data.X_test, y_test=data.y_test)
        return buffer.getvalue()

def _plain(y: np.ndarray, net: Network, data: Data) -> list:
    """Labels for the page: class indices (classification) or values (regression)."""
    if data.problem == "regression":
        return np.round(np.asarray(y, dtype=np.float64), 4).tolist()
    return net.label_indices(y, len(y)).tolist()


