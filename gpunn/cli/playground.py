"""``gpunn playground``: the tutorial's network live in the browser, trained by gpunn (see :mod:`gpunn.playground`)."""

from __future__ import annotations

import click

from gpunn.errors import GpunnError

EXTRA_MISSING = 'the playground needs: pip install "gpunn[playground]"'


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on; anything but this machine's own is reachable by others (a warning says so).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--open/--no-open", "open_browser", default=True, show_default=True,
              help="Open the page in a browser.")
def playground(host, port, open_browser):
    """Train the tutorial's network live in your browser: data, features, layers, every neuron's picture.

    Starts a local server and prints its URL; Ctrl-C stops it.
    """
    try:
        from gpunn.playground.server import serve
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("starlette", "uvicorn", "websockets", "anyio"):
            raise GpunnError(EXTRA_MISSING) from None
        raise
    try:
        serve(host, port, open_browser, click.echo)
    except KeyboardInterrupt:
        pass
