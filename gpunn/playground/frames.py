"""What goes over the socket: frames of floats with a JSON header, and JSON made safe.

A frame is ``[4-byte little-endian header length][JSON header, padded to 4 bytes][float32
pictures]``: the header says what the pictures are (see
:meth:`gpunn.playground.session.Session.frame`), the pictures follow row by row.  JSON has no
NaN or infinity, so a diverged run's numbers go out as ``null``.
"""

from __future__ import annotations

import json
import math

import numpy as np


def finite(value):
    """A number for JSON: None where it is NaN or infinite (JSON has no such numbers)."""
    return value if isinstance(value, int) or math.isfinite(value) else None


def finite_list(array: np.ndarray) -> list:
    """Nested lists of the values to 6 decimals, None where one is not finite."""
    values = np.round(np.asarray(array, dtype=np.float64), 6).astype(object)
    values[~np.isfinite(np.asarray(array, dtype=np.float64))] = None
    return values.tolist()


def encode_frame(header: dict, pictures: list) -> bytes:
    """``[4-byte little-endian header length][JSON header, padded to 4 bytes][float32 pictures]``."""
    text = json.dumps(header, allow_nan=False).encode()
    text += b" " * (-len(text) % 4)
    blobs = [np.ascontiguousarray(p, dtype="<f4").tobytes() for p in pictures]
    return len(text).to_bytes(4, "little") + text + b"".join(blobs)
