"""Builders of hostile files for the tests: forged .npy headers, broken zip archives, edited model files.

Plain functions, imported by test_hostile.py (one regression test per known failure)
and test_properties.py (the generated cases).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_with_header(header: str, data: bytes = b"", version: int = 1) -> bytes:
    """A .npy file whose header text is ``header`` (not checked in any way) followed by ``data``."""
    text = header.encode("latin1")
    size = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + data


def zip_members(members: dict, method=zipfile.ZIP_STORED) -> bytes:
    """A zip archive of ``{name: bytes}``, every member compressed with ``method``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buffer.getvalue()


#: Offsets of header fields in a zip local file header ("PK\3\4") and central directory entry ("PK\1\2").
ZIP_FIELDS = {"flags": (6, 8), "method": (8, 10)}


def patch_zip(data: bytes, field: str, value: int) -> bytes:
    """Set a 16-bit header field of every member, in both the local and the central headers."""
    data = bytearray(data)
    for signature, extra in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            offset = start + ZIP_FIELDS[field][0] + extra
            data[offset:offset + 2] = struct.pack("<H", value)
            start += 4
    return bytes(data)


def read_members(path) -> dict:
    """The arrays of an .npz file written by NumPy (trusted here: the tests made it)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def metadata_of(members: dict) -> dict:
    return json.loads(members["metadata"].tobytes())


def write_model(path, members: dict, metadata=None, metadata_text: bytes | None = None) -> None:
    """Write a model file from ``members`` with its metadata replaced (as a dict, or as raw bytes)."""
    members = dict(members)
    if metadata is not None:
        metadata_text = json.dumps(metadata).encode()
    if metadata_text is not None:
        members["metadata"] = np.frombuffer(metadata_text, dtype=np.uint8)
    np.savez(path, **members)
