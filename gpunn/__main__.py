"""``python -m gpunn``: the same as the ``gpunn`` command."""

from .cli import main

main()
