"""Start the playground: uvicorn serving :func:`gpunn.playground.app.create_app` until Ctrl-C."""

from __future__ import annotations

import threading
import webbrowser

import uvicorn

from gpunn.playground.app import create_app

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(host: str, port: int, open_browser: bool, echo) -> None:
    """Serve on ``host:port``, ``echo`` the URL (and a warning for a non-local host); Ctrl-C stops it cleanly."""
    if host not in LOCAL_HOSTS:
        echo(f"Warning: serving on {host}: anyone who can reach this machine on port {port} can use the "
             f"playground and its CPU; it has no login", err=True)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    config = uvicorn.Config(create_app(), host=host, port=port, log_level="warning", ws="auto",
                            ws_max_size=1 << 20, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    echo(f"gpunn playground: {url}  (Ctrl-C stops it)")
    if open_browser:
        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    server.run()
    if not server.started:
        raise OSError(f"could not serve on {host}:{port} (is the port in use? try --port)")
