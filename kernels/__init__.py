"""CUDA sources of gpunn's fused kernels (installed as the package data ``gpunn.kernels``)."""
