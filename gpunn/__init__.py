"""gpunn: the tutorial's neural network as a library you can read, on NumPy or on NVIDIA GPUs."""

__version__ = "0.1.0"

from . import callbacks
from .backend import BackendError, get_backend
from .callbacks import Callback
from .data import Dataset, load_dataset
from .errors import DataError, GpunnError, ModelFileError, TrainingDiverged
from .io import load
from .network import Network
from .train import History

__all__ = [
    "BackendError", "Callback", "callbacks", "DataError", "Dataset", "GpunnError", "History", "ModelFileError",
    "Network", "TrainingDiverged", "__version__", "get_backend", "load", "load_dataset",
]
