"""The cli wing: the ``gpunn`` command, one module per command group.

A face: it may import every wing below it, and nothing imports it.
"""
