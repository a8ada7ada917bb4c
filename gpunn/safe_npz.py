"""Read ``.npy`` files and ``.npz`` archives from untrusted sources, with every size checked first.

``np.load`` trusts what it reads more than a hostile file deserves: it hands zip
members to :mod:`zipfile` whatever their compression method, parses the ``.npy``
header (a Python dict literal) with Python's own tokenizer, and allocates whatever
shape the header declares.  Here, instead:

* the zip central directory is read first, and a member is refused when it is
  encrypted, compressed with anything but ``stored`` or ``deflate`` (what
  ``np.savez`` and ``np.savez_compressed`` write), duplicated, or declares more
  bytes than its compressed size can hold (deflate never inflates beyond 1032:1);
* the ``.npy`` header is parsed by a small strict parser that knows exactly the
  grammar NumPy writes (``{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }``)
  and nothing else: no tokenizer, no ``eval``, bounded lengths and digit counts;
* only plain numbers are read: booleans, integers and floats.  Objects (which would
  need unpickling), complex numbers, strings, dates and structured records are
  refused with a message saying which;
* the declared shape times the item size must equal the bytes the member holds, and
  that many bytes must fit in memory (:func:`gpunn.memory.require`), before the one
  buffer is allocated and filled, streaming, to exactly that size.

Anything the zip or gzip layers still raise on corrupt bytes becomes an
:class:`ArchiveError`: one line naming the file (and the array).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from gpunn.errors import DataError, InsufficientMemory
from gpunn.files import open_input
from gpunn.memory import require

NPY_MAGIC = b"\x93NUMPY"
#: Longest ``.npy`` header read (NumPy writes under 200 bytes; it refuses 10,000 by default).
MAX_HEADER_BYTES = 65536
#: Room for the header on top of the data when a member's size is held to a limit (NumPy's are under 200 bytes).
HEADER_SLACK = 4096
#: Most dimensions an array may have (NumPy's own limit is 64).
MAX_DIMENSIONS = 32
#: Deflate's largest possible expansion: 258 bytes from a 2-bit code, about 1032:1.
MAX_DEFLATE_RATIO = 1032
#: What one streaming read asks for.
CHUNK = 1 << 22
#: Element kinds that can be read: booleans, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"
#: Longest text a label array may hold per element (fixed-width Unicode, 4 bytes a character).
MAX_TEXT_CHARS = 256
_KIND_NAMES = {"c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes", "a": "bytes",
               "M": "dates", "m": "time spans", "V": "raw records"}
_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma", 93: "zstandard", 99: "AES encryption"}
# Exceptions zipfile and zlib raise on corrupt archives (RuntimeError: encryption and
# recursion; MemoryError: a corrupt size field). All of them mean "this file is broken".
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
            NotImplementedError, RuntimeError, OverflowError, KeyError, IndexError, MemoryError)


class ArchiveError(DataError):
    """An ``.npy``/``.npz`` file that cannot be read safely; the message names the file and the array."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or exc.__class__.__name__


@contextlib.contextmanager
def _corrupt_as(message: str):
    """Turn what zipfile and zlib raise on corrupt bytes into ArchiveError(``message (detail)``)."""
    try:
        yield
    except (ArchiveError, InsufficientMemory):
        raise
    except _CORRUPT as exc:
        raise ArchiveError(f"{message} ({_one_line(exc)})") from None


# -- the .npy header ------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<string>'[^'\\\n]{0,64}'|\"[^\"\\\n]{0,64}\")|(?P<int>[0-9]{1,20})"
                    r"|(?P<name>True|False)|(?P<punct>[{}():,]))")
_DESCR = re.compile(r"[<>|=]?([a-zA-Z?])[a-zA-Z0-9\[\]]{0,15}")


class _HeaderError(Exception):
    """What is wrong with a header, for :class:`ArchiveError`."""


def _tokens(text: str):
    position = 0
    while True:
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise _HeaderError(f"unexpected text at position {position}")
            return
        position = match.end()
        kind = match.lastgroup
        yield kind, match.group(kind)


def parse_header(text: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    """``(dtype, shape, fortran_order)`` from a ``.npy`` header's dict literal; _HeaderError when it is not one.

    Accepts the keys ``descr`` (a simple type string such as ``'<f8'``), ``fortran_order``
    (``True``/``False``) and ``shape`` (a tuple of non-negative integers), each exactly
    once, in any order, with an optional trailing comma; nothing else.
    """
    tokens = _tokens(text)

    def take(expected_kind=None, expected=None):
        try:
            kind, value = next(tokens)
        except StopIteration:
            raise _HeaderError("it ends early") from None
        if (expected_kind and kind != expected_kind) or (expected and value != expected):
            raise _HeaderError(f"unexpected {value!r}")
        return kind, value

    take("punct", "{")
    fields = {}
    kind, value = take()
    while value != "}":
        if kind != "string":
            raise _HeaderError(f"unexpected {value!r} where a key belongs")
        key = value[1:-1]
        if key in fields or key not in ("descr", "fortran_order", "shape"):
            raise _HeaderError(f"unexpected key {key!r}")
        take("punct", ":")
        fields[key] = _value(take, key)
        kind, value = take("punct")
        if value == ",":
            kind, value = take()
        elif value != "}":
            raise _HeaderError(f"unexpected {value!r}")
    if next(tokens, None) is not None:
        raise _HeaderError("text follows the closing brace")
    missing = {"descr", "fortran_order", "shape"} - fields.keys()
    if missing:
        raise _HeaderError(f"no {', '.join(sorted(missing))}")
    return _dtype(fields["descr"]), fields["shape"], fields["fortran_order"]


def _value(take, key):
    kind, value = take()
    if key == "descr":
        if kind != "string":
            raise _HeaderError(f"descr {value!r} is not a simple type (structured arrays are not numbers)")
        return value[1:-1]
    if key == "fortran_order":
        if kind != "name":
            raise _HeaderError(f"fortran_order must be True or False, got {value!r}")
        return value == "True"
    if value != "(":
        raise _HeaderError(f"shape must be a tuple, got {value!r}")
    shape, commas = [], 0
    kind, value = take()
    while value != ")":
        if kind != "int" or len(shape) > commas:
            raise _HeaderError(f"unexpected {value!r} in the shape")
        shape.append(int(value))
        kind, value = take()
        if value == ",":
            commas += 1
            kind, value = take()
    if len(shape) == 1 and commas == 0:
        raise _HeaderError("shape must be a tuple, got a bare number")
    if len(shape) > MAX_DIMENSIONS:
        raise _HeaderError(f"{len(shape)} dimensions, more than {MAX_DIMENSIONS}")
    return tuple(shape)


def _dtype(descr: str) -> np.dtype:
    match = _DESCR.fullmatch(descr)
    if match is None:
        raise _HeaderError(f"unknown element type {descr!r}")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, OverflowError):
        raise _HeaderError(f"unknown element type {descr!r}") from None
    return dtype


def _check_numeric(dtype: np.dtype, advice: str, text: bool = False) -> str | None:
    """Why an array of ``dtype`` cannot be used as numbers (or, with ``text``, as short strings), or None.

    ``advice`` says what to give instead.  Text means NumPy's fixed-width Unicode (``<U8``),
    which is plain bytes: never Python objects.
    """
    if dtype.kind in NUMERIC_KINDS and dtype.fields is None and dtype.itemsize <= 16:
        return None
    if text and dtype.kind == "U" and dtype.fields is None and 0 < dtype.itemsize <= 4 * MAX_TEXT_CHARS:
        return None
    if dtype.kind == "O":
        return ("holds Python objects (reading them would mean unpickling, which gpunn refuses: it can run "
                "any code); save it as a numeric array")
    if dtype.kind == "c":
        return "holds complex numbers; gpunn takes real numbers: save the part you mean (X.real or abs(X))"
    return f"holds {_KIND_NAMES.get(dtype.kind, dtype.str)} ({dtype.str}), not numbers; {advice}"


def _read_header(stream, where: str, advice: str,
                 text: bool = False) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """Parse the magic, version and header at the start of ``stream``: (dtype, shape, fortran, header bytes)."""
    prefix = stream.read(8)
    if len(prefix) < 8 or not prefix.startswith(NPY_MAGIC):
        raise ArchiveError(f"{where} is not a .npy array (no NumPy magic number at its start)")
    major = prefix[6]
    if major not in (1, 2, 3):
        raise ArchiveError(f"{where} has .npy format version {major}.{prefix[7]}; versions 1 to 3 are read")
    size_field = stream.read(2 if major == 1 else 4)
    if len(size_field) < (2 if major == 1 else 4):
        raise ArchiveError(f"{where} is truncated inside its .npy header")
    length = int.from_bytes(size_field, "little")
    if length > MAX_HEADER_BYTES:
        raise ArchiveError(f"{where} declares a {length:,}-byte .npy header, more than the {MAX_HEADER_BYTES:,} read")
    raw = stream.read(length)
    if len(raw) < length:
        raise ArchiveError(f"{where} is truncated inside its .npy header")
    try:
        dtype, shape, fortran = parse_header(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise ArchiveError(f"{where} has a .npy header that is not ASCII text") from None
    except _HeaderError as exc:
        raise ArchiveError(f"{where} has a malformed .npy header ({exc})") from None
    problem = _check_numeric(dtype, advice, text)
    if problem:
        raise ArchiveError(f"{where} {problem}")
    return dtype, shape, fortran, len(prefix) + len(size_field) + length


class Hints(NamedTuple):
    """What the messages advise: instead of an array that is not numbers, and when one is too large."""

    kind: str = "save it as a numeric array"
    memory: str = "use a smaller array"


def _fill(stream, nbytes: int, where: str) -> np.ndarray:
    """Exactly ``nbytes`` from ``stream`` into a fresh byte buffer; ArchiveError when fewer follow."""
    buffer = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(buffer)
    done = 0
    while done < nbytes:
        chunk = stream.read(min(CHUNK, nbytes - done))
        if not chunk:
            raise ArchiveError(f"{where} is truncated: its header declares {nbytes:,} bytes of data, "
                               f"only {done:,} follow")
        view[done:done + len(chunk)] = chunk
        done += len(chunk)
    return buffer


def _array(stream, available: int, where: str, hints: Hints, text: bool = False) -> np.ndarray:
    """One ``.npy`` array from ``stream``, which holds ``available`` bytes in all (short strings too with ``text``)."""
    dtype, shape, fortran, header_bytes = _read_header(stream, where, hints.kind, text)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != available - header_bytes:
        raise ArchiveError(
            f"{where} is inconsistent: its header declares shape {shape} of {dtype.str} ({nbytes:,} bytes) but "
            f"{max(available - header_bytes, 0):,} bytes of data follow"
        )
    require(nbytes, where, hints.memory)
    buffer = _fill(stream, nbytes, where)
    if stream.read(1):
        raise ArchiveError(f"{where} has data beyond the {nbytes:,} bytes its header declares")
    return buffer.view(dtype).reshape(shape, order="F" if fortran else "C")


# -- files -----------------------------------------------------------------------------------------------------
def read_npy(path, hints: Hints = Hints()) -> np.ndarray:
    """The numeric array in the ``.npy`` file at ``path`` (a regular file), read without NumPy's loader."""
    with open_input(path, ArchiveError, ".npy file") as file, _corrupt_as(f"{path} cannot be read"):
        return _array(file, os.fstat(file.fileno()).st_size, str(path), hints)


def shown_names(names) -> str:
    """Member names of an untrusted archive for a one-line message, comma-separated: a name with
    a line break or another unprintable character (a corrupted one) is shown escaped, as Python
    writes it."""
    return ", ".join(name if name.isprintable() else repr(name) for name in names)


class NpzReader:
    """The arrays of an ``.npz`` archive, each read (and checked) only when asked for.

    ``NpzReader(file, path)`` takes an open binary file; ``names`` lists the arrays
    (member names without ``.npy``); ``read(name, max_bytes, hints, text)`` returns one
    array (of numbers, or with ``text`` also short strings) and refuses a member larger than
    ``max_bytes`` before inflating any of it.
    """

    def __init__(self, file, path):
        self.path = str(path)
        with _corrupt_as(f"{self.path} is truncated or corrupt"):
            self._zip = zipfile.ZipFile(file)
            infos = self._zip.infolist()
            size = file.seek(0, os.SEEK_END)
        self._members = {}
        try:
            for info in infos:
                self._check_member(info, size)
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if name in self._members:
                    raise ArchiveError(f"{self.path} is corrupt: it holds two members named {info.filename!r}")
                self._members[name] = info
        except ArchiveError:
            self.close()
            raise

    def _check_member(self, info: zipfile.ZipInfo, archive_size: int) -> None:
        where = f"{self.path}: member {info.filename!r}"
        if info.header_offset + info.compress_size > archive_size:
            raise ArchiveError(f"{where} is truncated: it claims {info.compress_size:,} bytes but the archive "
                               f"ends before them")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{where} is encrypted; gpunn reads plain np.savez archives")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise ArchiveError(f"{where} is compressed with {method}; gpunn reads stored or deflated members, "
                               f"as np.savez and np.savez_compressed write them")
        stored = info.compress_type == zipfile.ZIP_STORED
        if (stored and info.file_size != info.compress_size) or (
                info.file_size > info.compress_size * MAX_DEFLATE_RATIO + 1024):
            raise ArchiveError(f"{where} is corrupt: it declares {info.file_size:,} bytes from "
                               f"{info.compress_size:,} compressed bytes, which {'stored' if stored else 'deflate'} "
                               f"data cannot hold")

    @property
    def names(self) -> list[str]:
        return list(self._members)

    def read(self, name: str, max_bytes: int | None = None, hints: Hints = Hints(), text: bool = False) -> np.ndarray:
        info = self._members.get(name)
        where = f"{self.path}: array {name}"
        if info is None or not info.filename.endswith(".npy"):
            raise ArchiveError(f"{self.path}: no array named {name}")
        if max_bytes is not None and info.file_size > max_bytes + HEADER_SLACK:
            raise ArchiveError(f"{where} takes {info.file_size:,} bytes, more than the {max_bytes:,} it may hold")
        with _corrupt_as(f"{where} cannot be read: the archive is truncated or corrupt"), \
                self._zip.open(info) as member:
            return _array(member, info.file_size, where, hints, text)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
