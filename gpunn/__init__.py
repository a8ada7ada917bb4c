"""gpunn: the tutorial's neural network as a library you can read, on NumPy or on NVIDIA GPUs."""

from gpunn._version import __version__
from gpunn.compute.backend import BackendError, get_backend
from gpunn.data.datasets import Dataset, load_dataset
from gpunn.errors import DataError, GpunnError, ModelFileError, TrainingDiverged
from gpunn.network import Network, load
from gpunn.training import callbacks
from gpunn.training.callbacks import Callback
from gpunn.training.loop import History, TrainingWarning

__all__ = [
    "BackendError", "Callback", "callbacks", "DataError", "Dataset", "GpunnError", "History", "ModelFileError",
    "Network", "TrainingDiverged", "TrainingWarning", "__version__", "get_backend", "load", "load_dataset",
]
