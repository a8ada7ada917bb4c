"""Start the playground: uvicorn serving :func:`gpunn.playground.app.create_app` until Ctrl-C."""

from __future__ import annotations

import socket
import threading
import webbrowser

import uvicorn

from gpunn.errors import GpunnError
from gpunn.playground.app import create_app

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(host: str, port: int, open_browser: bool, echo) -> None:
    """Serve on ``host:port``, ``echo`` the URL (and a warning for a non-local host); Ctrl-C stops it cleanly.

    The socket is bound here, before the URL is printed, so that a port in use (or a host that
    is not this machine's) is one ``Error:`` line rather than uvicorn's log and exit status.
    """
    if host not in LOCAL_HOSTS:
        echo(f"Warning: serving on {host}: anyone who can reach this machine on port {port} can use the "
             f"playground and its CPU; it has no login", err=True)
    listener = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    config = uvicorn.Config(create_app(), host=host, port=port, log_level="warning", ws="auto",
                            ws_max_size=1 << 20, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    echo(f"gpunn playground: {url}  (Ctrl-C stops it)")
    if open_browser:
        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        raise GpunnError(f"cannot serve on {host}:{port}: {exc.strerror or exc}; choose another --port "
                         f"(or --host)") from None
    return listener
