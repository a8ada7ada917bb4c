"""Model files: complete round trips, exact resumption, atomic saves, and refusal of anything unsound."""

import io
import json
import os
import pathlib
import pickle

import numpy as np
import pytest

import gpunn
from gpunn import ModelFileError, Network
from gpunn.network import load_with_metadata
from gpunn.saving.metadata import FORMAT_VERSION
from gpunn.saving.model_file import save


@pytest.fixture(scope="module")
def digits():
    return gpunn.load_dataset("digits")


def train(data, epochs, net=None, momentum=0.0, **network_options):
    net = net or Network([64, 8, 10], backend="numpy", seed=1, **network_options)
    net.fit(data.X_train, data.y_train, epochs=epochs, batch_size=50, lr=2.0, momentum=momentum,
            weight_decay=1e-4 if momentum else 0.0, validation_data=(data.X_test, data.y_test))
    return net


@pytest.fixture(scope="module")
def good_file(digits, tmp_path_factory):
    """A sound model file (trained with momentum, so it has a velocity array)."""
    path = tmp_path_factory.mktemp("good") / "model.npz"
    train(digits, 2, momentum=0.5).save(path)
    return path


class Marker:
    """Pickles into a payload whose unpickling creates ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


@pytest.mark.filterwarnings("ignore::gpunn.training.loop.TrainingWarning")  # N(0, 1) weights, lr 2, momentum 0.9: stuck
def test_round_trip_restores_everything(digits, tmp_path):
    net = train(digits, 3, momentum=0.9, loss="cross_entropy", init="normal", dtype="float64")
    path = tmp_path / "model.npz"
    save(net, path, extra={"dataset": "digits", "data_dir": None})

    loaded, metadata = load_with_metadata(path, backend="numpy")
    assert np.array_equal(loaded.params, net.params) and loaded.params.dtype == np.float64
    assert (loaded.sizes, loaded.loss, loaded.init, loaded.seed) == ((64, 8, 10), "cross_entropy", "normal", 1)
    assert loaded.epochs_done == 3
    assert loaded.history.epoch == [0, 1, 2]
    assert loaded.history.history == net.history.history
    assert loaded.history.params == net.history.params
    opt = loaded.optimizer
    assert (opt.lr, opt.momentum, opt.weight_decay) == (2.0, 0.9, 1e-4)
    assert np.array_equal(opt.velocity, net.optimizer.velocity)
    assert metadata["extra"] == {"dataset": "digits", "data_dir": None}
    assert metadata["format"] == "gpunn-model" and metadata["format_version"] == FORMAT_VERSION
    assert metadata["training"] == {"lr": 2.0, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 50,
                                    "optimizer": "sgd", "nesterov": False, "lr_scaling": "none"}
    assert np.array_equal(loaded.predict_proba(digits.X_test), net.predict_proba(digits.X_test))  # exact: same weights, same path
    assert gpunn.load(path, backend="numpy").epochs_done == 3


def test_untrained_network_round_trip(tmp_path):
    net = Network([2, 3, 2], backend="numpy", seed=5)
    net.save(tmp_path / "fresh.npz")
    loaded = gpunn.load(tmp_path / "fresh.npz", backend="numpy")
    assert np.array_equal(loaded.params, net.params)
    assert loaded.history is None and loaded.optimizer is None and loaded.epochs_done == 0


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["plain-sgd", "momentum"])
def test_resume_is_bit_identical(digits, tmp_path, momentum):
    straight = train(digits, 6, momentum=momentum)
    path = tmp_path / "half.npz"
    train(digits, 3, momentum=momentum).save(path)
    resumed = train(digits, 3, net=gpunn.load(path, backend="numpy"), momentum=momentum)
    assert np.array_equal(resumed.params, straight.params)
    assert resumed.history.history["val_loss"] == straight.history.history["val_loss"]
    assert resumed.history.epoch == list(range(6))


def test_extra_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="extra may hold only"):
        save(Network([2, 2], backend="numpy"), tmp_path / "m.npz", extra={"when": object()})
    assert list(tmp_path.iterdir()) == []
    save(Network([2, 2], backend="numpy"), tmp_path / "m.npz", extra={"n": np.int64(3), "x": np.float32(0.5)})
    assert load_with_metadata(tmp_path / "m.npz")[1]["extra"] == {"n": 3, "x": 0.5}


def test_saving_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="there is no folder"):
        save(Network([2, 2], backend="numpy"), tmp_path / "nowhere" / "m.npz")


@pytest.mark.parametrize("broken", ["replace", "fsync"])
def test_interrupted_save_keeps_the_previous_file(digits, tmp_path, monkeypatch, broken):
    path = tmp_path / "model.npz"
    first = train(digits, 1)
    first.save(path)
    second = train(digits, 2)

    def fail(*args):
        raise OSError(f"simulated failure in os.{broken}")

    monkeypatch.setattr(os, broken, fail)
    with pytest.raises(OSError, match="simulated"):
        second.save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    assert np.array_equal(gpunn.load(path, backend="numpy").params, first.params)


# -- files that must be refused ------------------------------------------------------------------
def rewrite(good, path, fields=None, **arrays):
    """Copy ``good`` to ``path`` with metadata fields and arrays replaced (None removes an array)."""
    with np.load(good, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents["metadata"].tobytes())
    meta.update(fields or {})
    contents["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    contents.update(arrays)
    np.savez(path, **{name: value for name, value in contents.items() if value is not None})


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def params_of(good):
    with np.load(good, allow_pickle=False) as archive:
        return archive["params"]


BAD_FILES = {
    "truncated": (lambda good, p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "truncated"),
    "tail cut": (lambda good, p: p.write_bytes(good.read_bytes()[:-8]), "truncated"),
    "empty": (lambda good, p: p.write_bytes(b""), "empty"),
    "random bytes": (lambda good, p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not an .npz"),
    "zip-like garbage": (lambda good, p: p.write_bytes(b"PK\x03\x04" + bytes(500)), "truncated or corrupt"),
    "npy array": (lambda good, p: p.write_bytes(npy_bytes(np.zeros(3))), ".npy array"),
    "foreign npz": (lambda good, p: np.savez(p, weights=np.zeros(3)), "not a gpunn model"),
    "other format": (lambda good, p: rewrite(good, p, {"format": "keras-model"}), "'keras-model'"),
    "newer version": (lambda good, p: rewrite(good, p, {"format_version": FORMAT_VERSION + 1}), "newer gpunn"),
    "bad version": (lambda good, p: rewrite(good, p, {"format_version": "one"}), "format version"),
    "metadata not json": (lambda good, p: rewrite(good, p, None, metadata=np.frombuffer(b"\xff{", np.uint8)),
                          "corrupt metadata"),
    "bad sizes": (lambda good, p: rewrite(good, p, {"sizes": [64, 0, 10]}), "sizes"),
    "unknown loss": (lambda good, p: rewrite(good, p, {"loss": "hinge"}), "loss"),
    "bad optimizer": (lambda good, p: rewrite(good, p, {"optimizer": {"lr": -1, "momentum": 0.5,
                                                                      "weight_decay": 0}}), "optimizer"),
    "params too short": (lambda good, p: rewrite(good, p, params=params_of(good)[:-1]), "need 610 values"),
    "params far too long": (lambda good, p: rewrite(good, p, params=np.tile(params_of(good), 10)), "bytes"),
    "params 2-D": (lambda good, p: rewrite(good, p, params=params_of(good).reshape(61, 10)), "shape (61, 10)"),
    "params dtype": (lambda good, p: rewrite(good, p, params=params_of(good).astype(np.float64)),
                     "float64 but the metadata says float32"),
    "no params": (lambda good, p: rewrite(good, p, params=None), "no params"),
    "velocity length": (lambda good, p: rewrite(good, p, velocity=np.zeros(5, np.float32)), "velocity"),
    "velocity missing": (lambda good, p: rewrite(good, p, velocity=None), "but the file has no optimizer arrays"),
    "history lengths": (lambda good, p: rewrite(good, p, {"history": {"epoch": [0], "history": {"loss": []}}}),
                        "history"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_in_one_line(good_file, tmp_path, case):
    make, expected = BAD_FILES[case]
    path = tmp_path / "bad.npz"
    make(good_file, path)
    with pytest.raises(ModelFileError) as caught:
        gpunn.load(path, backend="numpy")
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and str(path) in message


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        gpunn.load(tmp_path / "nothing.npz")


def test_the_marker_payload_works(tmp_path):
    """The pickles below really would run code if unpickled (so the next tests mean something)."""
    pickle.loads(pickle.dumps(Marker(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps({"params": Marker(marker)}))
    with pytest.raises(ModelFileError, match="pickle"):
        gpunn.load(path, backend="numpy")
    assert not marker.exists()


@pytest.mark.parametrize("member", ["metadata", "params"])
def test_pickled_arrays_inside_an_npz_are_never_unpickled(good_file, tmp_path, member):
    marker = tmp_path / "marker"
    path = tmp_path / "model.npz"
    rewrite(good_file, path, **{member: np.array([Marker(marker)], dtype=object)})
    with pytest.raises(ModelFileError):
        gpunn.load(path, backend="numpy")
    assert not marker.exists()
