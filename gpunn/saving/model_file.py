"""A network's parts in one ``.npz`` file, written and read back safely and completely.

:func:`save` and :func:`to_bytes` take the parts from any network object (an
:class:`~gpunn.nn.mlp.MLP`); :func:`read` and :func:`read_bytes` return them checked
(:class:`ModelParts`), and :func:`restore` puts them into a network the caller made.  This module
never needs the public :class:`gpunn.Network`: :func:`gpunn.load` (in :mod:`gpunn.network`)
assembles one from the parts.

A model file is a NumPy ``.npz`` archive holding these arrays and nothing else:

``params``
    the flat parameter buffer (host copy, the network's dtype), laid out as
    :class:`gpunn.network.ParameterLayout` describes;
the optimizer's state (see :meth:`gpunn.training.optim.Optimizer.state`)
    ``velocity`` (SGD with momentum), or ``adam_m``, ``adam_v`` (same length and dtype
    as ``params``) and ``adam_steps`` (a 0-d int32 step count) for Adam and AdamW;
the feature scaling (see :mod:`gpunn.nn.preprocessing`), when there is one
    ``scale_offset`` and ``scale_factor``, float64, one number per input;
``metadata``
    a ``uint8`` array holding UTF-8 JSON: the format name ``"gpunn-model"`` and
    version, the gpunn version that wrote it, the architecture (sizes, activation,
    output_activation, loss, init, dtype, seed), the classes (what each output unit
    stands for) or, for a regression network, ``targets`` (each target's mean and
    standard deviation, and whether they were 1-D), ``multilabel``, the scaling method,
    ``epochs_done``, the training options, the optimizer's name and settings, the
    per-epoch history, ``extra`` (whatever the caller passed, e.g. the CLI's dataset name
    and data folder), and, optional, the ``feature_names`` (one per input) and the
    ``label_column`` of the training file;
``trajectory`` and ``trajectory_epochs`` (optional)
    the path training took, when it was recorded (:mod:`gpunn.training.trajectory`): a
    (snapshots, parameters) array in the model's dtype and the epochs done at each
    snapshot (int64, increasing, at most ``epochs_done``).

Format 2 added the activations, the optimizers, the classes and the scaling; format 3
regression and multilabel networks (identity outputs and ``targets``, ``multilabel``).  Files
of format 1 (sigmoid networks trained by SGD on class indices, unscaled) and 2 still load
and resume.

Nothing in the file is ever unpickled: :func:`read` refuses pickles by their first
bytes and reads the archive through :mod:`gpunn.safe_npz` (never ``np.load``), which
checks every member's compression, ``.npy`` header and size before inflating it.
Every metadata field is checked for type and range by one table,
:data:`gpunn.saving.metadata.METADATA_RULES` (add a field there and both directions check it), every
array against the metadata, and parameters must be finite: a diverged run's NaN
weights would only ever answer NaN.  Every problem is a one-line
:class:`~gpunn.errors.ModelFileError` that says what is wrong and what to do.

:func:`save` applies the same rules to the exact bytes it is about to write, so
what ``save`` writes ``load`` accepts, and what ``load`` accepts ``save`` writes
back; the JSON's nesting depth is bounded before it is parsed.

Resuming is exact.  The shuffling order of epoch ``e`` is a pure function of
``(seed, e)`` (see ``gpunn.training.loop._Batches.reshuffle``), so the seed and
``epochs_done`` are all the random state there is; with the parameters and the
optimizer's state restored, ``gpunn.load(path).fit(X, y, epochs=k)`` produces bit for bit
the weights of an uninterrupted run ``k`` epochs longer, on the same backend.

Files are written atomically (:func:`gpunn.files.atomic_write`): a crash or a full disk while
saving leaves the previous file intact.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import numpy as np

from gpunn._version import __version__
from gpunn.compute.backend import to_numpy
from gpunn.errors import ModelFileError
from gpunn.files import atomic_write, open_input
from gpunn.nn.labels import classes_from_json, classes_to_json
from gpunn.nn.parameters import ParameterLayout
from gpunn.nn.preprocessing import Scaler
from gpunn.nn.targets import TargetScaling
from gpunn.safe_npz import ArchiveError, Hints, NpzReader, shown_names
from gpunn.saving.metadata import FORMAT_NAME, FORMAT_VERSION, Invalid, check, decode, is_int, show
from gpunn.training.loop import History
from gpunn.training.optim import make_optimizer
from gpunn.training.trajectory import MAX_TRAJECTORY_BYTES, Trajectory

#: The optimizer state arrays a file may hold: name -> (shape is the parameters'?, dtype or None for the model's).
STATE_ARRAYS = {"velocity": (True, None), "adam_m": (True, None), "adam_v": (True, None),
                "adam_steps": (False, np.dtype(np.int32))}
SCALER_ARRAYS = ("scale_offset", "scale_factor")
#: Largest metadata member accepted (a history of 100,000 epochs fits easily).
MAX_METADATA_BYTES = 64 << 20

_REWRITE = "save the model again (gpunn train --output, or Network.save)"


# -- writing ---------------------------------------------------------------------------------
def save(net, path, extra=None) -> None:
    """Save ``net`` (parameters, momentum, history, settings) to ``path`` as one ``.npz`` file.

    ``path`` is used exactly as given (no ``.npz`` is appended).  ``extra`` is any
    JSON-serialisable value stored alongside, returned by :func:`gpunn.network.load_with_metadata`.
    """
    try:
        arrays = _model_arrays(net, extra)
    except ModelFileError as exc:
        raise ModelFileError(str(exc).replace("cannot save the model", f"cannot save the model to {path}", 1)) \
            from None
    atomic_write(path, lambda f: np.savez(f, **arrays))


def to_bytes(net, extra=None) -> bytes:
    """The model file :func:`save` would write, as bytes (what pickling a Network stores)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_model_arrays(net, extra))
    return buffer.getvalue()


def _model_arrays(net, extra) -> dict:
    """The arrays of a model file (see the module docstring), metadata included."""
    history = net.history
    training = {key: history.params[key] for key in TRAINING_KEYS
                if history is not None and key in history.params}
    optimizer = net.optimizer
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "gpunn_version": __version__,
        "sizes": list(net.sizes),
        "activation": net.activation,
        "output_activation": net.output_activation,
        "loss": net.loss,
        "init": net.init,
        "dtype": net.dtype.name,
        "seed": net.seed,
        "classes": None if net.classes is None else classes_to_json(net.classes),
        "targets": None if net.target_scaling is None else net.target_scaling.to_json(),
        "multilabel": net.multilabel,
        "scale": {"requested": net.scale, "method": None if net.scaler is None else net.scaler.method},
        "epochs_done": net.epochs_done,
        "training": training,
        "optimizer": None if optimizer is None else {"name": optimizer.name, **optimizer.settings()},
        "history": None if history is None else {
            "epoch": list(history.epoch), "history": history.history, "params": history.params,
            "warnings": list(history.warnings),
        },
        "extra": extra,
        "feature_names": None if net.feature_names is None else [str(name) for name in net.feature_names],
        "label_column": net.label_column,
    }
    try:
        text = json.dumps(metadata, default=_plain_number)
    except (TypeError, ValueError, RecursionError) as exc:  # not JSON, circular, or nested beyond recursion
        raise ValueError(
            f"cannot save the model: {exc}; extra may hold only strings, numbers, None, lists and dicts"
        ) from None
    arrays = {"params": to_numpy(net.params).copy()}
    if optimizer is not None:
        arrays.update({name: to_numpy(array).copy() for name, array in optimizer.state().items()})
    if net.scaler is not None:
        arrays.update({name: np.asarray(array, dtype=np.float64) for name, array in net.scaler.state().items()})
    arrays.update(_trajectory_arrays(net))
    encoded = text.encode("utf-8")
    _check_writable(encoded, arrays)
    arrays["metadata"] = np.frombuffer(encoded, dtype=np.uint8)
    return arrays


def _check_writable(encoded: bytes, arrays: dict) -> None:
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
        raise ModelFileError(f"cannot save the model: {problem}")


#: The options of the latest fit that a model file keeps, so that a resumed run uses them again.
TRAINING_KEYS = ("batch_size", "optimizer", "lr", "momentum", "nesterov", "betas", "eps", "weight_decay",
                 "lr_scaling")


def _plain_number(value):
    """NumPy scalars (e.g. a batch size computed with NumPy) as the Python numbers JSON knows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- reading ---------------------------------------------------------------------------------
@dataclass
class ModelParts:
    """What a model file holds, every part checked: the metadata (format 1 filled in to format 2's
    fields), the arrays (``params``, the optimizer state, ``scaler``: its two arrays) and the
    :class:`~gpunn.training.trajectory.Trajectory` or None.  ``path`` names the file in errors.

    The model layer makes a network of :meth:`architecture` and hands it to :func:`restore`.
    """

    metadata: dict
    arrays: dict
    trajectory: object
    path: str

    def architecture(self) -> dict:
        """The network constructor's arguments the file records (sizes, activations, loss, init, dtype, seed)."""
        m = self.metadata
        return {"sizes": m["sizes"], "activation": m["activation"], "output_activation": m["output_activation"],
                "loss": m["loss"], "init": m["init"], "dtype": m["dtype"], "seed": m["seed"],
                "multilabel": m.get("multilabel", False)}


def read(path) -> ModelParts:
    """The checked parts of the model file at ``path``; :class:`~gpunn.errors.ModelFileError` for anything
    that is not a sound gpunn model file."""
    path = os.fspath(path)
    with open_input(path, ModelFileError, "model file") as file:
        return _read_file(file, path)


def read_bytes(data: bytes, name: str = "the pickled model") -> ModelParts:
    """The checked parts of a model file's bytes (:func:`to_bytes`), as :func:`read` checks a file."""
    return _read_file(io.BytesIO(data), name)


def _read_file(file, path: str) -> ModelParts:
    _check_container(file.read(8), path)
    file.seek(0)
    return ModelParts(*_read_archive(file, path), path)


def _read_archive(file, path: str) -> tuple[dict, dict, object]:
    """The validated metadata, the arrays and the trajectory (or None), each member's size checked
    before it is read."""
    try:
        with NpzReader(file, path) as archive:
            if "metadata" not in archive.names:
                listed = shown_names(sorted(archive.names)) or "none"
                raise ModelFileError(
                    f"{path} is an .npz archive but not a gpunn model (no gpunn metadata; arrays: {listed}); "
                    f"give a file written by gpunn train --output or Network.save"
                )
            known = {"metadata", "params", *STATE_ARRAYS, *SCALER_ARRAYS, *TRAJECTORY_ARRAYS}
            unexpected = sorted(set(archive.names) - known)
            if unexpected:
                raise ModelFileError(
                    f"{path} holds arrays a gpunn model has not ({shown_names(unexpected)}); {_REWRITE}")
            metadata = _parse_metadata(archive.read("metadata", MAX_METADATA_BYTES), path)
            dtype = np.dtype(metadata["dtype"])
            n_params = ParameterLayout(tuple(metadata["sizes"])).size
            hints = Hints(f"a model's parameters are {dtype.name}", "the model is too large for this machine")
            arrays = {name: archive.read(name, n_params * dtype.itemsize, hints)
                      for name in ("params", *STATE_ARRAYS) if name in archive.names}
            arrays.update({name: archive.read(name, metadata["sizes"][0] * 8, hints)
                           for name in SCALER_ARRAYS if name in archive.names})
            trajectory = _read_trajectory(archive, path, n_params, dtype, metadata["epochs_done"])
    except ArchiveError as exc:
        raise ModelFileError(f"{exc}; restore it from a copy or {_REWRITE}") from None
    _check_arrays(arrays, metadata, n_params, dtype, path)
    return metadata, arrays, trajectory


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


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
    """Decode and validate the metadata JSON (:mod:`gpunn.saving.metadata`); ModelFileError naming the first problem."""
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
        raise ModelFileError(
            f"{path} was written by a newer gpunn ({show(metadata.get('gpunn_version', '?'))}, model format "
            f"{version}); gpunn {__version__} reads format {FORMAT_VERSION}: upgrade with pip install -U gpunn"
        )
    try:
        check(metadata)
    except Invalid as exc:
        raise ModelFileError(f"{path} has corrupt metadata: {exc}; {_REWRITE}") from None
    # format 1 predates these fields: sigmoid layers, class indices, no scaling
    metadata.setdefault("activation", "sigmoid")
    metadata.setdefault("output_activation", "sigmoid")
    metadata.setdefault("scale", {"requested": "none", "method": "none"})
    return metadata


def _check_arrays(arrays: dict, metadata: dict, n_params: int, dtype: np.dtype, path: str) -> None:
    """The arrays must be what the metadata says: 1-D, the model's dtype, one value per parameter."""
    if "params" not in arrays:
        raise ModelFileError(f"{path} is incomplete: it has no params array; {_REWRITE}")
    for name in SCALER_ARRAYS:
        array = arrays.pop(name, None)
        if array is not None and (array.dtype != np.float64 or array.shape != (metadata["sizes"][0],)
                                  or not np.isfinite(array).all()):
            raise ModelFileError(f"{path} is inconsistent: {name} must hold {metadata['sizes'][0]} finite float64 "
                                 f"numbers, one per input; {_REWRITE}")
        if array is not None:
            arrays.setdefault("scaler", {})[name] = array
    for name, array in arrays.items():
        if name == "scaler":
            continue
        per_parameter, own_dtype = STATE_ARRAYS.get(name, (True, None))
        want_dtype, want_shape = own_dtype or dtype, (n_params,) if per_parameter else ()
        if array.dtype != want_dtype:
            raise ModelFileError(
                f"{path} is inconsistent: {name} is {array.dtype} but the metadata says {want_dtype.name}; "
                f"{_REWRITE}"
            )
        if array.shape != want_shape:
            need = f"{n_params} values" if per_parameter else "a single number"
            raise ModelFileError(
                f"{path} is inconsistent: {name} has shape {array.shape} but layers {metadata['sizes']} "
                f"need {need}; {_REWRITE}"
            )
    problem = _nonfinite({name: array for name, array in arrays.items() if name != "scaler"})
    if problem:
        raise ModelFileError(f"{path} is unusable: {problem}; restore it from a copy or train it again")


def _nonfinite(arrays: dict) -> str | None:
    """Which array holds NaN or infinite values (a diverged run: its answers would be NaN), or None."""
    for name, array in arrays.items():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            return f"its {name} array holds {bad:,} NaN or infinite values (a diverged run)"
    return None


# -- the optional training trajectory (gpunn.training.trajectory) -------------------------------------
TRAJECTORY_ARRAYS = ("trajectory", "trajectory_epochs")


def _trajectory_arrays(net) -> dict:
    """The trajectory's arrays for the file, or none when it was not recorded."""
    trajectory = net.trajectory
    if trajectory is None or not len(trajectory):
        return {}
    return {"trajectory": trajectory.params, "trajectory_epochs": np.asarray(trajectory.epochs, dtype=np.int64)}


def _read_trajectory(archive, path: str, n_params: int, dtype: np.dtype, epochs_done: int):
    """The file's Trajectory, None when it has none; ModelFileError when its arrays do not fit the model."""
    present = [name for name in TRAJECTORY_ARRAYS if name in archive.names]
    if not present:
        return None
    if len(present) == 1:
        raise ModelFileError(f"{path} is incomplete: it has {present[0]} without its partner; {_REWRITE}")
    params = archive.read("trajectory", MAX_TRAJECTORY_BYTES)
    epochs = archive.read("trajectory_epochs", (MAX_TRAJECTORY_BYTES // max(1, n_params * dtype.itemsize) + 1) * 8)
    problem = None
    if params.dtype != dtype or params.ndim != 2 or params.shape[1] != n_params or not len(params):
        problem = f"trajectory must be a (snapshots, {n_params}) {dtype.name} array, got {params.dtype} {params.shape}"
    elif epochs.dtype != np.int64 or epochs.shape != (len(params),):
        problem = f"trajectory_epochs must hold {len(params)} int64 values, got {epochs.dtype} {epochs.shape}"
    elif epochs[0] < 0 or (np.diff(epochs) <= 0).any() or epochs[-1] > epochs_done:
        problem = f"trajectory_epochs must increase, from 0 or more to at most epochs_done ({epochs_done})"
    if problem:
        raise ModelFileError(f"{path} is inconsistent: {problem}; {_REWRITE}")
    return Trajectory.from_arrays(epochs, params)


def _restore_classes_and_scaler(net, metadata: dict, scaler_arrays: dict, path: str) -> None:
    """The classes and the fitted scaler a file records (format 1: neither, i.e. indices, unscaled)."""
    classes = metadata.get("classes")
    if classes is not None:
        try:
            net.classes = classes_from_json(classes, net.sizes[-1])
        except ValueError as exc:
            raise ModelFileError(f"{path} has corrupt metadata: classes {exc}; {_REWRITE}") from None
    requested, method = metadata["scale"]["requested"], metadata["scale"]["method"]
    net.scale = requested
    if method is None:
        net.scaler = None  # asked for, not fitted yet: the next fit fits it
    elif method == "none":
        net.scaler = Scaler("none")
    elif set(scaler_arrays) != set(SCALER_ARRAYS):
        raise ModelFileError(f"{path} is inconsistent: its {method} scaling has no scale_offset/scale_factor "
                             f"arrays; {_REWRITE}")
    else:
        net.scaler = Scaler(method, scaler_arrays["scale_offset"], scaler_arrays["scale_factor"])


def restore(net, parts: ModelParts) -> None:
    """Give ``net``, freshly made with ``parts.architecture()``, the file's state: classes, scaling, the
    feature names and label column, parameters, ``epochs_done``, the optimizer (its saved settings and
    state), the history and the trajectory, so that ``net.fit(X, y, epochs=k, <same options>)`` continues
    where the saved run stopped."""
    metadata, arrays, path = parts.metadata, parts.arrays, parts.path
    _restore_classes_and_scaler(net, metadata, arrays.get("scaler", {}), path)
    if metadata.get("targets") is not None:
        net.target_scaling = TargetScaling.from_json(metadata["targets"])
    net.feature_names = metadata.get("feature_names")
    net.label_column = metadata.get("label_column")
    xp = net.backend.xp
    with net.backend.device():
        net.params[...] = xp.asarray(arrays["params"])
    net.epochs_done = metadata["epochs_done"]
    saved = metadata.get("optimizer")
    if saved is not None:
        name = saved["name"]
        settings = {key: value for key, value in saved.items() if key != "name"}
        try:
            net.optimizer = make_optimizer(name, net.backend, net.layout, net.dtype, settings)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path} has corrupt metadata: optimizer {saved!r} ({_one_line(exc)}); "
                                 f"{_REWRITE}") from None
        state = net.optimizer.state()
        present = {key for key in STATE_ARRAYS if key in arrays}
        if present != set(state):
            raise ModelFileError(
                f"{path} is inconsistent: its {name} optimizer keeps {', '.join(sorted(state)) or 'no state'} "
                f"but the file has {', '.join(sorted(present)) or 'no optimizer arrays'}; {_REWRITE}"
            )
        with net.backend.device():
            for key, array in state.items():
                array[...] = xp.asarray(arrays[key])
    saved = metadata.get("history")
    if saved is not None:
        history = History()
        history.epoch = list(saved["epoch"])
        history.history = {key: list(values) for key, values in saved["history"].items()}
        history.params = dict(saved.get("params", {}))
        history.warnings = [str(w) for w in saved.get("warnings", [])]
        net.history = history
    net.trajectory = parts.trajectory
