"""The nn wing: the network's math, as the tutorial writes it.

Parameters in one flat buffer with per-layer views, forward and backward passes, the data
layouts the backends train in, losses, feature scaling and labels.  It imports only
:mod:`gpunn.compute` and the foundation; training, saving and the public
:class:`gpunn.Network` sit above it.
"""
