"""The user's own data: NumPy ``.npz`` archives and ``.csv`` files.

``.npz``: arrays ``X`` (samples in rows; more than two dimensions are flattened
per sample) and ``y`` (one label per sample), optionally ``X_test`` and ``y_test``.
It is read by :mod:`gpunn.safe_npz`, never by ``np.load``: arrays of Python objects
are refused rather than unpickled, and broken or oversized archives are refused before
anything is inflated.

``.csv``: comma-separated values, one sample per row, the label in the first column
and the numeric features after it.  A first row whose features are not all numbers is
taken as a header and skipped.  No quoting, no missing values.  :func:`read_csv` and
:func:`csv_samples` are also what ``gpunn predict`` reads CSV files with, so the file
``train`` read is one ``predict`` and ``evaluate`` read too.

For a regression network (``task="regression"``, ``gpunn train --task regression``) the
first column, or ``y``, holds the float targets instead (``y`` of a ``.npz`` may have
several columns): finite numbers, checked by :func:`_targets`.

Labels are kept as written: whole numbers of any values (floats such as ``3.0`` are
accepted, checked before they are converted) or strings; the network maps them to its
classes (:mod:`gpunn.nn.labels`).  Features are only cast to float64 here; the scaling
that suits a network is fitted by training and kept in the model
(:mod:`gpunn.nn.preprocessing`).  Without a test set, a fraction of the samples
(``test_split``, default 0.2) is held out by a fixed, seeded permutation, so the same
file always splits the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from gpunn.errors import DataError
from gpunn.files import open_input
from gpunn.memory import require
from gpunn.safe_npz import Hints, NpzReader

DEFAULT_TEST_SPLIT = 0.2
SPLIT_SEED = 20260102
ZIP_START = b"PK"  # local file header, or end of central directory for an empty archive
NPY_START = b"\x93NUMPY"
PICKLE_START = b"\x80"  # pickle protocols 2 and later

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


TASKS = ("classification", "regression")


def load_user_arrays(path: str | Path, test_split: float | None = None, task: str = "classification") -> Arrays:
    """``(X_train, y_train, X_test, y_test)`` from a ``.npz`` or ``.csv`` file, split when it has no test set.

    ``task="regression"`` reads float targets where classification reads labels.
    """
    path = Path(path)
    answers = _targets if task == "regression" else _labels
    if path.suffix.lower() == ".npz":
        X, y, tests = _read_npz(path, answers)
    else:
        X, y = _read_csv(path, answers)
        tests = None
    if len(X) != len(y):
        raise DataError(f"{path}: {len(X)} samples but {len(y)} labels; they must match")
    if tests is not None:
        if test_split is not None:
            raise DataError(f"{path}: has its own X_test and y_test, so a test split does not apply; drop it")
        return X, y, *tests
    return split(X, y, DEFAULT_TEST_SPLIT if test_split is None else test_split, path)


def split(X: np.ndarray, y: np.ndarray, fraction: float, source: str | Path) -> Arrays:
    """Hold out ``round(fraction * n)`` samples, chosen by a permutation seeded with :data:`SPLIT_SEED`."""
    if not 0 < fraction < 1:
        raise DataError(f"{source}: the test split must be a fraction between 0 and 1 (exclusive), got {fraction:g}")
    if len(y) == 0:
        raise DataError(f"{source}: the data set is empty; give it at least one sample")
    n_test = round(len(y) * fraction)
    if n_test in (0, len(y)):
        raise DataError(
            f"{source}: {len(y)} samples are too few to hold out {fraction:g} of them for testing and keep some "
            f"for training; add samples or change the test split"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def _read_npz(path: Path, answers=None) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Features, labels and (when present) the test pair from an archive."""
    with open_input(path, DataError) as file:
        start = file.read(6)
        _check_npz_start(start, path)
        file.seek(0)
        with NpzReader(file, path) as archive:
            names = set(archive.names)
            missing = [key for key in ("X", "y") if key not in names]
            if missing:
                raise DataError(
                    f"{path}: no array named {' or '.join(missing)} (found: {', '.join(sorted(names)) or 'none'}); "
                    f"save with np.savez(path, X=features, y=labels)"
                )
            if ("X_test" in names) != ("y_test" in names):
                have, lack = ("X_test", "y_test") if "X_test" in names else ("y_test", "X_test")
                raise DataError(f"{path}: has {have} but no {lack}; give both or neither")
            X = _features(archive.read("X", hints=_FEATURES), f"{path}: X")
            answers = answers or _labels
            y = answers(archive.read("y", hints=_LABELS, text=True), f"{path}: y")
            if "X_test" not in names:
                return X, y, None
            X_test = _features(archive.read("X_test", hints=_FEATURES), f"{path}: X_test")
            y_test = answers(archive.read("y_test", hints=_LABELS, text=True), f"{path}: y_test")
    if len(X_test) != len(y_test):
        raise DataError(f"{path}: X_test has {len(X_test)} samples but y_test {len(y_test)} labels; they must match")
    return X, y, (X_test, y_test)


_SMALLER = "use a smaller data set"
_FEATURES = Hints("features must be numbers", _SMALLER)
_LABELS = Hints("labels must be whole numbers or strings", _SMALLER)


def _check_npz_start(start: bytes, path: Path) -> None:
    """Refuse, by their first bytes, files that are not zip archives (saying what they are instead)."""
    if start.startswith(PICKLE_START):
        raise DataError(
            f"{path}: holds a Python pickle, which gpunn does not load (unpickling can run code); "
            f"save plain numeric arrays with np.savez(path, X=..., y=...)"
        )
    if start.startswith(NPY_START):
        raise DataError(
            f"{path}: holds a single .npy array, not an .npz archive; save with np.savez(path, X=..., y=...)"
        )
    if not start.startswith(ZIP_START):
        raise DataError(
            f"{path}: not an .npz archive (NumPy's zip of arrays; this starts with bytes {start.hex() or 'nothing'}); "
            f"save with np.savez(path, X=..., y=...)"
        )


class CsvTable(NamedTuple):
    """A CSV file's data rows, split into fields: ``rows`` is a list of (line number, fields)."""

    path: Path
    rows: list
    width: int


def read_csv(path) -> CsvTable:
    """The data rows of a CSV file (blank lines and a header skipped), every row as wide as the first.

    The first row is a header when one of its fields after the first is not a number
    (the first field may be a label, and labels may be words).
    """
    path = Path(path)
    with open_input(path, DataError) as file:
        raw = file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; a .csv file must hold comma-separated values") from None
    rows = [(number, [field.strip() for field in line.split(",")])
            for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if rows and not _all_numbers(rows[0][1][1:] or rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: no data rows; the data set is empty")
    width = len(rows[0][1])
    for number, fields in rows:
        if len(fields) != width:
            raise DataError(f"{path}, line {number}: {len(fields)} columns, but the first data row has {width}")
    return CsvTable(path, rows, width)


def csv_numbers(table: CsvTable, first_column: int) -> np.ndarray:
    """The columns from ``first_column`` on (0-based) as a float64 matrix; DataError at the first non-number."""
    require(len(table.rows) * (table.width - first_column) * 8, f"{table.path} as float64", _SMALLER)
    lines = [",".join(fields[first_column:]) for _, fields in table.rows]
    try:
        return np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError as exc:
        for number, fields in table.rows:
            for column, field in enumerate(fields[first_column:], first_column + 1):
                if not _all_numbers([field]):
                    raise DataError(f"{table.path}, line {number}, column {column}: {field!r} is not a number") \
                        from None
        raise DataError(f"{table.path}: cannot read as numbers: {' '.join(str(exc).split())}") from None


def csv_samples(table: CsvTable, n_inputs: int) -> np.ndarray:
    """The samples of a CSV file for a network of ``n_inputs``: rows of that many features, or of a
    label followed by them (the file ``train`` read), told apart by the number of columns."""
    if table.width == n_inputs + 1:
        return csv_numbers(table, 1)
    if table.width == n_inputs:
        return csv_numbers(table, 0)
    raise DataError(f"{table.path}: {table.width} columns, but the model takes {n_inputs} inputs: give rows of "
                    f"{n_inputs} features, or of a label and {n_inputs} features")


def _read_csv(path: Path, answers=None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels (or ``answers``' targets) from a CSV file (label first), skipping a header row."""
    table = read_csv(path)
    if table.width < 2:
        raise DataError(f"{path}: one column only; put the label in the first column and the features after it")
    labels = [fields[0] for _, fields in table.rows]
    y = np.array(labels, dtype=np.float64) if _all_numbers(labels) else np.array(labels, dtype=str)
    return csv_numbers(table, 1), (answers or _labels)(y, f"{path}, column 1")


def _all_numbers(fields: list[str]) -> bool:
    try:
        for field in fields:
            float(field)
    except ValueError:
        return False
    return True


def _features(X: np.ndarray, where: str) -> np.ndarray:
    """Numeric features as float64 rows; more than two dimensions are flattened per sample."""
    if X.dtype.kind not in "biuf":
        raise DataError(f"{where} has dtype {X.dtype}, not numbers")
    if X.ndim < 2:
        raise DataError(f"{where} must be 2-D (samples, features), got shape {X.shape}")
    if len(X) == 0:
        raise DataError(f"{where} has no samples (shape {X.shape}); give it at least one")
    if X.size == 0:
        raise DataError(f"{where} has no features (shape {X.shape}); give each sample at least one value")
    require(X.size * 8, f"{where} as float64", _SMALLER)
    return X.reshape(len(X), -1).astype(np.float64)


def _targets(y: np.ndarray, where: str) -> np.ndarray:
    """A regression network's targets: finite numbers, one per sample (or one row per sample), as float64."""
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where} must hold numbers to regress on, not {y.dtype}; for class labels leave out "
                        f"--task regression")
    if y.ndim not in (1, 2):
        raise DataError(f"{where} must be 1-D (one target per sample) or 2-D (samples, targets), got shape {y.shape}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise DataError(f"{where} contains NaN or infinite targets; clean them first")
    return y


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    """Labels as written: int64 for whole numbers (checked before converting), else strings."""
    if y.ndim != 1:
        raise DataError(f"{where} must be 1-D (one label per sample), got shape {y.shape}")
    if y.dtype.kind == "U":
        if (np.char.str_len(y) == 0).any():
            raise DataError(f"{where}: an empty label; every sample needs its class")
        return y
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where} has dtype {y.dtype}; labels must be whole numbers or strings")
    if y.size == 0:
        return y.astype(np.int64)
    if y.dtype.kind == "u" and y.max() >= 2**63:
        raise DataError(f"{where}: label {int(y.max())} is too large for a whole-number label; "
                        f"give each class a smaller number, or a name")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise DataError(f"{where}: label {float(y[bad][0]):g} is not a whole number; labels are classes, "
                            f"as whole numbers (1, 2, 3) or words")
        too_large = np.abs(y) >= 2.0**63
        if too_large.any():
            raise DataError(f"{where}: label {float(y[too_large][0]):g} is too large for a whole-number label; "
                            f"give each class a smaller number, or a name")
    return y.astype(np.int64)
