"""The user's paths: inputs must be regular files, outputs must be places a run can write to.

Reading a named pipe blocks until something writes into it, and ``/dev/zero`` never
ends, so every file gpunn reads (model files, data sets, IDX files, samples, images)
is opened by :func:`open_input`: it looks at the path with ``os.stat`` and refuses
anything but a regular file before opening it, then opens without blocking and
checks again on the open descriptor (the path may have changed in between).

Every file a command writes (``--output`` and its checkpoints, ``--plot``, ``plot
--out``) is checked by :func:`check_output` before any work starts, and
:func:`check_distinct` refuses an output that would replace one of the run's inputs,
so that a long run cannot end by failing to save, or by overwriting the user's data.

Files are written atomically (:func:`atomic_write`): a crash or a full disk while writing
leaves the previous file intact.  :func:`cache_root` is the folder gpunn keeps downloads and
measurements in.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from gpunn.errors import GpunnError

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_input(path, error=GpunnError, what: str = "file") -> os.stat_result:
    """``os.stat(path)`` for an existing regular file; else ``error`` saying what the path is."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}; check the path") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"{path}: cannot read the {what}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is {kind_of(info.st_mode)}, not a regular file; give the {what} itself")
    return info


def open_input(path, error=GpunnError, what: str = "file") -> BinaryIO:
    """Open a regular file for binary reading; anything else (FIFO, device, folder) raises ``error``."""
    check_input(path, error, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # replaced between the stat and the open
        os.close(fd)
        raise error(f"{path} is {kind_of(mode)}, not a regular file; give the {what} itself")
    return os.fdopen(fd, "rb")


def check_output(path, option: str) -> None:
    """Refuse, before any work, an output path the run could not write its file to.

    The path must not be empty or name an existing non-regular file (a folder, a
    FIFO, a device), and its folder must exist and be writable.  An existing regular
    file is fine: it is replaced atomically, and only by a complete new file.
    """
    text = os.fspath(path)
    if not text.strip():
        raise GpunnError(f"{option} is empty; give a file name")
    try:
        info = os.stat(text)
    except FileNotFoundError:
        info = None
    except (OSError, ValueError) as exc:
        raise GpunnError(f"{option} {text}: cannot use this path: {getattr(exc, 'strerror', None) or exc}") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise GpunnError(f"{option} {text} is {kind_of(info.st_mode)}; give a file name to write to")
    folder = Path(os.path.abspath(text)).parent
    if not folder.is_dir():
        raise GpunnError(f"{option} {text}: there is no folder {folder}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GpunnError(f"{option} {text}: the folder {folder} is not writable; choose another place")


def same_file(a, b) -> bool:
    """Whether two paths name the same file (existing or not, through links and relative parts)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def check_distinct(outputs: dict, inputs: dict) -> None:
    """Refuse an output that is one of the inputs or another output (names are the options).

    ``outputs`` and ``inputs`` map option names (``--output``) to paths or None.
    """
    outputs = [(name, path) for name, path in outputs.items() if path]
    for i, (name, path) in enumerate(outputs):
        for other, other_path in outputs[i + 1:]:
            if same_file(path, other_path):
                raise GpunnError(f"{name} and {other} are the same file {path}; give them different names")
        for other, other_path in inputs.items():
            if other_path and same_file(path, other_path):
                raise GpunnError(
                    f"{name} {path} is the {other} file: writing there would replace it; give another file name"
                )


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


def cache_root() -> Path:
    """The folder holding gpunn's caches: ``$XDG_CACHE_HOME/gpunn``, else ``~/.cache/gpunn``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "gpunn"
