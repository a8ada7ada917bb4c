"""ModelCheckpoint and EarlyStopping: their rules on scripted metrics, and inside a real fit."""

import numpy as np
import pytest

import gpunn
from gpunn import Callback, Network
from gpunn.compute.backend import get_backend
from gpunn.training.callbacks import EarlyStopping, ModelCheckpoint


@pytest.fixture(scope="module")
def digits():
    return gpunn.load_dataset("digits")


class ScriptedNetwork:
    """Stands in for a Network: params become the epoch number, saves are recorded."""

    def __init__(self):
        self.backend = get_backend("numpy")
        self.params = np.zeros(3)
        self.epochs_done = 0
        self.stop_training = False
        self.saved_at = []

    def save(self, path, extra=None):
        self.saved_at.append(self.epochs_done - 1)


def run(callback, values, monitor="val_loss"):
    """Drive ``callback`` through one epoch per value, as fit would; returns the fake network."""
    net = ScriptedNetwork()
    callback.network = net
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        net.params[...] = epoch
        net.epochs_done = epoch + 1
        callback.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        if net.stop_training:
            break
    callback.on_train_end()
    return net


def test_early_stopping_waits_patience_epochs_and_restores_the_best():
    stopper = EarlyStopping(patience=2)
    net = run(stopper, [0.5, 0.4, 0.45, 0.41, 0.3])
    assert net.stop_training and stopper.stopped_epoch == 3 and net.epochs_done == 4
    assert stopper.best == 0.4 and stopper.best_epoch == 1
    assert np.all(net.params == 1)


def test_early_stopping_min_delta_and_max_mode():
    stopper = EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.05)
    net = run(stopper, [0.80, 0.83, 0.84, 0.99], monitor="val_accuracy")
    assert stopper.best_epoch == 0 and stopper.stopped_epoch == 2 and np.all(net.params == 0)


def test_early_stopping_can_leave_the_last_weights():
    net = run(EarlyStopping(patience=1, restore_best_weights=False), [0.5, 0.6])
    assert net.stop_training and np.all(net.params == 1)


def test_early_stopping_never_counts_nan_as_better():
    stopper = EarlyStopping(patience=2)
    net = run(stopper, [float("nan"), 0.5, float("nan"), float("nan")])
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 3 and np.all(net.params == 1)


@pytest.mark.parametrize("options", [{"patience": 0}, {"mode": "up"}, {"min_delta": -1}])
def test_early_stopping_rejects_bad_options(options):
    with pytest.raises(ValueError):
        EarlyStopping(**options)


def test_a_missing_metric_says_what_to_do():
    with pytest.raises(ValueError, match="validation_data"):
        run(EarlyStopping(monitor="val_loss"), [0.5], monitor="loss")


def test_checkpoint_best_only_saves_on_improvement():
    net = run(ModelCheckpoint("unused.npz", save_best_only=True), [0.5, 0.6, 0.4, 0.4, 0.3])
    assert net.saved_at == [0, 2, 4]
    net = run(ModelCheckpoint("unused.npz", every=2, monitor="val_accuracy", save_best_only=True),
              [0.1, 0.5, 0.9, 0.4, 0.2, 0.95], monitor="val_accuracy")
    assert net.saved_at == [1, 5]


class Snapshots(Callback):
    """Records the params and the checkpoint file's epoch count after every epoch."""

    def __init__(self, path=None):
        self.path, self.params, self.file_epochs = path, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.params.append(np.array(self.network.params))
        if self.path is not None:
            self.file_epochs.append(gpunn.load(self.path).epochs_done if self.path.exists() else None)


def fit(net, data, epochs, callbacks):
    return net.fit(data.X_train, data.y_train, epochs=epochs, batch_size=50, lr=2.0, momentum=0.5,
                   validation_data=(data.X_test, data.y_test), callbacks=callbacks)


def test_checkpoint_every_n_epochs_resumes_exactly(digits, tmp_path):
    path = tmp_path / "ckpt.npz"
    net = Network([64, 8, 10], backend="numpy", seed=2)
    snapshots = Snapshots(path)
    fit(net, digits, 5, [ModelCheckpoint(path, every=2, extra={"dataset": "digits"}), snapshots])
    assert snapshots.file_epochs == [None, 2, 2, 4, 4]
    resumed = gpunn.load(path, backend="numpy")
    fit(resumed, digits, 1, [])  # the checkpoint holds 4 epochs: one more makes 5
    assert np.array_equal(resumed.params, net.params)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_early_stopping_inside_fit(digits):
    # the training loss falls every epoch, so asking for a rising one stops after `patience` epochs
    net = Network([64, 8, 10], backend="numpy", seed=2)
    snapshots = Snapshots()
    stopper = EarlyStopping(monitor="loss", mode="max", patience=2)
    history = fit(net, digits, 10, [stopper, snapshots])
    assert net.epochs_done == 3 and len(history.epoch) == 3 and stopper.stopped_epoch == 2
    assert np.array_equal(net.params, snapshots.params[0])
    assert not np.array_equal(net.params, snapshots.params[-1])
