"""Read IDX files, the format of MNIST and its relatives, raw or gzip-compressed.

An IDX file is a 4-byte magic number, one 4-byte big-endian size per dimension,
then the elements in C order.  The magic number is two zero bytes, a type code
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64, all big-endian) and the number of dimensions: MNIST images are
0x00000803 (2051: unsigned bytes, 3-D) and labels 0x00000801 (2049: unsigned
bytes, 1-D).

The reader checks structure only: the magic number, the type code, that the
payload holds exactly as many bytes as the header declares, and for gzip that
the stream is complete.  It does not know checksums (see :mod:`gpunn.data.download`).
A file is treated as gzip when its content starts with the gzip signature; a file
named ``*.gz`` that does not is an error.  Every problem raises
:class:`~gpunn.errors.DataError` with one line naming the file.

Gzip is inflated as a stream, never whole: the header is read first, its declared
size is checked against what the compressed file could possibly hold (deflate
expands at most 1032:1) and against free memory, exactly that many bytes are
inflated into one buffer, and a single byte more is asked for to tell a complete
file from one with trailing data.  So a small file that inflates to gigabytes (a
"gzip bomb") costs the few bytes its header declares, not the gigabytes.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from gpunn.errors import DataError
from gpunn.files import open_input
from gpunn.memory import require

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
#: Deflate's largest possible expansion (about 1032:1), bounding what a gzip file can hold.
MAX_DEFLATE_RATIO = 1032
CHUNK = 1 << 22
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)


def read_idx(path: str | Path) -> tuple[int, np.ndarray]:
    """Return ``(magic, array)`` for the IDX file at ``path`` (raw or gzip), checked against its header.

    The array has the header's shape and big-endian element type.
    """
    path = Path(path)
    with open_input(path, DataError) as file:
        size = os.fstat(file.fileno()).st_size
        compressed = file.read(2) == GZIP_SIGNATURE
        file.seek(0)
        if not compressed and path.suffix == ".gz":
            raise DataError(
                f"{path}: not a gzip file (it starts with bytes {file.read(4).hex() or 'nothing'}, not 1f8b); "
                f"if it is a raw IDX file, drop the .gz from its name"
            )
        stream = gzip.GzipFile(fileobj=file, mode="rb") if compressed else file
        with stream, _gzip_errors(path):
            magic, shape, dtype = _read_header(stream, path)
            header_size = 4 + 4 * len(shape)
            expected = math.prod(shape) * dtype.itemsize
            # raw: the file's size says exactly what follows; gzip: at most what its bytes can inflate to
            most = size - header_size if not compressed else size * MAX_DEFLATE_RATIO
            if expected > most:
                raise _truncated(path, shape, dtype, expected, size - header_size if not compressed else None)
            require(expected, f"{path}: the IDX data of shape {shape}", "use a smaller data set")
            payload = _read_exactly(stream, expected)
            if len(payload) < expected:
                raise _truncated(path, shape, dtype, expected, len(payload))
            if not compressed and size - header_size > expected:
                raise DataError(
                    f"{path}: {size - header_size - expected} trailing bytes after the {expected}-byte payload that "
                    f"the header declares for shape {shape}; the file is corrupt or not what its header says"
                )
            if compressed and stream.read(1):
                raise DataError(
                    f"{path}: data follows the {expected}-byte payload that the header declares for shape {shape}; "
                    f"the file is corrupt or not what its header says"
                )
    return magic, payload.view(dtype).reshape(shape)


def _read_header(stream, path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """(magic, shape, element dtype) from the start of an IDX stream."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: {len(head)} bytes is too short for an IDX header (4-byte magic number)")
    magic, code, ndim = int.from_bytes(head, "big"), head[2], head[3]
    if head[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: magic number 0x{magic:08x} does not start with two zero bytes "
            f"(MNIST images are 0x{IMAGES_MAGIC:08x}, labels 0x{LABELS_MAGIC:08x})"
        )
    if code not in ELEMENT_TYPES:
        known = ", ".join(f"0x{c:02x}" for c in ELEMENT_TYPES)
        raise DataError(f"{path}: unknown IDX element type 0x{code:02x} in magic number 0x{magic:08x} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX magic number 0x{magic:08x} declares 0 dimensions")
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes but the file has "
            f"{4 + len(sizes)}"
        )
    return magic, struct.unpack(f">{ndim}I", sizes), ELEMENT_TYPES[code]


def _truncated(path, shape, dtype, expected: int, follow: int | None) -> DataError:
    what = f"only {follow} bytes follow" if follow is not None else "the compressed file is too small to hold them"
    return DataError(
        f"{path}: truncated payload: the header declares shape {shape} of {dtype.name} ({expected} bytes) "
        f"but {what}; the file is incomplete, get it again"
    )


def _read_exactly(stream, nbytes: int) -> np.ndarray:
    """Up to ``nbytes`` from ``stream`` into one buffer (shorter only when the stream ends first)."""
    buffer = np.empty(nbytes, dtype=np.uint8)
    view, done = memoryview(buffer), 0
    while done < nbytes:
        chunk = stream.read(min(CHUNK, nbytes - done))
        if not chunk:
            break
        view[done:done + len(chunk)] = chunk
        done += len(chunk)
    return buffer[:done]


@contextlib.contextmanager
def _gzip_errors(path: Path):
    """A corrupt gzip stream as one DataError line."""
    try:
        yield
    except EOFError:
        raise DataError(f"{path}: corrupt gzip: the compressed stream ends early (truncated file?)") from None
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip: {' '.join(str(exc).split())}") from None


def read_images(path: str | Path) -> np.ndarray:
    """Images from an IDX file of magic 2051 as float64 rows (one flattened image per row) scaled to [0, 1]."""
    magic, pixels = read_idx(path)
    _expect_magic(path, magic, IMAGES_MAGIC, "images (unsigned bytes, 3 dimensions)")
    require(pixels.size * 8, f"{path}: {len(pixels):,} images as float64", "use a smaller data set")
    images = pixels.reshape(len(pixels), math.prod(pixels.shape[1:])).astype(np.float64)
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
