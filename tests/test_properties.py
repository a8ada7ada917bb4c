"""Generated hostile input (Hypothesis): whatever the file or option, gpunn answers cleanly and loses nothing.

The properties, each over generated cases:

* a model ``save`` writes is one ``load`` accepts, and loads back equal (``load(save(net))``);
* a model file with any metadata field set to any JSON value either loads (and then saves
  and loads again) or is refused with one ``ModelFileError`` line naming the file;
* ``.npy`` headers: the guarded reader refuses what it cannot vouch for, and what it
  accepts NumPy reads identically;
* user ``.npz``/``.csv`` data and IDX files: a validated data set or one ``DataError``;
* corrupted archives: one error line, never another exception;
* ``gpunn train`` with any combination of option values, run in process: exit 0 with a
  loadable output, or exit 1/2 with one ``Error:`` line and an existing output untouched.

Example counts come from the Hypothesis profile registered below: "ci" (the default)
keeps the generated cases to about fifteen seconds in all, ``HYPOTHESIS_PROFILE=slow``
runs twenty times as many, for a search outside CI.  No deadline: a case that starts a
training run may take a few hundred milliseconds on a loaded machine, and that is not a
failure.  Hypothesis is in the ``test`` extra; where it is missing (the GPU machine of
``scripts/gpu_check.sh``) this module is skipped, and under ``$CI`` it fails.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kernel_cases import missing_tool

try:
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:
    missing_tool('Hypothesis is not installed (pip install ".[test]")')

import gpunn
from gpunn import DataError, ModelFileError, Network, TrainingDiverged
from gpunn.cli.main import cli
from gpunn.data.idx import read_idx
from gpunn.network import load_with_metadata
from gpunn.safe_npz import ArchiveError, read_npy
from hostile_files import metadata_of, npy_with_header, read_members, write_model


_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("slow", max_examples=2000, deadline=None, suppress_health_check=_QUIET, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def share(fraction: float):
    """Settings with this fraction of the profile's example count (the costlier properties run fewer)."""
    return settings(max_examples=max(5, int(settings.default.max_examples * fraction)))


def one_line(message: str) -> bool:
    return "\n" not in message and message.strip() != ""


def corrupted(data: bytes, cuts, truncate) -> bytes:
    """``data`` with each (position, value) of ``cuts`` written over it, then cut at ``truncate`` if given."""
    data = bytearray(data)
    for position, value in cuts:
        data[position % len(data)] = value
    if truncate is not None:
        data = data[: truncate % len(data)]
    return bytes(data)


def run(args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean(result):
    """Exit 0, or exit 1/2 with exactly one ``Error:`` line; never an escaped exception or a raw warning.

    gpunn's own diagnosis of a stuck run is a line starting ``Warning: ``; Python's and
    NumPy's warnings name their class (``RuntimeWarning: ...``) and are refused.
    """
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    assert not re.search(r"\w+Warning: ", result.output), result.output
    if result.exit_code:
        assert result.exit_code in (1, 2), result.output
        assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1, result.output


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12))
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


class Saved(tuple):
    """(path, members) of a model file, shown by its path alone when Hypothesis reports a failing case."""

    def __repr__(self):
        return f"Saved({str(self[0])!r})"


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    """A small digits model (momentum, so with a velocity array) and its members."""
    path = tmp_path_factory.mktemp("good") / "model.npz"
    result = run(["train", "--epochs", 2, "--layers", "64,6,10", "--batch-size", 100, "--momentum", 0.5,
                  "--backend", "numpy", "--quiet", "--output", path])
    assert result.exit_code == 0, result.output
    return Saved((path, read_members(path)))


# -- model files ---------------------------------------------------------------------------------------------------
FIELD_PATHS = [
    ("format_version",), ("gpunn_version",), ("sizes",), ("sizes", 1), ("loss",), ("init",), ("dtype",), ("seed",),
    ("epochs_done",), ("training",), ("training", "lr"), ("training", "batch_size"), ("training", "momentum"),
    ("training", "weight_decay"), ("optimizer",), ("optimizer", "lr"), ("optimizer", "momentum"),
    ("optimizer", "name"), ("history",), ("history", "epoch"), ("history", "history"),
    ("history", "history", "loss"), ("history", "history", "val_accuracy"), ("history", "params"),
    ("history", "params", "lr"), ("extra",), ("extra", "dataset"), ("extra", "data_dir"), ("extra", "test_split"),
    ("surplus",),
]


def set_field(metadata: dict, path: tuple, value, delete: bool) -> None:
    target = metadata
    for key in path[:-1]:
        target = target[key]
    if delete and isinstance(target, dict):
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


@share(1.0)
@given(changes=st.lists(st.tuples(st.sampled_from(FIELD_PATHS), json_values, st.booleans()), min_size=1, max_size=3))
def test_any_metadata_value_loads_soundly_or_is_refused_in_one_line(good_model, changes):
    metadata = metadata_of(good_model[1])
    for path, value, delete in changes:
        try:
            set_field(metadata, path, value, delete)
        except (KeyError, IndexError, TypeError):  # an earlier change removed or retyped the parent
            pass
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.npz"
        write_model(path, good_model[1], metadata_text=json.dumps(metadata).encode())
        try:
            net = gpunn.load(path, backend="numpy")
        except ModelFileError as exc:
            assert one_line(str(exc)) and str(path) in str(exc)
            return
        net.save(Path(folder) / "again.npz")  # what load accepts, save writes back
        gpunn.load(Path(folder) / "again.npz", backend="numpy")
        assert_clean(run(["evaluate", path, "--json"]))


sizes = st.lists(st.integers(1, 9), min_size=2, max_size=4)


@pytest.mark.filterwarnings("ignore::gpunn.training.loop.TrainingWarning")  # random lr and init: some runs get stuck
@share(0.75)
@given(sizes=sizes, loss=st.sampled_from(["quadratic", "cross_entropy"]), init=st.sampled_from(["normal", "scaled"]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**64 - 1), epochs=st.integers(0, 2),
       lr=st.floats(1e-3, 10), momentum=st.sampled_from([0.0, 0.5, 0.9]), weight_decay=st.sampled_from([0.0, 1e-3]),
       validate=st.booleans(), extra=json_values)
def test_load_of_save_round_trips(sizes, loss, init, dtype, seed, epochs, lr, momentum, weight_decay, validate, extra):
    net = Network(sizes, loss=loss, init=init, backend="numpy", dtype=dtype, seed=seed)
    rng = np.random.default_rng(0)
    X, y = rng.random((12, sizes[0])), rng.integers(0, sizes[-1], 12)
    if epochs:
        try:
            net.fit(X, y, epochs=epochs, batch_size=5, lr=lr, momentum=momentum, weight_decay=weight_decay,
                    validation_data=(X, y) if validate else None)
        except TrainingDiverged:
            assume(False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.npz"
        net.save(path, extra=extra)
        loaded, metadata = load_with_metadata(path, backend="numpy")
    assert np.array_equal(loaded.params, net.params) and loaded.params.dtype == net.params.dtype
    assert (loaded.sizes, loaded.loss, loaded.init, loaded.seed, loaded.epochs_done) == \
           (net.sizes, net.loss, net.init, net.seed, net.epochs_done)
    assert json.dumps(metadata["extra"]) == json.dumps(extra)
    if epochs:
        assert loaded.history.epoch == net.history.epoch
        assert json.dumps(loaded.history.history) == json.dumps(net.history.history)
        assert (loaded.optimizer.lr, loaded.optimizer.momentum) == (net.optimizer.lr, net.optimizer.momentum)
        if momentum:
            assert np.array_equal(loaded.optimizer.velocity, net.optimizer.velocity)


@share(1.0)
@given(cuts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       truncate=st.one_of(st.none(), st.integers(0, 10**6)))
def test_corrupted_model_archives_are_refused_in_one_line(good_model, cuts, truncate):
    data = corrupted(good_model[0].read_bytes(), cuts, truncate)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.npz"
        path.write_bytes(data)
        try:
            gpunn.load(path, backend="numpy")
        except ModelFileError as exc:
            assert one_line(str(exc))


# -- .npy headers ------------------------------------------------------------------------------------------------------
descrs = st.sampled_from(["<f8", "<f4", ">f4", "|u1", "|i1", "<i8", "|b1", "<f2", "<c16", "|O", "<U3", "<M8[s]",
                          "f8", "<f3", "", "'", "<V4"])
shapes = st.lists(st.integers(0, 6), max_size=3).map(tuple) | st.lists(st.integers(0, 2**64), max_size=3).map(tuple)


@st.composite
def npy_headers(draw):
    """Header texts: NumPy's own form with odd values, spacing and order, or mangled text."""
    fields = [f"'descr': {draw(descrs)!r}", f"'fortran_order': {draw(st.sampled_from(['False', 'True', '0']))}",
              f"'shape': {draw(shapes)!r}"]
    fields = draw(st.permutations(fields))
    space = draw(st.sampled_from(["", " ", "  \t"]))
    text = "{" + f",{space}".join(fields) + draw(st.sampled_from([", }", "}", ",}", ", 'x': 1}", ""])) + " " * 4
    if draw(st.booleans()):
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(st.text(alphabet="{}()[],:'\" 01xTrueFals\\\n", max_size=4)) + text[position:]
    return text


@share(1.5)
@given(header=npy_headers(), data=st.binary(max_size=96), exact=st.booleans(), version=st.sampled_from([1, 1, 2, 3]))
def test_npy_reader_refuses_cleanly_or_agrees_with_numpy(header, data, exact, version):
    if exact:  # data of exactly the declared size, when the header is NumPy's to parse
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                text = header.encode("latin1")
                shape, _, dtype = np.lib.format.read_array_header_1_0(io.BytesIO(struct.pack("<H", len(text)) + text))
            data = bytes(min(math.prod(shape) * dtype.itemsize, 4096))
        except Exception:  # NumPy cannot parse it either; any data will do
            pass
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.npy"
        path.write_bytes(npy_with_header(header, data, version))
        try:
            ours = read_npy(path)
        except ArchiveError as exc:
            assert one_line(str(exc)) and str(path) in str(exc)
            return
        theirs = np.load(path, allow_pickle=False)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")


# -- user data -------------------------------------------------------------------------------------------------------
feature_dtypes = st.sampled_from([np.float64, np.float32, np.float16, np.int8, np.int64, np.uint64, np.bool_,
                                  np.complex128])
label_dtypes = st.sampled_from([np.int64, np.uint8, np.uint64, np.float64, np.float32, np.bool_, np.int8])


@st.composite
def user_arrays(draw):
    n = draw(st.integers(0, 12))
    X = draw(hnp.arrays(draw(feature_dtypes), draw(st.sampled_from([(n, 3), (n, 2, 2), (n,), (n, 0), (0, 0)]))))
    y_length = draw(st.sampled_from([n, n, n, n + 1]))
    labels = hnp.arrays(draw(label_dtypes), (y_length,))
    arrays = {"X": X, "y": draw(labels)}
    if draw(st.booleans()):
        arrays["X_test"] = draw(hnp.arrays(np.float64, (draw(st.integers(0, 4)), 3)))
        arrays["y_test"] = draw(hnp.arrays(np.int64, (len(arrays["X_test"]),), elements=st.integers(-1, 4)))
    return arrays


def check_dataset(data):
    for split in ("train", "test"):
        X, y = getattr(data, f"X_{split}"), getattr(data, f"y_{split}")
        assert X.dtype == np.float64 and X.ndim == 2 and len(X) == len(y) > 0 and np.isfinite(X).all()
        assert y.dtype == np.int64 and len(data.classes) == data.n_classes >= 1
        assert set(np.unique(y)) <= set(data.classes)


@share(1.0)
@given(arrays=user_arrays(), compressed=st.booleans(), split=st.one_of(st.none(), st.floats(0.01, 0.99)))
def test_user_npz_is_a_valid_data_set_or_one_data_error(arrays, compressed, split):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        try:
            data = gpunn.load_dataset(str(path), test_split=split if "X_test" not in arrays else None)
        except DataError as exc:
            assert one_line(str(exc))
            return
    check_dataset(data)


@share(0.75)
@given(text=st.text(alphabet="0123456789.,-+eE \n\r\tnaifxu٣²\ufeff", max_size=120))
def test_user_csv_is_a_valid_data_set_or_one_data_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.csv"
        path.write_text(text, encoding="utf-8")
        try:
            data = gpunn.load_dataset(str(path))
        except DataError as exc:
            assert one_line(str(exc))
            return
    check_dataset(data)


@share(1.0)
@given(code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]), dims=st.lists(st.integers(0, 5), max_size=3),
       forged=st.one_of(st.none(), st.integers(0, 2**32 - 1)), extra=st.integers(-6, 6), compress=st.booleans(),
       trailing_member=st.booleans())
def test_idx_is_read_as_its_header_says_or_refused(code, dims, forged, extra, compress, trailing_member):
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8", 0x07: ">u1"}[code]
    declared = list(dims)
    if forged is not None and declared:
        declared[0] = forged
    payload = np.arange(math.prod(dims)).astype(dtype).tobytes()
    payload = payload[:len(payload) + extra] if extra < 0 else payload + bytes(extra)
    header = bytes([0, 0, code, len(declared)]) + struct.pack(f">{len(declared)}I", *declared)
    content = header + payload
    if compress:  # concatenated gzip members are one stream: their contents follow each other
        content = gzip.compress(content) + (gzip.compress(b"more") if trailing_member else b"")
        payload += b"more" if trailing_member else b""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("x.gz" if compress else "x")
        path.write_bytes(content)
        try:
            _, array = read_idx(path)
        except DataError as exc:
            assert one_line(str(exc))
            return
    assert array.shape == tuple(declared) and array.dtype == np.dtype(dtype) and code != 0x07
    assert array.tobytes() == payload


@share(1.0)
@given(cuts=st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), min_size=1, max_size=6),
       truncate=st.one_of(st.none(), st.integers(0, 10**5)), method=st.sampled_from([zipfile.ZIP_STORED,
                                                                                     zipfile.ZIP_DEFLATED]))
def test_corrupted_user_archives_are_one_data_error(cuts, truncate, method):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, array in (("X.npy", np.linspace(0, 1, 60).reshape(20, 3)), ("y.npy", np.arange(20) % 3)):
            with archive.open(name, "w") as member:
                np.lib.format.write_array(member, array)
    data = corrupted(buffer.getvalue(), cuts, truncate)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.npz"
        path.write_bytes(data)
        try:
            check_dataset(gpunn.load_dataset(str(path)))
        except DataError as exc:
            assert one_line(str(exc))


# -- options ---------------------------------------------------------------------------------------------------------
numbers = st.one_of(st.floats(), st.sampled_from(["1e309", "-inf", "nan", "0x10", "1_0", "", "3.0.0"]),
                    st.integers(-10, 10**20))
layer_texts = st.one_of(
    st.lists(st.integers(1, 40), min_size=1, max_size=4).map(lambda s: ",".join(map(str, s))),
    st.text(alphabet="0123456789,-+ ٣²x", max_size=12),
    st.sampled_from([",100000000000,", "3," * 150 + "2", "9" * 5000, ",8,"]))
OPTIONS = {"--lr": numbers, "--momentum": numbers, "--weight-decay": numbers, "--batch-size": numbers,
           "--epochs": st.sampled_from(["1", "2", "0", "-1", "100001", "x"]), "--seed": numbers,
           "--test-split": numbers, "--layers": layer_texts, "--checkpoint-every": st.sampled_from(["1", "0", "x"]),
           "--dtype": st.sampled_from(["float32", "float64", "int8"]),
           "--loss": st.sampled_from(["quadratic", "cross_entropy", "l1"])}


@pytest.fixture(scope="module")
def option_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(1)
    np.savez(folder / "tiny.npz", X=rng.random((20, 3)), y=np.arange(20) % 3)
    return folder


@share(1.0)
@given(chosen=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.just(None), max_size=4).flatmap(
           lambda keys: st.fixed_dictionaries({key: OPTIONS[key] for key in keys})),
       dataset=st.sampled_from(["xor", "tiny.npz"]), output=st.sampled_from(["existing", "new", "none", "data"]))
def test_train_options_end_cleanly_and_lose_nothing(option_files, good_model, chosen, dataset, output):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = folder / "tiny.npz"
        data.write_bytes((option_files / "tiny.npz").read_bytes())
        data_before = data.read_bytes()
        args = ["train", "--dataset", data if dataset == "tiny.npz" else dataset, "--backend", "numpy", "--quiet"]
        if "--epochs" not in chosen:
            args += ["--epochs", "1"]
        for option, value in chosen.items():
            args += [option, value]
        target = {"existing": folder / "out.npz", "new": folder / "new.npz", "data": data, "none": None}[output]
        if output == "existing":
            target.write_bytes(good_model[0].read_bytes())
        before = target.read_bytes() if target is not None and target.exists() else None
        if target is not None:
            args += ["--output", target]
        result = run(args)
        assert_clean(result)
        assert data.read_bytes() == data_before or (output == "data" and dataset == "xor")
        if target is not None and target.exists() and target.read_bytes() != before:
            gpunn.load(target, backend="numpy")  # replaced, but only by a loadable model
        if result.exit_code == 0 and target is not None:
            gpunn.load(target, backend="numpy")
