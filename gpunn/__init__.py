"""gpunn: the tutorial's neural network as a library you can read, on NumPy or on NVIDIA GPUs."""

__version__ = "0.1.0"
