"""Reader and writer for the IDX format of the MNIST family (LeCun et al.).

An IDX file is: two zero bytes, a type code, the number of dimensions ``d``, ``d``
big-endian uint32 sizes, then the data in C order, multi-byte types big-endian.
"""
from __future__ import annotations

import struct

import numpy as np

from bayeslrp.errors import BayesLRPError

_CODE_TO_DTYPE = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE = {("u", 1): 0x08, ("i", 1): 0x09, ("i", 2): 0x0B, ("i", 4): 0x0C, ("f", 4): 0x0D, ("f", 8): 0x0E}


def decode_idx(buffer: bytes | bytearray | memoryview, *, what: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes into an array that views ``buffer`` (no copy).

    Parameters
    ----------
    buffer
        The complete, decompressed file contents. A ``bytearray`` gives a writable array.
    what
        Name used in error messages (usually the file path).

    Returns
    -------
    numpy.ndarray
        Shape from the header; dtype ``uint8``/``int8`` or big-endian ``>i2``, ``>i4``,
        ``>f4``, ``>f8``.

    Raises
    ------
    BayesLRPError
        Bad magic number, unknown type code, or a length that does not match the header.
    """
    view = memoryview(buffer)
    if len(view) < 4 or view[0] != 0 or view[1] != 0:
        raise BayesLRPError(f"{what} is not an IDX file (bad magic number): replace it with the original file")
    code, ndim = view[2], view[3]
    if code not in _CODE_TO_DTYPE:
        raise BayesLRPError(f"{what} has unknown IDX type code 0x{code:02x}: replace it with the original file")
    header = 4 + 4 * ndim
    if ndim == 0 or len(view) < header:
        raise BayesLRPError(f"{what} has a truncated IDX header: replace it with the original file")
    dims = struct.unpack(f">{ndim}I", view[4:header])
    dtype = _CODE_TO_DTYPE[code]
    count = int(np.prod(dims, dtype=np.int64))
    if len(view) - header != count * dtype.itemsize:
        raise BayesLRPError(
            f"{what} holds {len(view) - header} data bytes but its IDX header {dims} needs "
            f"{count * dtype.itemsize}: the file is truncated or corrupt, replace it"
        )
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=header).reshape(dims)


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise ``array`` as IDX bytes (the inverse of :func:`decode_idx`).

    Parameters
    ----------
    array
        Integer (uint8, int8, int16, int32) or float (float32, float64) array, ``ndim >= 1``.

    Returns
    -------
    bytes
        Header plus big-endian C-order data; for uint8 MNIST arrays this reproduces the
        original distribution files byte for byte.
    """
    array = np.asarray(array)
    key = (array.dtype.kind, array.dtype.itemsize)
    if key not in _KIND_TO_CODE or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"cannot store dtype {array.dtype} with {array.ndim} dims as IDX")
    code = _KIND_TO_CODE[key]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    return header + data
