"""Checksum-verified downloads of the MNIST-family IDX files into a per-user cache.

The cache is ``$XDG_CACHE_HOME/gpunn/<dataset>`` (``~/.cache/gpunn/<dataset>`` when
that variable is unset or not an absolute path).  A file enters the cache only
whole and verified: it is streamed to a temporary file in the same folder, its
length checked against ``Content-Length`` and its md5 against the published one,
flushed to disk, then renamed into place.  On any failure the temporary file is
deleted and the next mirror is tried; when every mirror fails, nothing is cached
and :class:`~gpunn.errors.DataError` says which file, what went wrong at each
mirror, and what to do.  A cached file whose md5 no longer matches is downloaded
again (and replaced only once the new copy is verified).

Mirrors and md5 values are those of torchvision's ``MNIST`` and ``FashionMNIST``
resources (the Fashion-MNIST values are also the ones Zalando publishes, and its
GitHub repository is Zalando's own second copy).  The environment variable
``GPUNN_MNIST_MIRROR`` replaces the mirror list with one or more base URLs
(separated by spaces) for whichever dataset is fetched; checksums are still
verified, so a mirror must hold that dataset's original files.

Uses urllib only.  The timeout bounds each connection attempt and each wait for
data, not the whole transfer.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpunn.errors import DataError
from gpunn.files import cache_root

#: The four files of every MNIST-family dataset: train images, train labels, test images, test labels.
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

#: Published md5 of each compressed file (torchvision's resources lists).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

MIRROR_ENV = "GPUNN_MNIST_MIRROR"
TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class CachedFile:
    """One file found in the cache, and whether its md5 is the published one."""

    dataset: str
    path: Path
    size: int
    verified: bool


class _TransferFailed(Exception):
    """One mirror could not deliver a verified file; the message says why."""


def cache_dir(dataset: str) -> Path:
    """The cache folder of one dataset (which may not exist yet)."""
    return cache_root() / _known(dataset)


def mirrors(dataset: str) -> tuple[str, ...]:
    """Base URLs to try in order: ``$GPUNN_MNIST_MIRROR`` when set, else the built-in list."""
    override = os.environ.get(MIRROR_ENV, "").split()
    return tuple(override) if override else MIRRORS[_known(dataset)]


def md5_of(path: Path) -> str:
    """The md5 of a file's bytes, as lowercase hex."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def cached_files() -> list[CachedFile]:
    """Every known dataset file present in the cache, checked against the published md5."""
    found = []
    for dataset, sums in CHECKSUMS.items():
        for name in MNIST_FILES:
            path = cache_dir(dataset) / name
            if path.is_file():
                found.append(CachedFile(dataset, path, path.stat().st_size, md5_of(path) == sums[name]))
    return found


def fetch(
    dataset: str,
    folder: str | Path | None = None,
    *,
    timeout: float = TIMEOUT_S,
    report: Callable[[str], None] | None = None,
) -> list[Path]:
    """Make sure ``folder`` (default: the dataset's cache folder) holds the four verified files.

    Files already there with the published md5 are kept; the others are downloaded.
    Returns the four paths in :data:`MNIST_FILES` order.  ``report``, when given,
    receives one line per download attempt and failure.
    """
    sums = CHECKSUMS[_known(dataset)]
    folder = Path(folder) if folder is not None else cache_dir(dataset)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the folder {folder} for {dataset}: {exc.strerror or exc}; pass --data-dir FOLDER"
        ) from None
    paths = []
    for name in MNIST_FILES:
        path = folder / name
        if not (path.is_file() and md5_of(path) == sums[name]):
            _download_verified(dataset, name, path, timeout, report or (lambda line: None))
        paths.append(path)
    return paths


def _download_verified(dataset: str, name: str, dest: Path, timeout: float, report: Callable[[str], None]) -> None:
    """Try each mirror in turn until one delivers ``name`` with its published md5."""
    failures = []
    for base in mirrors(dataset):
        url = base.rstrip("/") + "/" + name
        report(f"downloading {url}")
        try:
            _transfer(url, dest, CHECKSUMS[dataset][name], timeout)
            return
        except _TransferFailed as exc:
            failures.append(f"{url}: {exc}")
            report(f"failed: {exc}")
    raise DataError(
        f"could not download {dataset} file {name} ({'; '.join(failures)}); nothing was cached. "
        f"Retry later, or get the four files yourself and train with --data-dir FOLDER"
    )


def _transfer(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, verify it, and rename it to ``dest``.

    Raises :class:`_TransferFailed` when this URL did not deliver the verified file, or
    DataError when the folder is not writable; leaves no temporary file either way.
    """
    try:
        fd, temp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"cannot write to {dest.parent}: {exc.strerror or exc}; pass --data-dir FOLDER") from None
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "gpunn"})
            digest = hashlib.md5(usedforsecurity=False)
            received = 0
            with urllib.request.urlopen(request, timeout=timeout) as response:
                declared = response.headers.get("Content-Length", "")
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
            if declared.isdigit() and received != int(declared):
                raise _TransferFailed(f"transfer cut short: received {received} of {declared} bytes")
            if digest.hexdigest() != md5:
                raise _TransferFailed(
                    f"checksum mismatch: md5 {digest.hexdigest()}, expected {md5} ({received} bytes received)"
                )
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dest)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _TransferFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _TransferFailed(f"cannot connect: {exc.reason}") from None
    except ValueError as exc:
        raise _TransferFailed(f"bad URL: {exc}") from None
    except TimeoutError:
        raise _TransferFailed(f"no data for {timeout:g} s") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _TransferFailed(f"transfer failed: {exc.__class__.__name__}: {exc}") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _known(dataset: str) -> str:
    if dataset not in CHECKSUMS:
        raise DataError(f"no download is known for {dataset!r}: use one of {', '.join(CHECKSUMS)}")
    return dataset
