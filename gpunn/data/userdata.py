"""The user's own data: NumPy ``.npz`` archives and delimited text files (``.csv``, ``.tsv``, ``.txt``).

``.npz``: arrays ``X`` (samples in rows; more than two dimensions are flattened
per sample) and ``y`` (one label per sample), optionally ``X_test`` and ``y_test``.
It is read by :mod:`gpunn.safe_npz`, never by ``np.load``: arrays of Python objects
are refused rather than unpickled, and broken or oversized archives are refused before
anything is inflated.

Text files: one sample per row, fields separated by commas, semicolons or tabs (found by
:func:`find_delimiter`; quoted as Python's :mod:`csv` module and pandas write them), an
optional header row naming the columns.  One column is the label, the others are the
numeric features.  Which column (:func:`choose_label`): the one given (``label``: a header
name or a 1-based number; ``--label`` on the command line), else the column named
``label``, ``target``, ``class``, ``y`` or ``species`` (any case), else the only column that
does not hold numbers, else the first.  So the CSV pandas writes from a scikit-learn frame
(``target`` last) and a file with the label first both read without options.  What was
taken is in :attr:`UserData.label`; :attr:`UserData.warnings` says when a column looks like
a row counter (0, 1, 2, ...) or the label has about as many values as there are rows.
No missing values.  :func:`read_csv` and :func:`csv_samples` are also what ``gpunn predict``
reads with, so the file ``train`` read is one ``predict`` and ``evaluate`` read too.

For a regression network (``task="regression"``, ``gpunn train --task regression``) the
first column, or ``y``, holds the float targets instead (``y`` of a ``.npz`` may have
several columns): finite numbers, checked by :func:`_targets`.

Labels are kept as written: whole numbers of any values (floats such as ``3.0`` are
accepted, checked before they are converted) or strings; the network maps them to its
classes (:mod:`gpunn.nn.labels`).  Features are only cast to float64 here; the scaling
that suits a network is fitted by training and kept in the model
(:mod:`gpunn.nn.preprocessing`).  Without a test set, a fraction of the samples
(``test_split``, default 0.2; 0 keeps every sample for training and makes no test set) is
held out by a fixed, seeded permutation, so the same file always splits the same way.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gpunn.errors import DataError, option_name
from gpunn.files import open_input
from gpunn.memory import require
from gpunn.safe_npz import Hints, NpzReader, shown_names

DEFAULT_TEST_SPLIT = 0.2
SPLIT_SEED = 20260102
ZIP_START = b"PK"  # local file header, or end of central directory for an empty archive
NPY_START = b"\x93NUMPY"
PICKLE_START = b"\x80"  # pickle protocols 2 and later
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
#: Header names taken for the label column when no label is given (compared in any case).
LABEL_NAMES = ("label", "target", "class", "y", "species")
#: The field separators recognised, in the order they are preferred when several fit every sampled line.
DELIMITERS = ("\t", ";", ",")
#: How many lines decide the delimiter, and how many data rows which columns hold numbers.
SNIFF_LINES = 20
SNIFF_ROWS = 100

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


TASKS = ("classification", "regression")


def load_user_arrays(path: str | Path, test_split: float | None = None, task: str = "classification",
                     label=None) -> "UserData":
    """A ``.npz`` or delimited text file's arrays, split when it has no test set, with what its columns said.

    ``task="regression"`` reads float targets where classification reads labels.  ``label``
    (text files only): where the label (or target) is, a header name or a 1-based column
    number (or a :class:`LabelColumn` a model kept); see :func:`choose_label`.
    """
    path = Path(path)
    answers = _targets if task == "regression" else _labels
    if path.suffix.lower() == ".npz":
        if label is not None and not isinstance(label, LabelColumn):
            raise DataError(f"{path}: an .npz file keeps its labels in y, so {option_name('label', '--label')} "
                            f"applies only to .csv, .tsv and .txt files; drop it")
        X, y, tests = _read_npz(path, answers)
        names, column, warnings = None, None, []
    else:
        X, y, names, column, warnings = _read_csv(path, label, task)
        tests = None
    if len(X) != len(y):
        raise DataError(f"{path}: {len(X)} samples but {len(y)} labels; they must match")
    if tests is not None:
        if test_split is not None:
            raise DataError(f"{path}: has its own X_test and y_test, so a test split does not apply; drop it")
        return UserData(X, y, *tests)
    arrays = split(X, y, DEFAULT_TEST_SPLIT if test_split is None else test_split, path)
    return UserData(*arrays, names, column, tuple(warnings))


def split(X: np.ndarray, y: np.ndarray, fraction: float, source: str | Path) -> Arrays:
    """Hold out ``round(fraction * n)`` samples, chosen by a permutation seeded with :data:`SPLIT_SEED`;
    a fraction of 0 holds out none (an empty test set)."""
    if not 0 <= fraction < 1:
        raise DataError(f"{source}: the test split must be a fraction from 0 (no test set) up to 1 (exclusive), "
                        f"got {fraction:g}")
    if len(y) == 0:
        raise DataError(f"{source}: the data set is empty; give it at least one sample")
    if fraction == 0:
        return X, y, X[:0], y[:0]
    n_test = round(len(y) * fraction)
    if n_test in (0, len(y)):
        raise DataError(
            f"{source}: {len(y)} samples are too few to hold out {fraction:g} of them for testing and keep some "
            f"for training; add samples or change the test split (0 trains on all of them)"
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
                    f"{path}: no array named {' or '.join(missing)} (found: {shown_names(sorted(names)) or 'none'}); "
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
    """A delimited text file's data rows, split into fields.

    ``rows`` is a list of (line number, fields); ``header`` the first row's fields when it
    names the columns, else None; ``delimiter`` the separator found (:func:`find_delimiter`).
    """

    path: Path
    rows: list
    width: int
    header: list | None = None
    delimiter: str = ","


class LabelColumn(NamedTuple):
    """Where the label is: ``index`` (0-based), the header's ``name`` for it (or None), and why it was taken."""

    index: int
    name: str | None = None
    reason: str = "given"

    def describe(self) -> str:
        """``column 5 ('species')``, as messages name it (numbered from 1, as --label counts)."""
        return f"column {self.index + 1}" + (f" ({self.name!r})" if self.name else "")

    def to_json(self) -> dict:
        """What a model file keeps (``label_column``): the 1-based column and its header name."""
        return {"column": self.index + 1, "name": self.name}

    @classmethod
    def from_json(cls, value: dict) -> "LabelColumn":
        return cls(value["column"] - 1, value.get("name"), "the model's")


class UserData(NamedTuple):
    """A user file's arrays, split, with what the file said about its columns."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: list | None = None
    label: LabelColumn | None = None
    warnings: tuple = ()


def read_csv(path) -> CsvTable:
    """The data rows of a delimited text file (blank lines and a header skipped), every row as wide as the first.

    The separator is a comma, semicolon or tab, found by :func:`find_delimiter`; fields may
    be quoted as Python's :mod:`csv` module (and pandas) write them.  The first row is a
    header when it has a field that is not a number where the next row has a number (a
    header above numeric features), or when none of its fields is a number.
    """
    path = Path(path)
    with open_input(path, DataError) as file:
        raw = file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; give a text file of comma-, semicolon- or tab-separated "
                        f"values") from None
    delimiter = find_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = []
    try:
        for fields in reader:
            if fields and any(field.strip() for field in fields):
                rows.append((reader.line_num, [field.strip() for field in fields]))
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: {exc}; check the quotes on that line") from None
    header = None
    if rows and _is_header(rows[0][1], rows[1][1] if len(rows) > 1 else None):
        header, rows = rows[0][1], rows[1:]
    if not rows:
        raise DataError(f"{path}: no data rows; the data set is empty")
    width = len(rows[0][1])
    if header is not None and len(header) != width:
        raise DataError(f"{path}, line 1: the header names {len(header)} columns, but the first data row has "
                        f"{width}")
    for number, fields in rows:
        if len(fields) != width:
            raise DataError(f"{path}, line {number}: {len(fields)} columns, but the first data row has {width}")
    return CsvTable(path, rows, width, header, delimiter)


def find_delimiter(text: str) -> str:
    """The field separator of a delimited text: the first of tab, semicolon and comma that splits every one
    of the first :data:`SNIFF_LINES` non-blank lines into the same number (two or more) of fields.

    Where none does (a ragged file, or a single column), the one that splits the first line
    into the most fields, so that the error names the line that differs; a comma when no
    separator appears at all.
    """
    lines = []
    for line in text.splitlines():
        if line.strip():
            lines.append(line)
            if len(lines) == SNIFF_LINES:
                break
    widths = {}
    for delimiter in DELIMITERS:
        try:
            widths[delimiter] = {len(fields) for fields in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            widths[delimiter] = set()
    for delimiter, found in widths.items():
        if len(found) == 1 and found.pop() > 1:
            return delimiter
    first = lines[0] if lines else ""
    counts = {delimiter: first.count(delimiter) for delimiter in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _is_header(first: list, second: list | None) -> bool:
    numbers = [_is_number(field) for field in first]
    if not any(numbers):
        return True
    if second is None or len(second) != len(first):
        return False
    return any(not is_number and _is_number(below) for is_number, below in zip(numbers, second))


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def choose_label(table: CsvTable, label=None) -> LabelColumn:
    """The label column of ``table``: as given (a header name or a 1-based number, or a LabelColumn a model
    kept), else the column named like a label (:data:`LABEL_NAMES`), else the only column that does not
    hold numbers, else the first."""
    path, width, header = table.path, table.width, table.header
    option = option_name("label", "--label")
    if isinstance(label, LabelColumn):  # a model's: its name where the file has one, else its place
        if label.name is not None and header is not None and label.name in header:
            return LabelColumn(header.index(label.name), label.name, label.reason)
        label = label.index + 1
    if isinstance(label, str) and label.isascii() and label.strip().isdigit():
        label = int(label)
    if isinstance(label, int) and not isinstance(label, bool):
        if not 1 <= label <= width:
            raise DataError(f"{path}: {option} {label}: the file has {width} columns; give a number from 1 to "
                            f"{width}{' or a name from its header' if header else ''}")
        return LabelColumn(label - 1, header[label - 1] if header else None, "given")
    if label is not None:
        name = str(label)
        if header is None:
            raise DataError(f"{path}: {option} {name!r}: the file has no header row naming its columns; give "
                            f"the label's column number (1 to {width})")
        matches = [i for i, field in enumerate(header) if field == name] or \
                  [i for i, field in enumerate(header) if field.lower() == name.lower()]
        if len(matches) != 1:
            shown = ", ".join(header[:12]) + (", ..." if width > 12 else "")
            problem = "no column is" if not matches else f"{len(matches)} columns are"
            raise DataError(f"{path}: {problem} named {name!r} (the columns: {shown}); give {option} a name from "
                            f"the header or a column number from 1 to {width}")
        return LabelColumn(matches[0], header[matches[0]], "given")
    if header is not None:
        for i, field in enumerate(header):
            if field.lower() in LABEL_NAMES:
                return LabelColumn(i, field, "named like a label")
    sample = [fields for _, fields in table.rows[:SNIFF_ROWS]]
    text = [i for i in range(width) if not all(_is_number(fields[i]) for fields in sample)]
    if len(text) == 1 and width > 1:
        return LabelColumn(text[0], header[text[0]] if header else None, "the only column that is not numbers")
    return LabelColumn(0, header[0] if header else None, "the first column")


def csv_numbers(table: CsvTable, columns) -> np.ndarray:
    """The given columns (0-based) as a float64 matrix; DataError naming the first field that is not a number."""
    columns = list(columns)
    require(len(table.rows) * len(columns) * 8, f"{table.path} as float64", _SMALLER)
    lines = [",".join(fields[i] for i in columns) for _, fields in table.rows]
    try:
        return np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None).reshape(
            len(lines), len(columns))
    except ValueError as exc:
        for number, fields in table.rows:
            for column in columns:
                if not _is_number(fields[column]):
                    decimal_comma = _is_number(fields[column].replace(",", ".", 1))
                    hint = f" (a decimal comma? write {fields[column].replace(',', '.', 1)})" if decimal_comma else ""
                    raise DataError(f"{table.path}, line {number}, column {column + 1}: {fields[column]!r} is not "
                                    f"a number{hint}; features must be numbers") from None
        raise DataError(f"{table.path}: cannot read as numbers: {' '.join(str(exc).split())}") from None


def csv_samples(table: CsvTable, n_inputs: int, label=None) -> np.ndarray:
    """The samples of a delimited file for a network of ``n_inputs``: rows of that many features, or of
    those and a label column (the file ``train`` read; where the label is: ``label``, see
    :func:`choose_label`), told apart by the number of columns."""
    if table.width == n_inputs + 1:
        skip = choose_label(table, label).index
        return csv_numbers(table, [i for i in range(table.width) if i != skip])
    if table.width == n_inputs:
        return csv_numbers(table, range(table.width))
    raise DataError(f"{table.path}: {table.width} columns, but the model takes {n_inputs} inputs: give rows of "
                    f"{n_inputs} features, or of a label and {n_inputs} features")


def _read_csv(path: Path, label=None, task: str = "classification") -> tuple:
    """Features, labels (a regression's float targets), feature names, the label column and warnings about the
    columns, from a delimited file."""
    table = read_csv(path)
    if table.width < 2:
        raise DataError(f"{path}: one column only, so there is no label and feature to tell apart; separate the "
                        f"fields with commas, semicolons or tabs (one sample per line, a label and its features)")
    column = choose_label(table, label)
    features = [i for i in range(table.width) if i != column.index]
    labels = [fields[column.index] for _, fields in table.rows]
    hint = f"the label is {column.describe()} ({column.reason}); {option_name('label', '--label')} chooses another"
    y = np.array(labels, dtype=np.float64 if _all_numbers(labels) else str)
    if task == "regression":
        y = _targets(y, f"{path}, {column.describe()} ({column.reason}; {option_name('label', '--label')} chooses "
                        f"another)")
    else:
        y = _labels(y, f"{path}, {column.describe()}", hint)
    X = csv_numbers(table, features)
    names = [table.header[i] for i in features] if table.header else None
    return X, y, names, column, _column_warnings(path, X, y, names, features, column, task)


def _column_warnings(path, X: np.ndarray, y: np.ndarray, names, features: list, column: LabelColumn,
                     task: str = "classification") -> list:
    """Warnings about columns that look like no label or no feature: counters (ids) and one class per row
    (a regression's targets are all different by nature: only its features are looked at)."""
    found = []
    option = option_name("label", "--label")
    n = len(y)
    if task == "classification" and n >= 4 and len(np.unique(y)) * 2 > n:
        found.append(f"{path}: the label, {column.describe()}, has {len(np.unique(y))} different values in {n} "
                     f"rows, so most classes have one sample and nothing to learn from; if the label is another "
                     f"column, give {option} NAME or NUMBER")
    if task == "classification" and n >= 4 and y.dtype.kind in "iu" and _counts_up(y):
        found.append(f"{path}: the label, {column.describe()}, counts {y[0]}, {y[1]}, {y[2]}, ... like a row number "
                     f"(an id); give {option} with the column that holds the classes")
    for j, index in enumerate(features):
        if n >= 4 and _counts_up(X[:, j]):
            name = f" ({names[j]!r})" if names else ""
            found.append(f"{path}: column {index + 1}{name} counts {X[0, j]:g}, {X[1, j]:g}, {X[2, j]:g}, ... like "
                         f"a row number (an id); as a feature it tells the network nothing about new samples: "
                         f"remove it from the file")
    return found


def _counts_up(values: np.ndarray) -> bool:
    """Whether values are 0, 1, 2, ... or 1, 2, 3, ... in file order."""
    start = values[0]
    return start in (0, 1) and bool(np.array_equal(values, np.arange(start, start + len(values))))


def _all_numbers(fields: list[str]) -> bool:
    return all(_is_number(field) for field in fields)


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


def _labels(y: np.ndarray, where: str, hint: str = "") -> np.ndarray:
    """Labels as written: int64 for whole numbers (checked before converting), else strings.

    ``hint`` is added to the error about a label that is no whole number (a CSV's
    label column may be the wrong one: it says which column was taken and how to choose).
    """
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
                            f"as whole numbers (1, 2, 3) or words{'; ' + hint if hint else ''}")
        too_large = np.abs(y) >= 2.0**63
        if too_large.any():
            raise DataError(f"{where}: label {float(y[too_large][0]):g} is too large for a whole-number label; "
                            f"give each class a smaller number, or a name")
    return y.astype(np.int64)
