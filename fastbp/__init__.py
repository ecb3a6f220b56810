"""fastbp: multilayer perceptrons trained by backpropagation, compiled with Numba."""

from fastbp._threads import get_num_threads, set_num_threads
from fastbp.network import DivergenceError, History, Network

__all__ = ["DivergenceError", "History", "Network", "get_num_threads", "set_num_threads"]
__version__ = "0.1.0"
