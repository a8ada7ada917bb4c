"""Fuzz the ``gpunn`` command line with hostile inputs, one separate process per case.

Families of generated cases, each run as ``python -m gpunn ...`` in its own folder:

``idx``      MNIST-format folders (``train --dataset mnist --data-dir``) with cut, flipped,
             oversized, swapped, non-regular or gzip-bombed files;
``npz``      the user's ``.npz`` data: arrays of every dtype and shape, labels out of
             range, and archives with broken zip structure, foreign compression methods,
             forged ``.npy`` headers and declared sizes far beyond the data;
``csv``      the user's ``.csv`` data: headers, odd numbers, ragged rows, bad bytes;
``npy``      ``predict`` inputs (``.npy``/``.csv``) of the wrong kind, shape or header;
``model``    model files with metadata fields of the wrong type or range, hostile JSON,
             poisoned arrays and broken archives, given to evaluate, predict, plot and
             ``train --resume``;
``options``  ``train`` option combinations: absurd numbers, odd digits, unusable and
             clashing output paths;
``image``    ``predict`` images: every mode, cut or flipped files, forged sizes and a
             144-megapixel decompression bomb;
``training`` runs that get as far as training and saving over an existing model: in-range
             but extreme learning rates, momenta and weight decays (up to and past the
             divergence bound), batch sizes and layers, features scaled up to 3e38.

Each case runs under a wall-clock timeout and an address-space limit
(``resource.setrlimit`` in the child) and ends in one outcome:

``ok``             exit 0, no raw warning, every output it wrote loadable;
``clean error``    exit 1 or 2 with exactly one ``Error:`` line and no traceback;
``traceback``      a Python traceback on stderr;
``hang``           the timeout ran out;
``raw warning``    a Python warning (``file:line: SomethingWarning:``) on stderr;
``unclean exit``   any other status or error shape (a signal, no ``Error:`` line, ...);
``lost output``    an output that existed before is neither untouched nor a loadable
                   model afterwards, a data file was changed, or a run that succeeded
                   left its ``--output`` unloadable;
``harness error``  the case generator itself failed (a bug here, not in gpunn).

A summary table (counts per family and outcome) goes to stdout; every failing case is
kept under ``WORK/failures/`` with its files and a ``case.json`` to replay it.  The
cases are a pure function of ``--seed``.  Nothing here uses the network.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

OUTCOMES = ("ok", "clean error", "traceback", "hang", "raw warning", "unclean exit", "lost output", "harness error")
FAILURES = OUTCOMES[2:]
RAW_WARNING = re.compile(r"^.*:\d+: \w*Warning: ", re.MULTILINE)
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass
class Case:
    """One generated run: its argv (after ``python -m gpunn``) and the files to watch."""

    family: str
    label: str
    argv: list
    #: files that must stay byte-identical ("data") or else be loadable models ("model")
    protected: dict = field(default_factory=dict)
    #: a model file that must be loadable when the run exits 0
    output: str | None = None


# -- shared material, made once per campaign ---------------------------------------------------------------
class Shared:
    """Good files every family mutates: trained models, an MNIST-like folder, bomb members."""

    def __init__(self, root: Path, env: dict):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(7)
        self.tiny_X = rng.random((30, 4))
        self.tiny_y = rng.integers(0, 3, 30)
        np.savez(root / "tiny.npz", X=self.tiny_X, y=self.tiny_y)
        self.digits_model = root / "digits.npz"
        self.tiny_model = root / "tinymodel.npz"
        for argv in (["train", "--epochs", "2", "--layers", "64,8,10", "--momentum", "0.5", "--batch-size", "50",
                      "--output", str(self.digits_model), "--quiet"],
                     ["train", "--dataset", str(root / "tiny.npz"), "--epochs", "2", "--layers", "4,3,3",
                      "--output", str(self.tiny_model), "--quiet"]):
            done = subprocess.run([sys.executable, "-m", "gpunn", *argv], env=env, capture_output=True, text=True)
            if done.returncode:
                raise click.ClickException(f"cannot make the shared model: {done.stderr.strip()}")
        self.digits_bytes = self.digits_model.read_bytes()
        with np.load(self.digits_model, allow_pickle=False) as archive:
            self.digits_arrays = {name: archive[name] for name in archive.files}
        self.digits_meta = json.loads(self.digits_arrays["metadata"].tobytes())
        self.mnist = [rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), rng.integers(0, 10, 40, dtype=np.uint8),
                      rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8)]
        # one gzip member of 1 GiB of zeros (about 1 MB compressed), made by streaming
        squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = bytes(1 << 24)
        self.bomb_member = b"".join([squeeze.compress(zeros) for _ in range(64)] + [squeeze.flush()])
        # the IDAT payload of a 12000 x 12000 grey PNG of zeros (144 megapixels)
        row = bytes(12001)
        squeeze = zlib.compressobj(9)
        self.png_bomb_idat = b"".join([squeeze.compress(row) for _ in range(12000)] + [squeeze.flush()])


# -- byte-level helpers ------------------------------------------------------------------------------------
def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_with_header(header: str, data: bytes, version: int = 1) -> bytes:
    """A .npy file with a forged header text (padded like NumPy's) and raw data."""
    text = header.encode("latin1", "replace")
    if version == 1 and len(text) > 0xFFFF:  # format 1 has a 16-bit header length
        version = 2
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(text)) + text + data


FORGED_HEADERS = [
    "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 99999), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 4), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4)",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), 'x': 1}",
    "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<c16', 'fortran_order': False, 'shape': (3, 4), }",
    "{'descr': '<U3', 'fortran_order': False, 'shape': (3, 4), }",
    "{'descr': '<f8', 'fortran_order': 1, 'shape': (3, 4), }",
    "{'descr': '<f8', 'fortran_order': True, 'shape': 12, }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3.5, 4), }",
    "{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (" + "(" * 200 + ")" * 200 + "), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (1" + "0" * 5000 + ",), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }" + " " * 70000,
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), } \"",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), } '''",
    r"""{'descr': 'f8\", 'fortran_order': False, 'shape': (3, 4), }""",
    "{'descr': '>i8', 'fortran_order': False, 'shape': (), }",
    "{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<V8', 'fortran_order': False, 'shape': (3,), }",
    "[1, 2, 3]",
    "",
    "\x00\xff\xfe",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }\n" * 3,
]


def forged_npy(rng: random.Random, n_values: int = 12) -> bytes:
    header = rng.choice(FORGED_HEADERS)
    data = np.random.default_rng(rng.randrange(1 << 30)).random(rng.choice([0, 3, n_values, 1000])).tobytes()
    return npy_with_header(header, data, rng.choice([1, 1, 2, 3, 9]))


def zip_bytes(members: dict, rng: random.Random, compression=None) -> bytes:
    """A zip of ``{name: bytes}``; each member stored, deflated, bzip2'd or lzma'd at random."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            method = compression if compression is not None else rng.choice(
                [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buffer.getvalue()


def mutate_zip(data: bytes, rng: random.Random) -> bytes:
    """Break a zip archive the way hostile files do: at the structure, not just anywhere."""
    data = bytearray(data)
    kind = rng.choice(["truncate", "flip", "method", "encrypt", "size", "csize", "crc", "cdir", "tail", "prepend"])
    central = data.rfind(b"PK\x01\x02")
    if kind == "truncate":
        return bytes(data[: rng.randrange(len(data))])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind in ("method", "encrypt", "size", "csize", "crc") and central >= 0:
        # patch every local and central header alike
        for sig, offsets in ((b"PK\x03\x04", {"method": 8, "encrypt": 6, "crc": 14, "csize": 18, "size": 22}),
                             (b"PK\x01\x02", {"method": 10, "encrypt": 8, "crc": 16, "csize": 20, "size": 24})):
            start = 0
            while (start := data.find(sig, start)) >= 0:
                at = start + offsets[kind]
                if kind == "method":
                    data[at:at + 2] = struct.pack("<H", rng.choice([1, 6, 9, 12, 14, 95, 98, 99, 65535]))
                elif kind == "encrypt":
                    data[at] |= 1
                else:
                    data[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 30]))
                start += 4
    elif kind == "cdir" and central >= 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(central, len(data))] = rng.randrange(256)
    elif kind == "tail":
        data += os.urandom(rng.randint(1, 64))
    elif kind == "prepend":
        data[:0] = os.urandom(rng.randint(1, 64))
    return bytes(data)


def special_file(path: Path, kind: str) -> None:
    """Make ``path`` a non-regular thing: a FIFO, a folder, /dev/zero, a dangling or looping link."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "empty":
        path.write_bytes(b"")


SPECIAL = ["fifo", "folder", "devzero", "dangling", "loop", "empty"]


# -- families ---------------------------------------------------------------------------------------------
def idx_file(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def gen_idx(rng: random.Random, work: Path, shared: Shared) -> Case:
    folder = work / "mnist"
    folder.mkdir()
    arrays = [a.copy() for a in shared.mnist]
    raw = {name: idx_file(array) for name, array in zip(MNIST_FILES, arrays)}
    gz = rng.random() < 0.7
    victim = rng.choice(MNIST_FILES)
    kind = rng.choice(["truncate", "flip", "header", "dims", "type", "bomb", "bomb-declared", "swap", "special",
                       "garbage-gz", "not-gz", "count", "other-type", "extra-member", "float-nan", "trailing"])
    content = bytearray(raw[victim])
    compress_victim = gz
    if kind == "truncate":
        content = content[: rng.randrange(len(content))]
    elif kind == "flip":
        for _ in range(rng.randint(1, 6)):
            span = 32 if rng.random() < 0.6 else len(content)  # mostly the header
            content[rng.randrange(min(len(content), span))] ^= 1 << rng.randrange(8)
    elif kind == "header":
        ndim = content[3]
        content[4:4 + 4 * ndim] = struct.pack(f">{ndim}I", *[rng.choice([0, 1, 50, 60000, 0xFFFFFFFF, 1 << 24])
                                                                for _ in range(ndim)])
    elif kind == "dims":
        content[3] = rng.choice([0, 2, 4, 9, 255])
    elif kind == "type":
        content[2] = rng.choice([0x00, 0x07, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0xFF])
    elif kind == "count":
        count = struct.unpack(">I", content[4:8])[0]
        content[4:8] = struct.pack(">I", count + rng.choice([-1, 1, 1000]))
    elif kind == "other-type":
        code = rng.choice([0x09, 0x0B, 0x0C, 0x0D, 0x0E])
        content = bytearray(idx_file(arrays[MNIST_FILES.index(victim)], code))
    elif kind == "float-nan":
        array = arrays[MNIST_FILES.index(victim)].astype(np.float32)
        array.flat[0] = np.nan
        content = bytearray(idx_file(array, 0x0D))
    elif kind == "trailing":
        content += os.urandom(rng.randint(1, 100))
    elif kind == "swap":
        other = rng.choice(MNIST_FILES)
        content = bytearray(raw[other])
    payload = bytes(content)
    if compress_victim and kind not in ("special", "not-gz"):
        payload = gzip.compress(payload, mtime=0)
        if kind == "garbage-gz":
            payload = payload[:10] + os.urandom(rng.randint(1, 200))
        if kind == "extra-member":
            payload += gzip.compress(os.urandom(rng.randint(1, 50)))
    if kind == "bomb":
        # a valid file followed by gzip members of 1 GiB of zeros each
        payload = gzip.compress(raw[victim], mtime=0) + shared.bomb_member * rng.randint(1, 5)
        compress_victim = True
    elif kind == "bomb-declared":
        # the header declares far more images than the stream holds, and the stream is a bomb
        head = bytearray(raw[victim][:16])
        head[4:8] = struct.pack(">I", 0xFFFFFF)
        payload = gzip.compress(bytes(head), mtime=0) + shared.bomb_member
        compress_victim = True
    for name, data in raw.items():
        on_disk = name if (compress_victim if name == victim else gz) else name.removesuffix(".gz")
        path = folder / on_disk
        if name == victim:
            if kind == "special":
                special_file(path, rng.choice(SPECIAL))
            elif kind == "not-gz":
                path.write_bytes(data)  # raw bytes under a .gz name
            else:
                path.write_bytes(payload)
        else:
            path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    argv = ["train", "--dataset", "mnist", "--data-dir", "mnist", "--epochs", "1", "--layers", ",8,",
            "--batch-size", "16", "--quiet", "--json"]
    return Case("idx", f"{kind} {victim}{' gz' if compress_victim else ''}", argv)


DTYPES = ["f8", "f4", "f2", "i1", "i8", "u1", "u8", "?", "c16", "O", "U3", "S2", "M8[s]", "V4", "rec"]


def random_array(rng: random.Random, shape, dtype: str):
    gen = np.random.default_rng(rng.randrange(1 << 30))
    if dtype == "O":
        return np.array([None] * int(np.prod(shape)), dtype=object).reshape(shape)
    if dtype == "rec":
        return np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i2")])
    if dtype in ("U3", "S2", "M8[s]", "V4"):
        return np.zeros(shape, dtype=dtype)
    values = gen.random(shape) * rng.choice([1, 10, 1e20, 1e300])
    if rng.random() < 0.15 and values.size:
        values.flat[gen.integers(values.size)] = rng.choice([np.nan, np.inf, -np.inf, -1.0, 1e20])
    if dtype == "c16":
        return values + 1j * values
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def random_labels(rng: random.Random, n: int):
    kind = rng.choice(["ok", "ok", "float", "halves", "huge", "negative", "nan", "uint64", "2d", "bool", "object",
                       "int64max", "complex"])
    gen = np.random.default_rng(rng.randrange(1 << 30))
    base = gen.integers(0, 3, n)
    if kind == "float":
        return base.astype(np.float64)
    if kind == "halves":
        return base + 0.5
    if kind == "huge":
        return np.full(n, rng.choice([1e20, 1e300, 2.0 ** 63, 2.0 ** 64, 1e10, 3e9]))
    if kind == "negative":
        return base - 1
    if kind == "nan":
        out = base.astype(np.float64)
        if n:
            out[0] = rng.choice([np.nan, np.inf])
        return out
    if kind == "uint64":
        return np.full(n, rng.choice([2 ** 63, 2 ** 64 - 1, 2 ** 40]), dtype=np.uint64)
    if kind == "int64max":
        return np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    if kind == "2d":
        return base.reshape(n, 1)
    if kind == "bool":
        return base.astype(bool)
    if kind == "object":
        return np.array([None] * n, dtype=object)
    if kind == "complex":
        return base.astype(np.complex128)
    return base


def user_npz_members(rng: random.Random) -> tuple[dict, str]:
    n = rng.choice([0, 1, 2, 5, 20, 30])
    features = rng.choice([0, 1, 4, 4, 4])
    dtype = rng.choice(DTYPES[:8] * 3 + DTYPES[8:])
    shape = rng.choice([(n, features), (n, features), (n,), (n, 2, 2), (), (0, 0)])
    members = {"X.npy": npy_bytes(random_array(rng, shape, dtype)),
               "y.npy": npy_bytes(random_labels(rng, n if rng.random() < 0.9 else n + 1))}
    label = f"X {dtype}{shape}"
    if rng.random() < 0.3:
        m = rng.choice([1, 3, 5])
        members["X_test.npy"] = npy_bytes(random_array(rng, (m, features), rng.choice(DTYPES[:8])))
        members["y_test.npy"] = npy_bytes(random_labels(rng, m))
        if rng.random() < 0.2:
            del members[rng.choice(["X_test.npy", "y_test.npy"])]
        label += " +test"
    if rng.random() < 0.25:
        members[rng.choice(list(members))] = forged_npy(rng, n * max(features, 1))
        label += " forged"
    if rng.random() < 0.05:
        members = {"X": b"raw", "y.npy": members["y.npy"]}
        label += " bare name"
    return members, label


def gen_npz(rng: random.Random, work: Path, shared: Shared) -> Case:
    path = work / "data.npz"
    kind = rng.choice(["arrays"] * 5 + ["zip"] * 4 + ["special", "pickle", "npy", "random", "bomb-size"])
    if kind == "special":
        what = rng.choice(SPECIAL)
        special_file(path, what)
        label = what
    elif kind == "pickle":
        import pickle

        path.write_bytes(pickle.dumps({"X": [1, 2]}))
        label = "pickle"
    elif kind == "npy":
        path.write_bytes(npy_bytes(np.zeros((3, 4))))
        label = "npy named npz"
    elif kind == "random":
        path.write_bytes(b"PK" + os.urandom(rng.randint(0, 300)))
        label = "PK + random"
    elif kind == "bomb-size":
        # a stored member whose .npy header declares a huge array
        members = {"X.npy": npy_with_header(rng.choice(FORGED_HEADERS[:2]), bytes(64)), "y.npy": npy_bytes(np.zeros(3))}
        path.write_bytes(zip_bytes(members, rng, zipfile.ZIP_STORED))
        label = "declared huge"
    else:
        members, label = user_npz_members(rng)
        data = zip_bytes(members, rng)
        if kind == "zip":
            data = mutate_zip(data, rng)
            label += " zip-mutated"
        path.write_bytes(data)
    argv = ["train", "--dataset", "data.npz", "--epochs", rng.choice(["1", "2"]), "--layers", ",4,", "--quiet"]
    if rng.random() < 0.3:
        argv += ["--test-split", rng.choice(["0.2", "0.5", "0.9", "0.01"])]
    return Case("npz", f"{kind}: {label}", argv, protected={"data.npz": "data"} if path.is_file() else {})


CSV_VALUES = ["0", "1", "2", "3.0", "1e20", "-1", "nan", "inf", "-inf", "1e400", "0x10", "", " 2 ", "1_0", "٣", "²",
              "1,5", "'1'", "\"1\"", "1e-400", "9" * 400, "2.5", "True", "-0", "+1", "1e308", "١٠"]


def gen_csv(rng: random.Random, work: Path, shared: Shared) -> Case:
    path = work / "data.csv"
    kind = rng.choice(["rows"] * 6 + ["bytes", "special", "empty-ish", "wide", "long-line"])
    label = kind
    if kind == "special":
        what = rng.choice(SPECIAL)
        special_file(path, what)
        label = what
    elif kind == "bytes":
        path.write_bytes(rng.choice([b"\xff\xfe1,2\n", b"1,2\x00,3\n", os.urandom(200), b"\xef\xbb\xbf0,1,2\n1,2,3\n"]))
    elif kind == "empty-ish":
        path.write_text(rng.choice(["", "\n\n", "a,b,c\n", " ", "\r\n", "#,#\n1,2\n"]))
    elif kind == "wide":
        path.write_text("\n".join(",".join(["1"] * rng.choice([2, 1000, 5000])) for _ in range(rng.randint(1, 20))))
    elif kind == "long-line":
        path.write_text("1," + "0." * 100000 + "\n")
    else:
        n, width = rng.randint(1, 30), rng.randint(1, 6)
        rows = []
        if rng.random() < 0.3:
            rows.append(",".join(rng.choice(["label", "x", "1", "nan", ""]) for _ in range(width)))
        gen = np.random.default_rng(rng.randrange(1 << 30))
        for _ in range(n):
            fields = [str(int(gen.integers(0, 3)))] + [f"{v:.3f}" for v in gen.random(width - 1)]
            if rng.random() < 0.3:
                fields[rng.randrange(len(fields))] = rng.choice(CSV_VALUES)
            if rng.random() < 0.05:
                fields.append("1")
            rows.append(",".join(fields))
            if rng.random() < 0.05:
                rows.append("")
        newline = rng.choice(["\n", "\r\n", "\r"])
        path.write_text(newline.join(rows) + rng.choice(["", newline]))
        label = f"rows n={n} width={width}"
    argv = ["train", "--dataset", "data.csv", "--epochs", "1", "--layers", ",4,", "--quiet"]
    if rng.random() < 0.3:
        argv += ["--test-split", rng.choice(["0.2", "0.5"])]
    return Case("csv", label, argv, protected={"data.csv": "data"} if path.is_file() else {})


def gen_npy(rng: random.Random, work: Path, shared: Shared) -> Case:
    model = rng.choice([shared.digits_model, shared.tiny_model])
    width = 64 if model == shared.digits_model else 4
    suffix = rng.choice([".npy"] * 4 + [".csv", ".txt", ""])
    path = work / f"input{suffix}"
    kind = rng.choice(["array"] * 4 + ["forged", "truncated", "special", "random", "pickle"])
    label = kind
    if kind == "array":
        dtype = rng.choice(DTYPES[:8] * 2 + DTYPES[8:])
        shape = rng.choice([(3, width), (width,), (0, 0), (0, width), (2, width + 1), (), (2, 2, width), (1, 1)])
        array = random_array(rng, shape, dtype)
        if rng.random() < 0.2:
            array = np.asfortranarray(array)
        label = f"{dtype}{shape}"
        if suffix == ".csv":
            if array.dtype.kind in "biufc" and array.ndim in (1, 2):
                np.savetxt(path, np.atleast_2d(array), delimiter=",", fmt="%s")
            else:
                path.write_text("1,2\nx,y\n")
        else:
            path.write_bytes(npy_bytes(array))
    elif kind == "forged":
        path.write_bytes(forged_npy(rng, 3 * width))
    elif kind == "truncated":
        data = npy_bytes(np.zeros((3, width)))
        path.write_bytes(data[: rng.randrange(len(data))])
    elif kind == "special":
        what = rng.choice(SPECIAL)
        special_file(path, what)
        label = what
    elif kind == "random":
        path.write_bytes(os.urandom(rng.randint(0, 500)))
    else:
        import pickle

        path.write_bytes(pickle.dumps([1, 2, 3]))
    argv = ["predict", str(model), path.name] + (["--json"] if rng.random() < 0.5 else [])
    return Case("npy", f"{suffix or 'nosuffix'} {label}", argv)


def json_value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(14)
    if choice == 0 or depth > 3:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.choice([0, 1, -1, 2 ** 31, 2 ** 63, 2 ** 64, 10 ** 30, 6.6e16])
    if choice == 2:
        return rng.choice([0.0, -0.0, 0.5, 1e-320, 1e300, 3.0, -3.0])
    if choice == 3:
        return rng.choice(["", "x", "digits", "sgd", "float32", "quadratic", "scaled", "\ud800", "a" * 1000,
                           "nosuch.npz", "data.csv", "../../etc/passwd", "mnist", "xor"])
    if choice == 4:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if choice == 5:
        keys = ["a", "lr", "loss", "epoch", ""]
        return {rng.choice(keys): json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if choice == 6:
        return [6.6e16, True]
    if choice == 7:
        return []
    if choice == 8:
        return {}
    if choice == 9:
        return float("nan")
    if choice == 10:
        return float("inf")
    if choice == 11:
        return rng.randint(0, 100)
    if choice == 12:
        return rng.random()
    return [rng.randint(0, 10) for _ in range(rng.randint(0, 5))]


FIELD_PATHS = [
    ("format",), ("format_version",), ("gpunn_version",), ("sizes",), ("sizes", 0), ("sizes", 1), ("loss",),
    ("init",), ("dtype",), ("seed",), ("epochs_done",), ("training",), ("training", "lr"),
    ("training", "batch_size"), ("training", "momentum"), ("training", "weight_decay"), ("optimizer",),
    ("optimizer", "lr"), ("optimizer", "momentum"), ("optimizer", "weight_decay"), ("optimizer", "name"),
    ("history",), ("history", "epoch"), ("history", "history"), ("history", "history", "loss"),
    ("history", "history", "val_loss"), ("history", "history", "seconds"), ("history", "params"),
    ("history", "params", "lr"), ("extra",), ("extra", "dataset"), ("extra", "data_dir"), ("extra", "test_split"),
    ("unknown",),
]


def set_path(meta: dict, path: tuple, value, delete: bool) -> None:
    target = meta
    for key in path[:-1]:
        if not isinstance(target, (dict, list)):
            return
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(target, dict) or (isinstance(target, list) and isinstance(path[-1], int) and path[-1] < len(target)):
        if delete and isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value


def gen_model(rng: random.Random, work: Path, shared: Shared) -> Case:
    path = work / "model.npz"
    arrays = {name: value.copy() for name, value in shared.digits_arrays.items()}
    meta = json.loads(json.dumps(shared.digits_meta))
    kind = rng.choice(["field"] * 6 + ["json", "arrays", "zip", "special", "history-key"])
    label = kind
    if kind in ("field", "history-key"):
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            where = rng.choice(FIELD_PATHS)
            delete = rng.random() < 0.2
            value = json_value(rng)
            if kind == "history-key":
                where, delete = ("history", "history", rng.choice(["loss", "accuracy", "val_loss", "val_accuracy",
                                                                   "seconds"])), True
            set_path(meta, where, value, delete)
            label += f" {'.'.join(map(str, where))}={'<deleted>' if delete else repr(value)[:40]}"
        arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    elif kind == "json":
        text = json.dumps(meta)
        variant = rng.randrange(9)
        meta_text = [
            lambda: ("[" * 100000 + "]" * 100000).encode(),
            lambda: text.replace('"extra": {', '"extra": ' + "[" * 100000 + "]" * 100000 + ', "x": {').encode(),
            lambda: text.replace('"seed": 0', '"seed": 1' + "0" * 5000).encode(),
            lambda: text.replace('"seed": 0', '"seed": 1e400').encode(),
            lambda: text[: rng.randrange(len(text))].encode(),
            lambda: b"\xff\xfe" + text.encode(),
            lambda: text.replace('"loss": "quadratic"', '"loss": NaN').encode(),
            lambda: ("\ufeff" + text).encode(),
            lambda: text.replace("{", '{"format": "gpunn-model", ', 1).encode(),
        ][variant]()
        arrays["metadata"] = np.frombuffer(meta_text, dtype=np.uint8)
        label += f" variant {variant}"
    elif kind == "arrays":
        variant = rng.randrange(10)
        params = arrays["params"]
        if variant == 0:
            params[rng.randrange(params.size)] = rng.choice([np.nan, np.inf, -np.inf])
        elif variant == 1:
            arrays["params"] = params.astype(np.complex64)
        elif variant == 2:
            arrays["params"] = params.astype(np.int32)
        elif variant == 3:
            arrays["params"] = np.array([None] * params.size, dtype=object)
        elif variant == 4:
            arrays["velocity"][0] = np.nan
        elif variant == 5:
            del arrays["velocity"]
        elif variant == 6:
            arrays["extra"] = np.zeros(3)
        elif variant == 7:
            arrays["params"] = params.reshape(-1, 2)
        elif variant == 8:
            arrays["metadata"] = arrays["metadata"].astype(np.int16)
        else:
            arrays["params"] = np.asfortranarray(params.astype(">f4"))
        label += f" variant {variant}"
    if kind == "special":
        label = rng.choice(SPECIAL)
        special_file(path, label)
    else:
        compression = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
        data = zip_bytes({f"{name}.npy": npy_bytes(value) for name, value in arrays.items()}, rng, compression)
        path.write_bytes(mutate_zip(data, rng) if kind == "zip" else data)
    command = rng.choice(["evaluate", "predict", "plot", "resume", "resume"])
    protected, output = {}, None
    if command == "evaluate":
        argv = ["evaluate", "model.npz"] + (["--json"] if rng.random() < 0.5 else [])
    elif command == "predict":
        np.save(work / "x.npy", np.random.default_rng(0).random((2, 64)))
        argv = ["predict", "model.npz", "x.npy"]
    elif command == "plot":
        argv = ["plot", "model.npz", "--out", "p.png"] + rng.choice([[], ["--weights"], ["--surface"], ["--no-curves",
                                                                                                        "--weights"]])
    else:
        shutil.copy(shared.digits_model, work / "out.npz")
        argv = ["train", "--resume", "model.npz", "--epochs", str(rng.choice([3, 4])), "--output", "out.npz",
                "--quiet"]
        if rng.random() < 0.3:
            argv += ["--plot", rng.choice(["c.png", "nodir/c.png"])]
        protected, output = {"out.npz": "model"}, "out.npz"
    return Case("model", f"{command} {label}"[:300], argv, protected, output)


OPTION_VALUES = {
    "--layers": ["64,8,10", ",8,", "8", "²", "٣", "64,1e3,10", "64,100000000000,10", ",100000000,", "0", "-1", "",
                 ",", "64,,10", "64, 8 ,10", " 8", "64,8,10,", "1" * 40, "9" * 5000, ",".join(["4"] * 300),
                 "64,08,10", "+8", "0x10", "64,30,10", "2,4,2", "4,3,3", ",3000,", "64,20000,10"],
    "--lr": ["3", "0", "-1", "1e300", "1e309", "nan", "inf", "-inf", "1e-320", "1e6", "1e7", "3.0.0", "", "0x1p3",
             "1_0", "0.5", "100"],
    "--weight-decay": ["0", "1e-4", "10", "inf", "nan", "-1", "1e300", "0.5", "0.66", "1e-3"],
    "--momentum": ["0", "0.9", "1", "nan", "-0", "0.999999999", "1e-320", "0.5"],
    "--batch-size": ["1", "10", "0", "-1", "16777216", "16777217", "1e3", "99999999999999999999", "64"],
    "--epochs": ["1", "2", "0", "100001", "-1", "nan", "3"],
    "--seed": ["0", "4294967295", "4294967296", "-1", "x", "7"],
    "--test-split": ["0.2", "0", "1", "nan", "inf", "0.5", "1e-9", "0.999"],
    "--dtype": ["float32", "float64", "float16", "int8"],
    "--loss": ["quadratic", "cross_entropy", "hinge"],
    "--init": ["normal", "scaled", "zeros"],
    "--checkpoint-every": ["1", "0", "2"],
    "--backend": ["numpy", "tpu", "cupy:99", "numpy:0"],
}
# Never a system path such as /dev/null: a gpunn that fails to refuse it would replace it (as root, for real).
OUTPUT_KINDS = ["none", "existing", "existing", "new", "missing-folder", "folder", "fifo", "dataset", "empty", "resume"]


def gen_options(rng: random.Random, work: Path, shared: Shared) -> Case:
    np.savez(work / "tiny.npz", X=shared.tiny_X, y=shared.tiny_y)
    np.savetxt(work / "tiny.csv", np.column_stack([shared.tiny_y, shared.tiny_X]), delimiter=",")
    dataset = rng.choice(["digits", "digits", "xor", "tiny.npz", "tiny.csv", "nosuch", "", "missing.npz"])
    argv = ["train", "--dataset", dataset, "--quiet"] if dataset else ["train", "--quiet"]
    options = rng.sample(sorted(OPTION_VALUES), rng.randint(1, 5))
    if "--epochs" not in options:
        argv += ["--epochs", rng.choice(["1", "2"])]
    for option in options:
        argv += [option, rng.choice(OPTION_VALUES[option])]
    # the run's own data file must stay as it is; the other one may be replaced by a loadable model
    protected = {name: "data" if name == dataset else "model" for name in ("tiny.npz", "tiny.csv")}
    output = None
    kind = rng.choice(OUTPUT_KINDS)
    if kind == "resume":
        shutil.copy(shared.digits_model, work / "resume.npz")
        argv += ["--resume", "resume.npz", "--output", "resume.npz"]
        protected["resume.npz"] = "model"
        output = "resume.npz"
    elif kind != "none":
        name = {"existing": "out.npz", "new": "new.npz", "missing-folder": "nodir/out.npz", "folder": "adir",
                "fifo": "fifo.npz", "dataset": dataset if dataset.endswith((".npz", ".csv")) else "tiny.npz",
                "empty": ""}[kind]
        if kind == "existing":
            shutil.copy(shared.digits_model, work / name)
            protected[name] = "model"
        elif kind == "folder":
            (work / name).mkdir()
        elif kind == "fifo":
            os.mkfifo(work / name)
        argv += ["--output", name]
        output = name if kind in ("existing", "new") else None
    if rng.random() < 0.3:
        plot = rng.choice(["c.png", "nodir/c.png", "c.txt", "adir2", "out.npz", "tiny.npz", "c.svg"])
        if plot == "adir2":
            (work / plot).mkdir()
        argv += ["--plot", plot]
    if rng.random() < 0.2:
        argv.append("--json")
    return Case("options", " ".join(argv[1:])[:300], argv, protected, output)


def gen_training(rng: random.Random, work: Path, shared: Shared) -> Case:
    """Runs that get as far as training and saving: in-range but extreme options, data of extreme scale."""
    scale = rng.choice([1, 1, 1, 1e3, 1e10, 1e30, 1e38, 3e38]) * rng.choice([1, -1])
    np.savez(work / "d.npz", X=shared.tiny_X * scale, y=shared.tiny_y)
    dataset = rng.choice(["d.npz", "d.npz", "digits", "xor"])
    shutil.copy(shared.digits_model, work / "out.npz")
    argv = ["train", "--dataset", dataset, "--quiet", "--epochs", rng.choice(["1", "2", "3"]), "--output", "out.npz"]
    lr = 10 ** rng.uniform(-6, 6)
    momentum = rng.choice([0.0, 0.0, 0.5, 0.9, 0.99, 0.999999])
    bound = 2 * (1 + momentum) / lr  # the largest weight decay that does not diverge by itself
    decay = min(rng.choice([0.0, 0.0, 1e-4, bound * rng.uniform(0.5, 1.5)]), 1e3)
    argv += ["--lr", f"{lr:.6g}", "--momentum", str(momentum), "--weight-decay", f"{decay:.6g}"]
    argv += rng.choice([[], ["--batch-size", rng.choice(["1", "7", "1000", "16777216"])]])
    argv += rng.choice([[], ["--dtype", "float64"], ["--loss", "cross_entropy"], ["--init", "normal"]])
    argv += rng.choice([[], [], ["--layers", rng.choice([",1,", ",2000,", ",8,8,8,8,8,", "16"])]])
    argv += rng.choice([[], [], ["--checkpoint-every", "1"], ["--plot", "c.png"]])
    label = " ".join(argv[1:]) + (f" (features x {scale:g})" if dataset == "d.npz" else "")
    protected = {"out.npz": "model"}
    if dataset == "d.npz":
        protected["d.npz"] = "data"
    return Case("training", label, argv, protected, "out.npz")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def gen_image(rng: random.Random, work: Path, shared: Shared) -> Case:
    from PIL import Image

    model = shared.digits_model if rng.random() < 0.9 else shared.tiny_model
    suffix = rng.choice([".png", ".png", ".jpg", ".jpeg"])
    path = work / f"digit{suffix}"
    kind = rng.choice(["image"] * 4 + ["truncated", "flipped", "bomb", "forged-size", "special", "random",
                                       "wrong-format"])
    label = kind
    if kind == "bomb":
        ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0)
        path = work / "digit.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", shared.png_bomb_idat)
                         + png_chunk(b"IEND", b""))
    elif kind == "forged-size":
        side = rng.choice([0, 1 << 16, 0x7FFFFFFF, 30000])
        ihdr = struct.pack(">IIBBBBB", side, rng.choice([side, 1]), 8, rng.choice([0, 2, 3, 4, 6]), 0, 0, 0)
        path = work / "digit.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                         + png_chunk(b"IEND", b""))
        label += f" {side}"
    elif kind == "special":
        label = rng.choice(SPECIAL)
        special_file(path, label)
    elif kind == "random":
        path.write_bytes(os.urandom(rng.randint(0, 400)))
    else:
        mode = rng.choice(["L", "RGB", "RGBA", "P", "LA", "I", "I;16", "F", "1", "CMYK"])
        size = (rng.choice([1, 2, 8, 28, 80, 301]), rng.choice([1, 3, 8, 28, 80, 200]))
        gen = np.random.default_rng(rng.randrange(1 << 30))
        image = Image.fromarray(gen.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).convert(mode)
        fmt = "PNG" if suffix == ".png" else "JPEG"
        if kind == "wrong-format":
            fmt = rng.choice(["GIF", "BMP", "TIFF", "PNG" if fmt == "JPEG" else "JPEG"])
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt)
        except (OSError, ValueError, KeyError):
            image.convert("RGB").save(buffer, format=fmt)
        data = bytearray(buffer.getvalue())
        if kind == "truncated":
            data = data[: rng.randrange(len(data))]
        elif kind == "flipped":
            for _ in range(rng.randint(1, 10)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        label = f"{kind} {mode} {size} {fmt}"
    argv = ["predict", str(model), path.name]
    return Case("image", label, argv)


FAMILIES = {"idx": gen_idx, "npz": gen_npz, "csv": gen_csv, "npy": gen_npy, "model": gen_model,
            "options": gen_options, "image": gen_image, "training": gen_training}
#: Share of the cases each family gets (the model files and user data have the most ways to go wrong).
WEIGHTS = {"idx": 0.14, "npz": 0.2, "csv": 0.12, "npy": 0.12, "model": 0.2, "options": 0.14, "image": 0.08,
           "training": 0.1}


# -- running and judging -----------------------------------------------------------------------------------
def digest(path: Path) -> str | None:
    try:
        if not path.is_file():
            return f"kind:{path.lstat().st_mode:o}"
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def loadable(path: Path, env: dict) -> bool:
    code = "import sys, gpunn; gpunn.load(sys.argv[1], backend='numpy')"
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, timeout=120)
    return done.returncode == 0


def limit_resources(memory_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        os.setsid()
    return apply


def judge(case: Case, work: Path, before: dict, rc, stdout: str, stderr: str, env: dict) -> str:
    if rc is None:
        return "hang"
    if "Traceback (most recent call last)" in stderr or "Traceback (most recent call last)" in stdout:
        return "traceback"
    for name, kind in case.protected.items():
        after = digest(work / name)
        if after != before[name] and (kind == "data" or not loadable(work / name, env)):
            return "lost output"
    if rc == 0 and case.output and (work / case.output).is_file() and not loadable(work / case.output, env):
        return "lost output"
    if RAW_WARNING.search(stderr):
        return "raw warning"
    if rc == 0:
        return "ok"
    errors = [line for line in (stdout + "\n" + stderr).splitlines() if line.startswith("Error: ")]
    if rc in (1, 2) and len(errors) == 1:
        return "clean error"
    return "unclean exit"


def run_case(index: int, seed: int, family: str, root: Path, shared: Shared, env: dict, timeout: float,
             memory: int) -> dict:
    rng = random.Random(f"{seed}:{index}")
    work = root / f"case-{index:05d}"
    work.mkdir()
    try:
        case = FAMILIES[family](rng, work, shared)
    except Exception:
        import traceback

        return {"index": index, "outcome": "harness error", "family": family, "label": "generator failed",
                "argv": [], "stderr_tail": traceback.format_exc()[-2000:]}
    before = {name: digest(work / name) for name in case.protected}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "gpunn", *case.argv], cwd=work, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, preexec_fn=limit_resources(memory))
        rc, stdout, stderr = done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        rc = None
        stdout, stderr = (exc.stdout or b"").decode(errors="replace"), (exc.stderr or b"").decode(errors="replace")
    seconds = time.monotonic() - started
    outcome = judge(case, work, before, rc, stdout, stderr, env)
    result = {"index": index, "outcome": outcome, "rc": rc, "seconds": round(seconds, 2), **asdict(case),
              "stderr_tail": stderr[-2000:], "stdout_tail": stdout[-500:]}
    if outcome in FAILURES:
        keep = root / "failures" / work.name
        keep.parent.mkdir(exist_ok=True)
        shutil.move(str(work), keep)
        (keep / "case.json").write_text(json.dumps(result, indent=1, default=str))
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def plan(cases: int, families: list[str], seed: int) -> list[str]:
    """Which family each case index belongs to: proportional to WEIGHTS, interleaved by a seeded shuffle."""
    total = sum(WEIGHTS[f] for f in families)
    counts = {f: int(round(cases * WEIGHTS[f] / total)) for f in families}
    counts[families[0]] += cases - sum(counts.values())
    order = [f for f, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(order)
    return order


@click.command()
@click.option("--cases", type=click.IntRange(1), default=5000, show_default=True,
              help="Cases in the plan (the family of each is drawn from --seed).")
@click.option("--skip", type=click.IntRange(0), default=0, help="Run the plan from this case on.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Run the plan up to this case only.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--families", default=",".join(FAMILIES), show_default=True, help="Comma-separated subset.")
@click.option("--jobs", type=click.IntRange(1), default=os.cpu_count() or 1, show_default=True)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per case.")
@click.option("--memory-gib", type=float, default=8.0, show_default=True, help="Address-space limit per case.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the cases and the kept failures [default: a new temporary folder].")
@click.option("--pythonpath", default=None, help="Import gpunn from here (e.g. another checkout) instead.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every case's result here (JSON lines).")
def main(cases, seed, families, jobs, timeout, memory_gib, work, pythonpath, json_out, skip, limit):
    """Run CASES generated hostile-input cases and print the outcome counts per family."""
    chosen = [f.strip() for f in families.split(",") if f.strip()]
    unknown = set(chosen) - set(FAMILIES)
    if unknown:
        raise click.BadParameter(f"unknown families {sorted(unknown)}; pick from {', '.join(FAMILIES)}")
    root = work or Path(tempfile.mkdtemp(prefix="gpunn-fuzz-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GPUNN_BACKEND": "numpy", "XDG_CACHE_HOME": str(root / "cache"),
           "GPUNN_MNIST_MIRROR": "http://127.0.0.1:9/", "PYTHONWARNINGS": "default", "MPLBACKEND": "Agg"}
    env.pop("CI", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    shared = Shared(root / "shared", env)
    order = list(enumerate(plan(cases, chosen, seed)))[skip:limit]
    counts = {f: Counter() for f in chosen}
    started = time.monotonic()
    out = open(json_out, "w") if json_out else None
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_case, i, seed, family, root, shared, env, timeout, int(memory_gib * 2 ** 30))
                   for i, family in order]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            result = future.result()
            counts[result["family"]][result["outcome"]] += 1
            if out:
                out.write(json.dumps(result, default=str) + "\n")
                out.flush()
            if result["outcome"] in FAILURES:
                click.echo(f"[{done}/{len(order)}] {result['family']} {result['outcome']}: {result['label'][:120]}",
                           err=True)
            elif done % 250 == 0:
                click.echo(f"[{done}/{len(order)}] {time.monotonic() - started:.0f} s", err=True)
    if out:
        out.close()
    width = max(len(o) for o in OUTCOMES)
    click.echo(f"{'family':<8} {'cases':>6} " + " ".join(f"{o:>{width}}" for o in OUTCOMES))
    for family in chosen:
        c = counts[family]
        click.echo(f"{family:<8} {sum(c.values()):>6} " + " ".join(f"{c[o]:>{width}}" for o in OUTCOMES))
    total = sum(counts.values(), Counter())
    click.echo(f"{'all':<8} {sum(total.values()):>6} " + " ".join(f"{total[o]:>{width}}" for o in OUTCOMES))
    click.echo(f"{time.monotonic() - started:.0f} s; failures kept in {root / 'failures'}")


if __name__ == "__main__":
    main()
