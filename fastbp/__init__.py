"""fastbp: multilayer perceptrons trained by backpropagation, compiled with Numba."""

from fastbp._threads import (
    ThreadInfo,
    get_num_threads,
    get_reproducible,
    set_num_threads,
    set_reproducible,
    thread_info,
)
from fastbp.network import DivergenceError, History, Network

__all__ = [
    "DivergenceError",
    "History",
    "MLPClassifier",
    "MLPRegressor",
    "Network",
    "ThreadInfo",
    "get_num_threads",
    "get_reproducible",
    "set_num_threads",
    "set_reproducible",
    "thread_info",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The scikit-learn estimators import scikit-learn: only on first use.
    if name in ("MLPClassifier", "MLPRegressor"):
        from fastbp import sklearn

        return getattr(sklearn, name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")
