"""Data loading: the IDX reader, MNIST-family folders, the user's .npz/.csv files, and validate().

Every IDX file here is generated in tmp_path; nothing is downloaded.
"""

import gzip
import pickle
import struct

import numpy as np
import pytest

from gpunn.data import idx
from gpunn.data.datasets import Dataset, load_dataset, validate
from gpunn.data.download import MNIST_FILES
from gpunn.errors import DataError
from gpunn.data.userdata import DEFAULT_TEST_SPLIT


def idx_bytes(array, code=0x08):
    """An IDX file's bytes: magic (0, 0, type code, ndim), big-endian sizes, big-endian elements."""
    dtype = idx.ELEMENT_TYPES[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write(path, content):
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return path


def mnist_like(n_train=12, n_test=5, seed=0):
    """Images (uint8, n x 28 x 28) and labels (0..9) for the four standard files, in MNIST_FILES order."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    ]


def write_mnist_folder(folder, arrays, gz=True):
    for name, array in zip(MNIST_FILES, arrays):
        write(folder / (name if gz else name.removesuffix(".gz")), idx_bytes(array))


# --- IDX reader -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_images_round_trip_scaled_to_unit_interval(tmp_path, name):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 11
    images = idx.read_images(write(tmp_path / name, idx_bytes(pixels)))
    assert images.dtype == np.float64 and images.shape == (2, 12)
    np.testing.assert_allclose(images, pixels.reshape(2, 12) / 255.0)


@pytest.mark.parametrize("name", ["labels-idx1-ubyte.gz", "labels-idx1-ubyte"])
def test_labels_round_trip_as_int64(tmp_path, name):
    labels = np.array([7, 2, 1, 0, 4, 255], dtype=np.uint8)
    read = idx.read_labels(write(tmp_path / name, idx_bytes(labels)))
    assert read.dtype == np.int64
    np.testing.assert_array_equal(read, labels)


def test_read_idx_other_element_types_big_endian(tmp_path):
    values = np.array([[1, -2], [300, -32768]], dtype=np.int16)
    magic, array = idx.read_idx(write(tmp_path / "x.idx", idx_bytes(values, code=0x0B)))
    assert magic == 0x0B02
    np.testing.assert_array_equal(array, values)


def test_wrong_magic_names_file_and_both_numbers(tmp_path):
    path = write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: wrong magic number 2049 .* has 2051"):
        idx.read_images(path)


def test_not_an_idx_file(tmp_path):
    path = write(tmp_path / "page.gz", b"<!DOCTYPE html><html>rate limited</html>")
    with pytest.raises(DataError, match=r"page\.gz: not an IDX file: magic number 0x3c21444f"):
        idx.read_idx(path)


def test_unknown_element_type(tmp_path):
    path = write(tmp_path / "odd", bytes([0, 0, 0x07, 1]) + struct.pack(">I", 0))
    with pytest.raises(DataError, match="unknown IDX element type 0x07"):
        idx.read_idx(path)


@pytest.mark.parametrize("name", ["images.gz", "images"])
def test_truncated_payload(tmp_path, name):
    content = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100]
    with pytest.raises(DataError, match=rf"{name}: truncated payload: .*\(4, 28, 28\).*3136 bytes.*3036 bytes follow"):
        idx.read_images(write(tmp_path / name, content))


def test_truncated_header(tmp_path):
    path = write(tmp_path / "short", bytes([0, 0, 8, 3]) + struct.pack(">I", 10))
    with pytest.raises(DataError, match="truncated IDX header: 3 dimensions need 16 bytes but the file has 8"):
        idx.read_idx(path)


def test_trailing_bytes(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(5, np.uint8)) + b"extra")
    with pytest.raises(DataError, match="5 trailing bytes after the 5-byte payload"):
        idx.read_labels(path)


def test_named_gz_but_not_gzip(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: not a gzip file .*drop the \.gz"):
        idx.read_labels(path)


def test_gzip_stream_cut_short(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(3000, dtype=np.uint16).astype(np.uint8)))[:-40])
    with pytest.raises(DataError, match=r"images\.gz: corrupt gzip: the compressed stream ends early"):
        idx.read_idx(path)


def test_gzip_with_bad_crc(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.zeros(50, np.uint8))))
    data[-8] ^= 0xFF  # the CRC-32 of the uncompressed data
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"labels\.gz: corrupt gzip: CRC check failed"):
        idx.read_idx(path)


def test_missing_idx_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: no such file"):
        idx.read_idx(tmp_path / "nope.gz")


# --- MNIST family from a folder ----------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_data_dir(tmp_path, gz):
    arrays = mnist_like()
    write_mnist_folder(tmp_path, arrays, gz=gz)
    data = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert data.name == "fashion-mnist"
    assert data.X_train.shape == (12, 784) and data.X_test.shape == (5, 784)
    np.testing.assert_allclose(data.X_train, arrays[0].reshape(12, 784) / 255.0)
    np.testing.assert_array_equal(data.y_test, arrays[3])
    assert data.n_classes == 10 and list(data.classes) == list(range(10))  # ten digits, whatever the file holds


def test_mnist_data_dir_missing_files_lists_them_and_the_folder(tmp_path):
    write_mnist_folder(tmp_path, mnist_like())
    (tmp_path / MNIST_FILES[1]).unlink()
    (tmp_path / MNIST_FILES[3]).unlink()
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(error.value)
    assert f"{MNIST_FILES[1]}, {MNIST_FILES[3]} not found in {tmp_path}" in message
    assert all(name in message for name in MNIST_FILES) and "\n" not in message


def test_mnist_data_dir_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset("mnist", data_dir=tmp_path / "absent")


def test_mnist_image_and_label_counts_differ(tmp_path):
    arrays = mnist_like()
    arrays[3] = arrays[3][:4]
    write_mnist_folder(tmp_path, arrays)
    with pytest.raises(DataError, match="mnist: 5 test samples but 4 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_wrong_file_in_place(tmp_path):
    arrays = mnist_like()
    write_mnist_folder(tmp_path, arrays)
    write(tmp_path / MNIST_FILES[2], idx_bytes(arrays[3]))  # labels where the test images belong
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: wrong magic number 2049"):
        load_dataset("mnist", data_dir=tmp_path)


# --- validate() ---------------------------------------------------------------------------------


def make(X_train=None, y_train=None, X_test=None, y_test=None, n_classes=3):
    X = np.zeros((4, 2))
    y = np.array([0, 1, 2, 1])
    return Dataset(
        "toy",
        X if X_train is None else X_train, y if y_train is None else y_train,
        X if X_test is None else X_test, y if y_test is None else y_test,
        n_classes,
    )


def test_validate_accepts_and_can_widen_to_the_output_layer():
    assert validate(make()).n_classes == 3
    assert validate(make(), n_classes=5).n_classes == 5


def test_validate_more_classes_than_the_output_layer_says_how_many():
    with pytest.raises(DataError, match="toy: 3 distinct labels do not fit an output layer of 2 units; .* 3 wide"):
        validate(make(), n_classes=2)
    with pytest.raises(DataError, match="toy: 4 distinct labels do not fit an output layer of 3 units"):
        validate(make(y_test=np.array([0, 1, 7, 1])))


def test_validate_keeps_labels_as_written():
    data = validate(make(y_train=np.array([0, -1, 2, 0]), y_test=np.array([2, -1, 0, 0])))
    assert list(data.classes) == [-1, 0, 2]
    named = validate(make(y_train=np.array(["b", "a", "b", "c"]), y_test=np.array(["a", "a", "c", "b"])))
    assert list(named.classes) == ["a", "b", "c"]


def test_validate_count_mismatch():
    with pytest.raises(DataError, match="toy: 4 train samples but 3 labels"):
        validate(make(y_train=np.array([0, 1, 2])))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validate_non_finite_features(bad):
    X = np.zeros((4, 2))
    X[2, 1] = bad
    with pytest.raises(DataError, match="toy: test features contain NaN or infinite values"):
        validate(make(X_test=X))


def test_validate_empty():
    with pytest.raises(DataError, match="toy: the train set is empty"):
        validate(make(X_train=np.zeros((0, 2)), y_train=np.zeros(0, np.int64)))


def test_validate_feature_count_mismatch():
    with pytest.raises(DataError, match="train has 2 features but test has 3"):
        validate(make(X_test=np.zeros((4, 3))))


def test_validate_float_labels():
    with pytest.raises(DataError, match="train labels must be integers or strings, got dtype float64"):
        validate(make(y_train=np.array([0.0, 1.0, 2.0, 1.0])))


# --- dispatcher and built-ins ---------------------------------------------------------------------


def test_builtins_unchanged():
    digits = load_dataset("digits")
    assert (digits.X_train.shape, digits.X_test.shape, digits.n_classes) == ((1348, 64), (449, 64), 10)
    assert load_dataset("xor").n_classes == 2


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar': use one of digits, xor, mnist, fashion-mnist"):
        load_dataset("cifar")


@pytest.mark.parametrize("name", ["missing.npz", "missing.csv"])
def test_missing_user_file(tmp_path, name):
    with pytest.raises(DataError, match=f"{name}: no such file"):
        load_dataset(str(tmp_path / name))


def test_options_that_do_not_apply_are_refused(tmp_path):
    with pytest.raises(DataError, match="--data-dir applies only to mnist and fashion-mnist"):
        load_dataset("digits", data_dir=tmp_path)
    with pytest.raises(DataError, match="digits: has a fixed test set"):
        load_dataset("digits", test_split=0.3)
    with pytest.raises(DataError, match="mnist: has a fixed test set"):
        load_dataset("mnist", data_dir=tmp_path, test_split=0.3)


def test_n_classes_from_output_layer(tmp_path):
    with pytest.raises(DataError, match="digits: 10 distinct labels do not fit an output layer of 5 units"):
        load_dataset("digits", n_classes=5)


# --- user .npz ----------------------------------------------------------------------------------


def test_npz_split_is_seeded_and_features_not_rescaled(tmp_path):
    X = np.arange(40, dtype=np.int32).reshape(20, 2) * 100
    y = np.arange(20) % 4
    path = tmp_path / "mine.npz"
    np.savez(path, X=X, y=y)
    data = load_dataset(str(path))
    again = load_dataset(str(path))
    assert data.name == "mine.npz" and data.n_classes == 4
    assert len(data.X_test) == round(20 * DEFAULT_TEST_SPLIT) and len(data.X_train) == 16
    assert data.X_train.dtype == np.float64 and data.X_train.max() == 3900.0
    np.testing.assert_array_equal(data.X_test, again.X_test)
    rows = sorted(map(tuple, np.vstack([data.X_train, data.X_test])))
    assert rows == sorted(map(tuple, X.astype(float)))
    assert len(load_dataset(str(path), test_split=0.5).X_test) == 10


def test_npz_with_test_set_and_images_flattened(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(path, X=np.ones((6, 3, 3)), y=np.array([0, 1, 0, 1, 0, 1]),
             X_test=np.ones((2, 3, 3)), y_test=np.array([2.0, 0.0]))
    data = load_dataset(str(path))
    assert data.X_train.shape == (6, 9) and data.X_test.shape == (2, 9)
    assert data.y_test.dtype == np.int64 and data.n_classes == 3
    with pytest.raises(DataError, match="has its own X_test and y_test"):
        load_dataset(str(path), test_split=0.2)


def test_npz_object_array_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([[1, "a"], [None, 2]], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="array X holds Python objects"):
        load_dataset(str(path))


@pytest.mark.parametrize("kind, message", [
    ("pickle", "holds a Python pickle, which gpunn does not load"),
    ("npy", "holds a single .npy array, not an .npz archive"),
])
def test_pickle_or_npy_named_npz_refused(tmp_path, kind, message):
    path = tmp_path / "pickled.npz"
    content = {"X": np.zeros((3, 2)), "y": np.zeros(3)}
    with open(path, "wb") as f:
        if kind == "pickle":
            pickle.dump(content, f)
        else:
            np.save(f, np.array([content], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=f"pickled.npz: {message}"):
        load_dataset(str(path))


def test_npz_missing_arrays_and_half_test_pair(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, features=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"no array named X \(found: features, y\)"):
        load_dataset(str(path))
    np.savez(path, X=np.zeros((3, 2)), y=np.zeros(3), X_test=np.zeros((1, 2)))
    with pytest.raises(DataError, match="has X_test but no y_test"):
        load_dataset(str(path))


@pytest.mark.parametrize("labels, message", [
    ([0, 1.5, 1, 0, 1], "label 1.5 is not a whole number"),
    ([0, 1, 1e20, 0, 1], "label 1e\\+20 is too large"),
    (["a", "", "a", "b", "a"], "an empty label"),
])
def test_npz_bad_labels(tmp_path, labels, message):
    path = tmp_path / "l.npz"
    np.savez(path, X=np.zeros((5, 2)), y=np.array(labels))
    with pytest.raises(DataError, match=message):
        load_dataset(str(path))


@pytest.mark.parametrize("labels", [[0, 1, -1, 0, 1], [3, 7, 7, 3, 3], ["a", "b", "a", "b", "a"]])
def test_npz_labels_are_kept_as_written(tmp_path, labels):
    path = tmp_path / "l.npz"
    np.savez(path, X=np.zeros((5, 2)), y=np.array(labels))
    data = load_dataset(str(path), test_split=0.4)
    assert sorted(data.classes.tolist()) == sorted(set(labels))
    assert sorted(np.concatenate([data.y_train, data.y_test]).tolist()) == sorted(labels)


def test_npz_count_mismatch(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, X=np.zeros((5, 2)), y=np.zeros(4, int))
    with pytest.raises(DataError, match="5 samples but 4 labels"):
        load_dataset(str(path))


def test_npz_nan_features(tmp_path):
    X = np.zeros((10, 2))
    X[3, 0] = np.nan
    path = tmp_path / "n.npz"
    np.savez(path, X=X, y=np.zeros(10, int), X_test=np.zeros((2, 2)), y_test=np.zeros(2, int))
    with pytest.raises(DataError, match="n.npz: train features contain NaN"):
        load_dataset(str(path))


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"text.npz: not an .npz archive \(.*starts with bytes 68656c6c6f\)"):
        load_dataset(str(path))


def test_npz_too_few_samples_to_split(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, X=np.zeros((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match="2 samples are too few to hold out 0.2"):
        load_dataset(str(path))


# --- user .csv ----------------------------------------------------------------------------------

CSV_ROWS = "".join(f"{i % 3},{i}.5,{i * 10}\n" for i in range(10))


@pytest.mark.parametrize("header", ["", "label,a,b\n"])
def test_csv_with_and_without_header(tmp_path, header):
    path = tmp_path / "rows.csv"
    path.write_text(header + CSV_ROWS)
    data = load_dataset(str(path), test_split=0.3)
    assert (len(data.X_train), len(data.X_test)) == (7, 3) and data.n_classes == 3
    rows = np.vstack([data.X_train, data.X_test])
    assert sorted(rows[:, 1]) == [i * 10.0 for i in range(10)]
    labels = dict(zip(np.concatenate([data.X_train, data.X_test])[:, 0], np.concatenate([data.y_train, data.y_test])))
    assert all(labels[i + 0.5] == i % 3 for i in range(10))


def test_csv_default_split(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(CSV_ROWS)
    assert len(load_dataset(str(path)).X_test) == 2


@pytest.mark.parametrize("content, message", [
    ("label,x\n0,1\n1,oops\n", r"line 3, column 2: 'oops' is not a number"),
    ("0,1,2\n1,2\n", "line 2: 2 columns, but the first data row has 3"),
    ("0,1\n0.5,2\n1,3\n", "column 1: label 0.5 is not a whole number"),
    ("label,x\n", "no data rows"),
    ("", "no data rows"),
    ("1\n2\n", "one column only"),
])
def test_csv_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(str(path))
