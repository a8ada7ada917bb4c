"""Read IDX files, the format of MNIST and its relatives, raw or gzip-compressed.

An IDX file is a 4-byte magic number, one 4-byte big-endian size per dimension,
then the elements in C order.  The magic number is two zero bytes, a type code
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64, all big-endian) and the number of dimensions: MNIST images are
0x00000803 (2051: unsigned bytes, 3-D) and labels 0x00000801 (2049: unsigned
bytes, 1-D).

The reader checks structure only: the magic number, the type code, that the
payload holds exactly as many bytes as the header declares, and for gzip that
the stream is complete.  It does not know checksums (see :mod:`gpunn.download`).
A file is treated as gzip when its content starts with the gzip signature; a file
named ``*.gz`` that does not is an error.  Every problem raises
:class:`~gpunn.errors.DataError` with one line naming the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

GZIP_SIGNATURE = b"\x1f\x8b"
UNSIGNED_BYTE = 0x08
ELEMENT_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)


def read_idx(path: str | Path) -> tuple[int, np.ndarray]:
    """Return ``(magic, array)`` for the IDX file at ``path`` (raw or gzip), checked against its header.

    The array has the header's shape and big-endian element type, and is read-only
    (it views the file's bytes).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header (4-byte magic number)")
    magic, code, ndim = int.from_bytes(data[:4], "big"), data[2], data[3]
    if data[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: magic number 0x{magic:08x} does not start with two zero bytes "
            f"(MNIST images are 0x{IMAGES_MAGIC:08x}, labels 0x{LABELS_MAGIC:08x})"
        )
    if code not in ELEMENT_TYPES:
        known = ", ".join(f"0x{c:02x}" for c in ELEMENT_TYPES)
        raise DataError(f"{path}: unknown IDX element type 0x{code:02x} in magic number 0x{magic:08x} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX magic number 0x{magic:08x} declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} bytes but the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = ELEMENT_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    payload = len(data) - header_size
    if payload < expected:
        raise DataError(
            f"{path}: truncated payload: the header declares shape {shape} of {dtype.name} ({expected} bytes) "
            f"but only {payload} bytes follow; the file is incomplete, get it again"
        )
    if payload > expected:
        raise DataError(
            f"{path}: {payload - expected} trailing bytes after the {expected}-byte payload that the header "
            f"declares for shape {shape}; the file is corrupt or not what its header says"
        )
    return magic, np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_size).reshape(shape)


def read_images(path: str | Path) -> np.ndarray:
    """Images from an IDX file of magic 2051 as float64 rows (one flattened image per row) scaled to [0, 1]."""
    magic, pixels = read_idx(path)
    _expect_magic(path, magic, IMAGES_MAGIC, "images (unsigned bytes, 3 dimensions)")
    images = pixels.reshape(len(pixels), -1).astype(np.float64)
    images /= 255.0
    return images


def read_labels(path: str | Path) -> np.ndarray:
    """Labels from an IDX file of magic 2049 as a 1-D int64 array."""
    magic, labels = read_idx(path)
    _expect_magic(path, magic, LABELS_MAGIC, "labels (unsigned bytes, 1 dimension)")
    return labels.astype(np.int64)


def _expect_magic(path: str | Path, magic: int, expected: int, what: str) -> None:
    if magic != expected:
        raise DataError(
            f"{path}: wrong magic number {magic} (0x{magic:08x}); a file of {what} has {expected} "
            f"(0x{expected:08x}); check that images and labels are not swapped"
        )


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data[:2] == GZIP_SIGNATURE:
        try:
            return gzip.decompress(data)
        except EOFError:
            raise DataError(f"{path}: corrupt gzip: the compressed stream ends early (truncated file?)") from None
        except (OSError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip: {exc}") from None
    if path.suffix == ".gz":
        raise DataError(
            f"{path}: not a gzip file (it starts with bytes {data[:4].hex() or 'nothing'}, not 1f8b); "
            f"if it is a raw IDX file, drop the .gz from its name"
        )
    return data
