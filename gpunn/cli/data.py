"""``gpunn data``: download the MNIST-family files ahead of time and see what is cached.

``gpunn data fetch mnist`` fills the cache (or ``--data-dir``) with the four
verified files and prints their paths; ``gpunn data list`` shows each cached file
with its size and whether its md5 is the published one.  Failures raise
:class:`~gpunn.errors.DataError`, which the ``gpunn`` entry point prints as one
``Error:`` line with exit status 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from gpunn.data import download


@click.group("data")
def data_group():
    """Download MNIST-family data sets and list the cache."""


@data_group.command("fetch")
@click.argument("dataset", type=click.Choice(list(download.CHECKSUMS), case_sensitive=False))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Download into this folder instead of the cache.")
def fetch_command(dataset, data_dir):
    """Download DATASET's four files (unless already there and verified) and print their paths."""
    paths = download.fetch(dataset, data_dir, report=lambda line: click.echo(line, err=True))
    for path in paths:
        click.echo(path)


@data_group.command("list")
def list_command():
    """Show the cached files: dataset, file, size in bytes, and whether the md5 matches the published one."""
    files = download.cached_files()
    if not files:
        click.echo(f"nothing cached in {download.cache_root()}; run `gpunn data fetch mnist` to fill it")
        return
    click.echo(f"cache: {download.cache_root()}")
    click.echo(f"{'dataset':<14} {'file':<28} {'bytes':>10}  status")
    for entry in files:
        status = "verified" if entry.verified else "md5 mismatch (fetch downloads it again)"
        click.echo(f"{entry.dataset:<14} {entry.path.name:<28} {entry.size:>10}  {status}")
