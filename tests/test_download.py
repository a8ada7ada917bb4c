"""Verified, cached downloads against a local HTTP server serving generated IDX files.

The server runs on 127.0.0.1 (port 0) in a thread; the cache lives in tmp_path
(XDG_CACHE_HOME), the mirror is set through GPUNN_MNIST_MIRROR, and the generated
files' md5 values are patched into the checksum table.  Nothing leaves the machine.
"""

import gzip
import hashlib
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from gpunn.data import download
from gpunn.cli.data import data_group
from gpunn.data.datasets import load_dataset
from gpunn.errors import DataError

MNIST_FILES = download.MNIST_FILES


def idx_gz(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def generated_files():
    rng = np.random.default_rng(1)
    arrays = [
        rng.integers(0, 256, (8, 28, 28)), rng.integers(0, 10, 8),
        rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3),
    ]
    return {name: idx_gz(array) for name, array in zip(MNIST_FILES, arrays)}


class Handler(BaseHTTPRequestHandler):
    """Answers from ``server.routes``: path -> (status, body, declared length or None, delay in s)."""

    def do_GET(self):
        status, body, length, delay = self.server.routes.get(self.path, (404, b"not found", None, 0))
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout test)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def files(server, tmp_path, monkeypatch):
    """Good files served under /good/, their md5 in the table, the cache in tmp_path, the mirror set."""
    content = generated_files()
    for name, body in content.items():
        server.routes[f"/good/{name}"] = (200, body, None, 0)
        monkeypatch.setitem(download.CHECKSUMS["mnist"], name, hashlib.md5(body).hexdigest())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{server.server_port}/good/")
    return content


def cache_listing():
    folder = download.cache_dir("mnist")
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def serve_instead(server, name, status=200, body=None, length=None, delay=0.0):
    served = server.routes[f"/good/{name}"][1] if body is None else body
    server.routes[f"/good/{name}"] = (status, served, length, delay)


def test_good_files_are_cached_then_loaded_without_the_server(files, server, tmp_path):
    data = load_dataset("mnist")
    assert data.X_train.shape == (8, 784) and data.X_test.shape == (3, 784)
    assert cache_listing() == sorted(MNIST_FILES)
    assert download.cache_dir("mnist") == tmp_path / "cache" / "gpunn" / "mnist"
    for name in MNIST_FILES:
        assert (download.cache_dir("mnist") / name).read_bytes() == files[name]
    server.routes.clear()
    assert load_dataset("mnist").X_train.shape == (8, 784)


def test_corrupt_file_is_not_cached(files, server):
    serve_instead(server, MNIST_FILES[0], body=files[MNIST_FILES[0]][:-5] + b"xxxxx")
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    message = str(error.value)
    assert f"mnist file {MNIST_FILES[0]}" in message and "checksum mismatch" in message
    assert "nothing was cached" in message and "--data-dir" in message and "\n" not in message
    assert cache_listing() == []


def test_corrupt_last_file_leaves_only_the_verified_ones(files, server):
    serve_instead(server, MNIST_FILES[3], body=b"\x1f\x8b junk")
    with pytest.raises(DataError, match=f"{MNIST_FILES[3]} .*checksum mismatch"):
        download.fetch("mnist", timeout=5)
    assert cache_listing() == sorted(MNIST_FILES[:3])


@pytest.mark.parametrize("declared_extra", [1, 10_000])
def test_truncated_transfer_is_not_cached(files, server, declared_extra):
    body = files[MNIST_FILES[0]]
    serve_instead(server, MNIST_FILES[0], length=len(body) + declared_extra)
    with pytest.raises(DataError, match=rf"transfer cut short: received {len(body)} of {len(body) + declared_extra}"):
        download.fetch("mnist", timeout=5)
    assert cache_listing() == []


@pytest.mark.parametrize("status", [404, 500])
def test_server_error_is_not_cached(files, server, status):
    serve_instead(server, MNIST_FILES[0], status=status, body=b"error page")
    url = rf"http://127\.0\.0\.1:\d+/good/{MNIST_FILES[0]}"
    with pytest.raises(DataError, match=rf"{MNIST_FILES[0]} \({url}: HTTP {status}"):
        download.fetch("mnist", timeout=5)
    assert cache_listing() == []


def test_silent_server_times_out(files, server):
    serve_instead(server, MNIST_FILES[0], delay=1.0)
    started = time.monotonic()
    with pytest.raises(DataError, match="no data for 0.2 s|timed out"):
        download.fetch("mnist", timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert cache_listing() == []


def test_next_mirror_is_tried(files, server, monkeypatch):
    port = server.server_port
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{port}/absent http://127.0.0.1:{port}/good")
    lines = []
    paths = download.fetch("mnist", timeout=5, report=lines.append)
    assert [p.name for p in paths] == list(MNIST_FILES)
    assert lines[:3] == [
        f"downloading http://127.0.0.1:{port}/absent/{MNIST_FILES[0]}",
        "failed: HTTP 404 Not Found",
        f"downloading http://127.0.0.1:{port}/good/{MNIST_FILES[0]}",
    ]


def test_all_mirrors_failing_lists_each(files, server, monkeypatch):
    port = server.server_port
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{port}/a http://127.0.0.1:{port}/b")
    with pytest.raises(DataError, match=r"/a/train-images-idx3-ubyte\.gz: HTTP 404 Not Found; .*/b/.*HTTP 404"):
        download.fetch("mnist", timeout=5)


def test_tampered_cache_file_is_downloaded_again(files, server):
    download.fetch("mnist", timeout=5)
    path = download.cache_dir("mnist") / MNIST_FILES[1]
    path.write_bytes(b"tampered")
    download.fetch("mnist", timeout=5)
    assert path.read_bytes() == files[MNIST_FILES[1]]


def test_cache_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.cache_dir("fashion-mnist") == tmp_path / ".cache" / "gpunn" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert download.cache_dir("mnist") == tmp_path / ".cache" / "gpunn" / "mnist"


def test_builtin_mirrors_and_published_checksums(monkeypatch):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert download.mirrors("mnist")[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert download.CHECKSUMS["mnist"]["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    assert download.CHECKSUMS["fashion-mnist"]["t10k-labels-idx1-ubyte.gz"] == "bb300cfdad3c16e7a12a480ee83cd310"
    with pytest.raises(DataError, match="no download is known for 'cifar'"):
        download.fetch("cifar")


# --- gpunn data fetch / list ---------------------------------------------------------------------


@click.group()
def cli():
    """Stands in for the gpunn entry point, which registers data_group."""


cli.add_command(data_group)


def test_cli_fetch_then_list(files, server):
    runner = CliRunner()
    fetched = runner.invoke(cli, ["data", "fetch", "mnist"])
    assert fetched.exit_code == 0, fetched.output
    paths = [Path(line) for line in fetched.stdout.splitlines()]
    assert paths == [download.cache_dir("mnist") / name for name in MNIST_FILES]
    (download.cache_dir("mnist") / MNIST_FILES[3]).write_bytes(b"changed")
    listed = runner.invoke(cli, ["data", "list"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.stdout.splitlines()[2:]}
    assert rows[MNIST_FILES[0]].split()[:4] == ["mnist", MNIST_FILES[0], str(len(files[MNIST_FILES[0]])), "verified"]
    assert "md5 mismatch" in rows[MNIST_FILES[3]]


def test_cli_fetch_into_data_dir(files, server, tmp_path):
    result = CliRunner().invoke(cli, ["data", "fetch", "mnist", "--data-dir", str(tmp_path / "here")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == sorted(MNIST_FILES)
    assert load_dataset("mnist", data_dir=tmp_path / "here").X_test.shape == (3, 784)


def test_cli_list_empty_cache(files):
    result = CliRunner().invoke(cli, ["data", "list"])
    assert result.exit_code == 0 and "nothing cached in" in result.stdout


def test_cli_fetch_failure_raises_data_error(files, server):
    serve_instead(server, MNIST_FILES[0], status=500, body=b"")
    result = CliRunner().invoke(cli, ["data", "fetch", "mnist"])
    assert result.exit_code == 1 and isinstance(result.exception, DataError)
    assert "HTTP 500" in str(result.exception) and cache_listing() == []


def test_malformed_mirror_url_is_reported(files, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, "127.0.0.1/no-scheme")
    with pytest.raises(DataError, match="127.0.0.1/no-scheme/train-images-idx3-ubyte.gz: bad URL: unknown url type"):
        download.fetch("mnist", timeout=5)
    assert cache_listing() == []
