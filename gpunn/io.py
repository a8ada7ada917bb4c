"""Save a network to one ``.npz`` file and load it back, safely and completely.

A model file is a NumPy ``.npz`` archive holding three arrays and nothing else:

``params``
    the flat parameter buffer (host copy, the network's dtype), laid out as
    :class:`gpunn.network.ParameterLayout` describes;
``velocity`` (only when the optimizer uses momentum)
    the SGD momentum buffer, same length and dtype;
``metadata``
    a ``uint8`` array holding UTF-8 JSON: the format name ``"gpunn-model"`` and
    version, the gpunn version that wrote it, the architecture (sizes, loss, init,
    dtype, seed), ``epochs_done``, the training options, the optimizer settings, the
    per-epoch history, and ``extra`` (whatever the caller passed, e.g. the CLI's
    dataset name and data folder).

Nothing in the file is ever unpickled: :func:`load` refuses pickles by their first
bytes and reads the archive through :mod:`gpunn.safe_npz` (never ``np.load``), which
checks every member's compression, ``.npy`` header and size before inflating it.
Every metadata field is checked for type and range by one table,
:data:`gpunn.metadata.METADATA_RULES` (add a field there and both directions check it), every
array against the metadata, and parameters must be finite: a diverged run's NaN
weights would only ever answer NaN.  Every problem is a one-line
:class:`~gpunn.errors.ModelFileError` that says what is wrong and what to do.

:func:`save` applies the same rules to the exact bytes it is about to write, so
what ``save`` writes ``load`` accepts, and what ``load`` accepts ``save`` writes
back; the JSON's nesting depth is bounded before it is parsed.

Resuming is exact.  The shuffling order of epoch ``e`` is a pure function of
``(seed, e)`` (see ``gpunn.train._Batches.reshuffle``), so the seed and
``epochs_done`` are all the random state there is; with the parameters and the
momentum buffer restored, ``load(path).fit(X, y, epochs=E)`` produces bit for bit
the weights of an uninterrupted run to ``E`` epochs on the same backend.

Files are written atomically (:func:`atomic_write`): a crash or a full disk while
saving leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .errors import ModelFileError
from .files import open_input
from .metadata import FORMAT_NAME, FORMAT_VERSION, Invalid, check, decode, is_int, show
from .network import Network, ParameterLayout
from .optim import SGD
from .safe_npz import ArchiveError, Hints, NpzReader
from .train import History

#: Largest metadata member accepted (a history of 100,000 epochs fits easily).
MAX_METADATA_BYTES = 64 << 20

_REWRITE = "save the model again (gpunn train --output, or Network.save)"


# -- writing ---------------------------------------------------------------------------------
def atomic_write(path, write) -> None:
    """Write a file by calling ``write(binary_file)``; the file appears whole or not at all.

    The data goes to a temporary file in the same folder, is flushed and fsynced,
    and then renamed over ``path`` with :func:`os.replace` (atomic on POSIX and
    Windows).  On any failure the temporary file is removed and ``path`` keeps its
    previous contents.  The new file gets the usual permissions (0666 minus umask).
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: there is no folder {folder}; create it first")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # not every file system syncs folders
            os.fsync(fd)
    finally:
        os.close(fd)


def save(net: Network, path, extra=None) -> None:
    """Save ``net`` (parameters, momentum, history, settings) to ``path`` as one ``.npz`` file.

    ``path`` is used exactly as given (no ``.npz`` is appended).  ``extra`` is any
    JSON-serialisable value stored alongside, returned by :func:`load_with_metadata`.
    """
    from . import __version__

    history = net.history
    training = {key: history.params[key] for key in ("lr", "momentum", "weight_decay", "batch_size")
                if history is not None and key in history.params}
    optimizer = net.optimizer
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "gpunn_version": __version__,
        "sizes": list(net.sizes),
        "loss": net.loss,
        "init": net.init,
        "dtype": net.dtype.name,
        "seed": net.seed,
        "epochs_done": net.epochs_done,
        "training": training,
        "optimizer": None if optimizer is None else {
            "name": "sgd", "lr": optimizer.lr, "momentum": optimizer.momentum,
            "weight_decay": optimizer.weight_decay,
        },
        "history": None if history is None else {
            "epoch": list(history.epoch), "history": history.history, "params": history.params,
        },
        "extra": extra,
    }
    try:
        text = json.dumps(metadata, default=_plain_number)
    except (TypeError, ValueError, RecursionError) as exc:  # not JSON, circular, or nested beyond recursion
        raise ValueError(
            f"cannot save the model: {exc}; extra may hold only strings, numbers, None, lists and dicts"
        ) from None
    arrays = {"params": to_numpy(net.params).copy()}
    if optimizer is not None and optimizer.velocity is not None:
        arrays["velocity"] = to_numpy(optimizer.velocity).copy()
    encoded = text.encode("utf-8")
    _check_writable(encoded, arrays, path)
    arrays["metadata"] = np.frombuffer(encoded, dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _check_writable(encoded: bytes, arrays: dict, path) -> None:
    """Refuse to write a file that load would refuse: the same rules, applied to the exact bytes."""
    problem = None
    if len(encoded) > MAX_METADATA_BYTES:
        problem = f"its metadata takes {len(encoded):,} bytes, more than the {MAX_METADATA_BYTES:,} a model may hold"
    else:
        try:
            check(decode(encoded))
        except Invalid as exc:
            problem = str(exc)
    problem = problem or _nonfinite(arrays)
    if problem:
        raise ModelFileError(f"cannot save the model to {path}: {problem}")


def _plain_number(value):
    """NumPy scalars (e.g. a batch size computed with NumPy) as the Python numbers JSON knows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- reading ---------------------------------------------------------------------------------
def load(path, backend="auto") -> Network:
    """Load a network saved by :func:`save` onto ``backend``, ready to predict or to resume training.

    Restores the parameters, the optimizer (SGD with the saved settings and momentum
    buffer), the :class:`~gpunn.train.History` and ``epochs_done``, so that
    ``net.fit(X, y, epochs=E, <same options>)`` continues where the saved run stopped.
    Raises :class:`~gpunn.errors.ModelFileError` for anything that is not a sound
    gpunn model file.
    """
    return load_with_metadata(path, backend)[0]


def load_with_metadata(path, backend="auto") -> tuple[Network, dict]:
    """Like :func:`load`, and also return the file's metadata (``metadata["extra"]`` is the caller's)."""
    path = os.fspath(path)
    with open_input(path, ModelFileError, "model file") as file:
        _check_container(file.read(8), path)
        file.seek(0)
        metadata, arrays = _read_archive(file, path)
    return _build(metadata, arrays, backend), metadata


def _read_archive(file, path: str) -> tuple[dict, dict]:
    """The validated metadata and the arrays, each member's size checked before it is read."""
    try:
        with NpzReader(file, path) as archive:
            if "metadata" not in archive.names:
                listed = ", ".join(sorted(archive.names)) or "none"
                raise ModelFileError(
                    f"{path} is an .npz archive but not a gpunn model (no gpunn metadata; arrays: {listed}); "
                    f"give a file written by gpunn train --output or Network.save"
                )
            unexpected = sorted(set(archive.names) - {"metadata", "params", "velocity"})
            if unexpected:
                raise ModelFileError(f"{path} holds arrays a gpunn model has not ({', '.join(unexpected)}); {_REWRITE}")
            metadata = _parse_metadata(archive.read("metadata", MAX_METADATA_BYTES), path)
            dtype = np.dtype(metadata["dtype"])
            n_params = ParameterLayout(tuple(metadata["sizes"])).size
            hints = Hints(f"a model's parameters are {dtype.name}", "the model is too large for this machine")
            arrays = {name: archive.read(name, n_params * dtype.itemsize, hints)
                      for name in ("params", "velocity") if name in archive.names}
    except ArchiveError as exc:
        raise ModelFileError(f"{exc}; restore it from a copy or {_REWRITE}") from None
    _check_arrays(arrays, metadata, n_params, dtype, path)
    return metadata, arrays


def _check_container(head: bytes, path: str) -> None:
    """Refuse, by their first bytes, files that are not zip archives (pickles above all)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return
    if not head:
        raise ModelFileError(f"{path} is empty (an interrupted copy?); restore it from a copy or {_REWRITE}")
    if head.startswith(b"\x93NUMPY"):
        what = "it is a single .npy array"
    elif head.startswith(b"\x80"):
        what = "it is a Python pickle, and gpunn never unpickles files: that can run any code"
    else:
        what = "not an .npz archive"
    raise ModelFileError(
        f"{path} is not a gpunn model file ({what}); give a file written by gpunn train --output or Network.save"
    )


def _parse_metadata(raw: np.ndarray, path: str) -> dict:
    """Decode and validate the metadata JSON; ModelFileError naming the first problem."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path} is not a gpunn model file (its metadata is not UTF-8 JSON bytes); {_REWRITE}")
    try:
        metadata = decode(raw.tobytes())
    except Invalid as exc:
        raise ModelFileError(f"{path} has corrupt metadata ({exc}); {_REWRITE}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        name = metadata.get("format") if isinstance(metadata, dict) else None
        raise ModelFileError(
            f"{path} is not a gpunn model file (format {show(name)}, expected {FORMAT_NAME!r}); "
            f"give a file written by gpunn train --output or Network.save"
        )
    version = metadata.get("format_version")
    if not is_int(version) or version < 1:
        raise ModelFileError(f"{path} has a bad format version {show(version)}; {_REWRITE}")
    if version > FORMAT_VERSION:
        from . import __version__

        raise ModelFileError(
            f"{path} was written by a newer gpunn ({show(metadata.get('gpunn_version', '?'))}, model format "
            f"{version}); gpunn {__version__} reads format {FORMAT_VERSION}: upgrade with pip install -U gpunn"
        )
    try:
        check(metadata)
    except Invalid as exc:
        raise ModelFileError(f"{path} has corrupt metadata: {exc}; {_REWRITE}") from None
    return metadata


def _check_arrays(arrays: dict, metadata: dict, n_params: int, dtype: np.dtype, path: str) -> None:
    """The arrays must be what the metadata says: 1-D, the model's dtype, one finite value per parameter."""
    if "params" not in arrays:
        raise ModelFileError(f"{path} is incomplete: it has no params array; {_REWRITE}")
    for name, array in arrays.items():
        if array.dtype != dtype:
            raise ModelFileError(
                f"{path} is inconsistent: {name} is {array.dtype} but the metadata says {dtype.name}; {_REWRITE}"
            )
        if array.shape != (n_params,):
            raise ModelFileError(
                f"{path} is inconsistent: {name} has shape {array.shape} but layers {metadata['sizes']} "
                f"need {n_params} values; {_REWRITE}"
            )
    problem = _nonfinite(arrays)
    if problem:
        raise ModelFileError(f"{path} is unusable: {problem}; restore it from a copy or train it again")
    optimizer = metadata.get("optimizer")
    uses_momentum = optimizer is not None and optimizer["momentum"] > 0
    if uses_momentum != ("velocity" in arrays):
        have = "has a velocity array" if "velocity" in arrays else "has no velocity array"
        raise ModelFileError(
            f"{path} is inconsistent: it {have} but its optimizer momentum is "
            f"{optimizer['momentum'] if optimizer else 'unset'}; {_REWRITE}"
        )


def _nonfinite(arrays: dict) -> str | None:
    """Which array holds NaN or infinite values (a diverged run: its answers would be NaN), or None."""
    for name, array in arrays.items():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            return f"its {name} array holds {bad:,} NaN or infinite values (a diverged run)"
    return None


def _build(metadata: dict, arrays: dict, backend) -> Network:
    """A Network with the saved architecture, parameters, optimizer state and history."""
    net = Network(metadata["sizes"], loss=metadata["loss"], init=metadata["init"], backend=backend,
                  dtype=metadata["dtype"], seed=metadata["seed"])
    with net.backend.device():
        net.params[...] = net.backend.xp.asarray(arrays["params"])
    net.epochs_done = metadata["epochs_done"]
    saved = metadata.get("optimizer")
    if saved is not None:
        net.optimizer = SGD(net.backend, net.layout.size, net.dtype, saved["lr"], saved["momentum"],
                            saved["weight_decay"])
        if net.optimizer.velocity is not None:
            with net.backend.device():
                net.optimizer.velocity[...] = net.backend.xp.asarray(arrays["velocity"])
    saved = metadata.get("history")
    if saved is not None:
        history = History()
        history.epoch = list(saved["epoch"])
        history.history = {key: list(values) for key, values in saved["history"].items()}
        history.params = dict(saved.get("params", {}))
        net.history = history
    return net
