"""``python -m gpunn``: the same as the ``gpunn`` command."""

from gpunn.cli.main import main

main()
