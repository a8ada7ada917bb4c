"""Hostile input, one regression test per failure class that fuzzing found (each failed before its fix).

The promise under test: bad options, bad data and bad model files end with one
``Error:`` line (status 1) or a usage error (status 2), no traceback, no raw
warning, no hang, and nothing lost.  Every command runs with warnings turned into
errors, so a stray RuntimeWarning fails the test instead of scrolling past.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

import gpunn
from gpunn import DataError, ModelFileError, Network
from gpunn.cli.main import cli
from gpunn.errors import InsufficientMemory
from hostile_files import (metadata_of, npy_bytes, npy_with_header, patch_zip, read_members, write_model,
                           zip_members)

TINY = ["--layers", "64,8,10", "--batch-size", "50", "--backend", "numpy", "--quiet"]


def run(*args):
    """The command, in process, with every warning raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_error(result, *fragments, status=1):
    """Exit ``status``, exactly one ``Error:`` line, no traceback, no escaped exception."""
    assert result.exit_code == status, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output and "Warning" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small digits model trained 2 epochs with momentum (so it has a velocity array), and its arrays."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    result = run("train", "--epochs", 2, "--momentum", "0.5", *TINY, "--output", path)
    assert result.exit_code == 0, result.output
    return path, read_members(path)


def edited(model, tmp_path, name="edited.npz", **changes):
    """A copy of the model with metadata fields changed (dotted paths; None deletes)."""
    members = dict(model[1])
    metadata = metadata_of(members)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = metadata
        for key in parents:
            target = target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    path = tmp_path / name
    write_model(path, members, metadata)
    return path


# -- tracebacks from reading archives ---------------------------------------------------------------------------
def user_npz(tmp_path, members: dict, method=zipfile.ZIP_STORED) -> str:
    path = tmp_path / "data.npz"
    path.write_bytes(zip_members(members, method))
    return str(path)


GOOD_MEMBERS = {"X.npy": npy_bytes(np.zeros((10, 64))), "y.npy": npy_bytes(np.zeros(10, np.int64))}


@pytest.mark.parametrize("method, fragment", [(99, "AES encryption"), (12, "bzip2"), (14, "lzma")])
def test_npz_compression_numpy_cannot_read_or_should_not(tmp_path, method, fragment):
    path = tmp_path / "data.npz"
    path.write_bytes(patch_zip(zip_members(GOOD_MEMBERS), "method", method))
    assert_clean_error(run("train", "--dataset", path, "--epochs", 1, "--backend", "numpy"), fragment)


def test_npz_encrypted_member(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(patch_zip(zip_members(GOOD_MEMBERS), "flags", 1))
    assert_clean_error(run("train", "--dataset", path, "--epochs", 1, "--backend", "numpy"), "encrypted")


BAD_HEADERS = {
    "unterminated string (tokenize.TokenError in NumPy)":
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), } '''",
    "a call, not a literal": "{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (3,), }",
    "nested shape": "{'descr': '<f8', 'fortran_order': False, 'shape': ((((1,),),),), }",
    "shape digits beyond int conversion": "{'descr': '<f8', 'fortran_order': False, 'shape': (1" + "0" * 5000 + ",), }",
}


@pytest.mark.parametrize("header", sorted(BAD_HEADERS))
def test_malformed_npy_header_in_user_data(tmp_path, header):
    members = dict(GOOD_MEMBERS, **{"X.npy": npy_with_header(BAD_HEADERS[header], bytes(96))})
    assert_clean_error(run("train", "--dataset", user_npz(tmp_path, members), "--epochs", 1, "--backend", "numpy"),
                       "malformed .npy header")


@pytest.mark.parametrize("header", sorted(BAD_HEADERS))
def test_malformed_npy_header_given_to_predict(model, tmp_path, header):
    path = tmp_path / "x.npy"
    path.write_bytes(npy_with_header(BAD_HEADERS[header], bytes(96)))
    assert_clean_error(run("predict", model[0], path), "malformed .npy header")


def test_malformed_npy_header_in_a_model_file(model, tmp_path):
    members = {f"{name}.npy": npy_bytes(array) for name, array in model[1].items()}
    members["params.npy"] = npy_with_header(BAD_HEADERS["unterminated string (tokenize.TokenError in NumPy)"])
    path = tmp_path / "model.npz"
    path.write_bytes(zip_members(members))
    assert_clean_error(run("evaluate", path), "malformed .npy header")


HUGE = "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 99999), }"


def test_huge_declared_shape_in_user_data_is_refused_before_allocating(tmp_path):
    members = dict(GOOD_MEMBERS, **{"X.npy": npy_with_header(HUGE, bytes(64))})
    assert_clean_error(run("train", "--dataset", user_npz(tmp_path, members), "--epochs", 1, "--backend", "numpy"),
                       "declares shape (99999999999, 99999)")


def test_huge_declared_shape_given_to_predict(model, tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(npy_with_header(HUGE, bytes(64)))
    assert_clean_error(run("predict", model[0], path), "declares shape")


def test_corrupt_member_data_is_one_line(model, tmp_path):
    data = bytearray(model[0].read_bytes())
    data[data.find(b"params.npy") + 200] ^= 0xFF  # inside the params data: the CRC no longer matches
    path = tmp_path / "model.npz"
    path.write_bytes(bytes(data))
    assert_clean_error(run("evaluate", path), "truncated or corrupt")


@pytest.mark.parametrize("names", [("metadata", "p\narams"), ("x\ry",)], ids=["unexpected", "no metadata"])
def test_a_member_name_with_a_line_break_is_named_on_one_line(model, tmp_path, names):
    """Found by the property test of corrupted archives: one byte of a member's name became a line break."""
    members = {f"{name}.npy": npy_bytes(model[1].get(name, np.zeros(1))) for name in names}
    path = tmp_path / "model.npz"
    path.write_bytes(zip_members(members))
    assert_clean_error(run("evaluate", path), repr(names[-1]))
    with pytest.raises(ModelFileError) as caught:
        gpunn.load(path, backend="numpy")
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)


def test_a_user_archive_member_name_with_a_line_break_is_named_on_one_line(tmp_path):
    members = {"X\n.npy": GOOD_MEMBERS["X.npy"], "y.npy": GOOD_MEMBERS["y.npy"]}
    assert_clean_error(run("train", "--dataset", user_npz(tmp_path, members), "--epochs", 1, "--backend", "numpy"),
                       repr("X\n"))


def test_a_corrupt_zip_named_npy_given_to_predict(model, tmp_path):
    """np.load opens anything that starts like a zip as an archive, whatever its name (BadZipFile escaped)."""
    path = tmp_path / "x.npy"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    assert_clean_error(run("predict", model[0], path), "not a .npy array")


# -- IDX: a header declaring more than the file holds, and the gzip bomb --------------------------------------------
def idx_bytes(array) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_idx_header_declaring_far_more_than_the_gzip_can_hold(tmp_path):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 0xFFFFFFFF, 28, 28)
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(DataError, match="truncated payload.*too small to hold"):
        gpunn.data.idx.read_idx(path)


def test_gzip_bomb_after_a_valid_idx_file_is_not_inflated(tmp_path):
    """A valid 50-image file followed by gzip members of zeros: refused after reading what the header declares."""
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 24)
    bomb = b"".join([squeeze.compress(zeros) for _ in range(16)] + [squeeze.flush()])  # 256 MiB of zeros
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)) + bomb)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="data follows the 39200-byte payload"):
            gpunn.data.idx.read_images(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"inflated {peak:,} bytes"


# -- values that pass a shape check but not a type check ---------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("training__lr", []),
    ("training__batch_size", [6.6e16, True]),
    ("training__momentum", {}),
    ("training__weight_decay", "0"),
    ("optimizer__lr", [1]),
])
def test_wrongly_typed_training_options_are_refused_on_resume(model, tmp_path, field, value):
    path = edited(model, tmp_path, **{field: value})
    assert_clean_error(run("train", "--resume", path, "--epochs", 4, "--backend", "numpy", "--quiet"),
                       field.replace("__", "."))


@pytest.mark.parametrize("history", [
    {"epoch": [0, 1], "history": {"loss": [1.0, 0.5]}, "params": {}},
    {"epoch": [0, 1], "history": {"loss": [[1.0], [0.5]], "accuracy": [1, 2], "seconds": [1, 1]}, "params": {}},
    {"epoch": [0, 1], "history": {"loss": ["a", "b"], "accuracy": [1, 2], "seconds": [1, 1]}, "params": {}},
])
def test_history_of_the_wrong_shape_cannot_crash_plot(model, tmp_path, history):
    path = edited(model, tmp_path, history=history)
    assert_clean_error(run("plot", path, "--out", tmp_path / "p.png"), "history")


def test_deeply_nested_metadata_is_refused_without_recursion(model, tmp_path):
    text = json.dumps(metadata_of(model[1])).replace('"extra": {', '"extra": ' + "[" * 100_000 + "]" * 100_000
                                                     + ', "x": {')
    path = tmp_path / "deep.npz"
    write_model(path, model[1], metadata_text=text.encode())
    with pytest.raises(ModelFileError, match="nests 100001 levels deep"):
        gpunn.load(path, backend="numpy")


@pytest.mark.parametrize("field, value", [("extra__dataset", [1]), ("extra__dataset", 5),
                                          ("extra__test_split", "0.2"), ("extra__data_dir", {})])
def test_wrongly_typed_data_set_record(model, tmp_path, field, value):
    path = edited(model, tmp_path, **{field: value})
    assert_clean_error(run("evaluate", path), "records its data set wrongly")


def test_load_dataset_checks_its_argument_types():
    with pytest.raises(DataError, match="must be a name or a path"):
        gpunn.load_dataset(["digits"])
    with pytest.raises(DataError, match="test split must be a fraction"):
        gpunn.load_dataset("x.csv", test_split="0.2")


# -- sizes --------------------------------------------------------------------------------------------------------
def test_layer_beyond_what_kernels_can_index_is_a_usage_error():
    assert_clean_error(run("train", "--layers", "64,100000000000,10"), "positive integer up to", status=2)


def test_network_too_large_for_memory_says_how_much_it_needs():
    assert_clean_error(run("train", "--layers", ",100000000,", "--backend", "numpy"), "bytes", "GiB",
                       "use fewer or narrower layers")
    with pytest.raises(InsufficientMemory, match=r"7,500,000,010 parameters"):
        Network([64, 100_000_000, 10], backend="numpy")


# -- a hang ---------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("command", ["evaluate", "predict", "train-npz", "train-csv", "mnist"])
def test_a_fifo_is_refused_without_waiting_for_it(tmp_path, model, command):
    fifo = tmp_path / {"evaluate": "m.npz", "predict": "x.npy", "train-npz": "d.npz", "train-csv": "d.csv",
                       "mnist": "train-images-idx3-ubyte.gz"}[command]
    os.mkfifo(fifo)
    if command == "mnist":  # the other three files are sound
        for name, array in (("train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8)),
                            ("t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8)),
                            ("t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))):
            (tmp_path / name).write_bytes(gzip.compress(idx_bytes(array)))
    argv = {"evaluate": ["evaluate", fifo], "predict": ["predict", model[0], fifo],
            "train-npz": ["train", "--dataset", fifo], "train-csv": ["train", "--dataset", fifo],
            "mnist": ["train", "--dataset", "mnist", "--data-dir", tmp_path]}[command]
    done = subprocess.run([sys.executable, "-m", "gpunn", *map(str, argv)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "GPUNN_BACKEND": "numpy"})
    assert done.returncode == 1 and "named pipe (FIFO)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- outputs lost ---------------------------------------------------------------------------------------------------
def test_resume_of_a_history_lacking_a_key_is_refused_before_training(model, tmp_path):
    history = metadata_of(model[1])["history"]
    del history["history"]["val_accuracy"]
    path = edited(model, tmp_path, history=history)
    out = tmp_path / "out.npz"
    out.write_bytes(model[0].read_bytes())
    assert_clean_error(run("train", "--resume", path, "--epochs", 4, "--output", out, "--backend", "numpy"),
                       "val_loss and val_accuracy")
    assert out.read_bytes() == model[0].read_bytes()


def test_resume_of_a_model_trained_without_a_test_set_is_refused_before_training(tmp_path):
    data = gpunn.load_dataset("digits")
    net = Network([64, 8, 10], backend="numpy")
    net.fit(data.X_train, data.y_train, epochs=1, batch_size=100)  # no validation_data: no val_* in the history
    net.save(tmp_path / "m.npz")
    assert_clean_error(run("train", "--resume", tmp_path / "m.npz", "--dataset", "digits", "--epochs", 2,
                           "--output", tmp_path / "m.npz"), "trained without a test set")


def test_save_refuses_a_history_load_would_refuse(tmp_path):
    data = gpunn.load_dataset("digits")
    net = Network([64, 8, 10], backend="numpy")
    net.fit(data.X_train, data.y_train, epochs=1, batch_size=100)
    net.fit(data.X_train, data.y_train, epochs=2, batch_size=100, validation_data=(data.X_test, data.y_test))
    with pytest.raises(ModelFileError, match="cannot save the model.*val_loss has 2 values for 3 epochs"):
        net.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_a_plot_path_in_a_missing_folder_is_refused_before_the_output_is_replaced(model, tmp_path):
    out = tmp_path / "out.npz"
    out.write_bytes(model[0].read_bytes())
    assert_clean_error(run("train", "--epochs", 1, *TINY, "--output", out, "--plot", tmp_path / "nodir" / "c.png"),
                       "there is no folder")
    assert out.read_bytes() == model[0].read_bytes()


@pytest.mark.parametrize("option", ["--output", "--plot"])
def test_an_output_that_is_the_data_set_is_refused(tmp_path, option):
    data = tmp_path / "data.npz"
    np.savez(data, X=np.random.default_rng(0).random((20, 3)), y=np.arange(20) % 2)
    before = data.read_bytes()
    name = data if option == "--output" else tmp_path / "data.png"
    if option == "--plot":  # the same file under another name
        os.link(data, name)
    assert_clean_error(run("train", "--dataset", data, "--epochs", 1, "--backend", "numpy", option, name),
                       "would replace it")
    assert data.read_bytes() == before


@pytest.mark.parametrize("kind, fragment, status", [("folder", "is a directory", 2), ("fifo", "give a file name", 1)])
def test_an_output_that_is_not_a_file_is_refused_before_training(tmp_path, kind, fragment, status):
    # (no device such as /dev/null here: a gpunn that failed this test would replace it)
    target = tmp_path / "out.npz"
    target.mkdir() if kind == "folder" else os.mkfifo(target)
    assert_clean_error(run("train", "--epochs", 1, *TINY, "--output", target), fragment, status=status)


# -- silently wrong ----------------------------------------------------------------------------------------------------
def test_a_huge_csv_label_is_reported_as_such(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{label},0.5,0.5\n" for label in ["0", "1", "1e20", "0", "1"]))
    assert_clean_error(run("train", "--dataset", path, "--epochs", 1, "--backend", "numpy"),
                       "label 1e+20 is too large")


def test_huge_unsigned_labels_do_not_wrap_negative(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((5, 2)), y=np.full(5, 2**64 - 1, dtype=np.uint64))
    with pytest.raises(DataError, match="too large"):
        gpunn.load_dataset(str(path))


def test_complex_samples_are_refused_not_truncated(model, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((2, 64)) * (1 + 1j))
    assert_clean_error(run("predict", model[0], path), "complex numbers")


def test_a_model_with_nan_parameters_is_refused(model, tmp_path):
    members = dict(model[1])
    params = members["params"].copy()
    params[5] = np.nan
    members["params"] = params
    path = tmp_path / "nan.npz"
    write_model(path, members)
    assert_clean_error(run("evaluate", path), "NaN or infinite values")


def test_save_refuses_nan_parameters(tmp_path):
    net = Network([2, 3, 2], backend="numpy")
    net.params[0] = np.inf
    with pytest.raises(ModelFileError, match="cannot save the model.*NaN or infinite"):
        net.save(tmp_path / "m.npz")


@pytest.mark.parametrize("option, value", [("--lr", "1e309"), ("--lr", "nan"), ("--lr", "1e300"),
                                           ("--momentum", "nan"), ("--weight-decay", "inf"),
                                           ("--test-split", "nan")])
def test_options_must_be_finite_and_sane(option, value):
    assert_clean_error(run("train", option, value), option, status=2)


@pytest.mark.parametrize("layers", ["²", "٣", "64,²,10"])
def test_layer_sizes_are_ascii_digits(layers):
    assert_clean_error(run("train", "--layers", layers), "positive integer", status=2)


@pytest.mark.parametrize("shape, fragment", [((0, 0), "has no samples"), ((5, 0), "has no features")])
def test_empty_feature_arrays_get_a_message_of_their_own(tmp_path, shape, fragment):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros(shape), y=np.zeros(shape[0], np.int64))
    with pytest.raises(DataError, match=fragment):
        gpunn.load_dataset(str(path))


# -- noise ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--weight-decay", "10"],
                                  ["--lr", "1", "--weight-decay", "3.5", "--momentum", "0.5"]])
def test_a_weight_decay_that_must_diverge_is_refused_up_front(args):
    assert_clean_error(run("train", *args, "--backend", "numpy"), "grows without bound", status=2)


def test_features_beyond_float32_are_refused_not_overflowed(model, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.full((2, 64), 1e300))
    assert_clean_error(run("predict", model[0], path), "do not fit the network's float32")


def test_inference_that_overflows_is_refused_not_warned_about(model, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.concatenate([np.full((2, 32), 3e38), np.full((2, 32), -3e38)], axis=1))  # fits float32
    assert_clean_error(run("predict", model[0], path), "arithmetic overflows")


def png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12000, 7500, 20000])  # 144 MP (Pillow warns), 56 MP (under Pillow's limit), 400 MP
def test_an_image_beyond_the_pixel_limit_is_refused_before_decoding(model, tmp_path, side):
    pytest.importorskip("PIL")
    path = tmp_path / "big.png"
    path.write_bytes(png(side, side, zlib.compress(bytes(64))))
    assert_clean_error(run("predict", model[0], path), "50,000,000")
