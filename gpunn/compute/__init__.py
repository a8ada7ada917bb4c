"""The compute wing: where numbers are crunched, on NumPy or on a GPU.

It owns the backend seam (:mod:`.backend`: NumPy, CuPy or the host-compiled kernels, chosen
lazily, never importing CuPy at import time), the fused operations as NumPy twins
(:mod:`.ops`), the CUDA sources' compiling and launch plans (:mod:`.kernel_source`), the same
kernels on a GPU (:mod:`.cuda_kernels`) and on the CPU (:mod:`.host_kernels`), and the dense
products (:mod:`.dense`).  It knows nothing of networks, training or files: it imports only the
foundation modules (``gpunn.errors`` and friends).
"""
