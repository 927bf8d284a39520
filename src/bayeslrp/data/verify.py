"""Read files and check their digests, hashing each unchanged file at most once per process."""
from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path

from bayeslrp.errors import BayesLRPError

# (path, device, inode, size, mtime_ns, algorithm) -> digest already checked in this process.
_VERIFIED: dict[tuple, str] = {}
_LOCK = threading.Lock()


class ChecksumMismatch(BayesLRPError):
    """A file's digest differs from the expected constant."""

    def __init__(self, what: str, expected: str, got: str, algorithm: str = "sha256", advice: str = ""):
        self.what, self.expected, self.got, self.algorithm = what, expected, got, algorithm
        advice = advice or "delete it or replace it with the original file"
        super().__init__(
            f"{what} fails its {algorithm.upper()} check (expected {expected}, got {got}): {advice}"
        )


def digest(data: bytes | bytearray | memoryview, algorithm: str = "sha256") -> str:
    """Hex digest of ``data``."""
    return hashlib.new(algorithm, data).hexdigest()


def _stat_key(path: Path, algorithm: str) -> tuple:
    st = os.stat(path)
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, algorithm)


def read_bytes(path: str | os.PathLike) -> bytearray:
    """File contents as a writable ``bytearray``; ``.gz`` files are decompressed."""
    path = Path(path)
    if path.name.endswith(".gz"):
        try:
            return bytearray(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BayesLRPError(f"{path} is not a readable gzip file ({exc}): replace it with the original file") from exc
    size = path.stat().st_size
    buffer = bytearray(size)
    with open(path, "rb") as handle:
        if handle.readinto(buffer) != size:
            raise BayesLRPError(f"{path} changed while being read: try again")
    return buffer


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Digest of the (decompressed, for ``.gz``) contents of ``path``."""
    return digest(read_bytes(path), algorithm)


def is_verified(path: str | os.PathLike, expected: str, algorithm: str = "sha256") -> bool:
    """True when this process already verified the unchanged file at ``path`` against ``expected``."""
    try:
        key = _stat_key(Path(path), algorithm)
    except OSError:
        return False
    return _VERIFIED.get(key) == expected


def read_verified(path: str | os.PathLike, expected: str, *, algorithm: str = "sha256",
                  advice: str = "") -> bytearray:
    """Read ``path`` (decompressing ``.gz``) and check the digest of the decompressed bytes.

    The digest is computed at most once per process for an unchanged file (same inode,
    size and modification time).

    Parameters
    ----------
    path
        File to read.
    expected
        Expected hex digest of the decompressed contents.
    algorithm
        ``hashlib`` algorithm name.
    advice
        What the user should do if the check fails (defaults to "delete or replace it").

    Raises
    ------
    ChecksumMismatch
        The digest differs.
    """
    path = Path(path)
    before = _stat_key(path, algorithm)
    data = read_bytes(path)
    if _VERIFIED.get(before) != expected:
        got = digest(data, algorithm)
        if got != expected:
            raise ChecksumMismatch(str(path), expected, got, algorithm, advice)
        if _stat_key(path, algorithm) == before:
            with _LOCK:
                _VERIFIED[before] = expected
    return data


def forget(path: str | os.PathLike) -> None:
    """Drop memoised verifications of ``path`` (after deleting or replacing it)."""
    resolved = str(Path(path).resolve())
    with _LOCK:
        for key in [k for k in _VERIFIED if k[0] == resolved]:
            del _VERIFIED[key]
