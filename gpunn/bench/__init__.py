"""The bench wing: gpunn raced against its peers (:mod:`.race`, :mod:`.peers`).

PyTorch, the obvious NumPy version, the textbook loop and the bare matrix products, on the
same data, in alternating rounds.  It sits above the public :class:`gpunn.Network`.
"""
