"""Read files and check their digests, hashing each unchanged file at most once per process."""
from __future__ import annotations

import gzip
import hashlib
import os
import threading
import zlib
from pathlib import Path

from bayeslrp.errors import BayesLRPError

# (path, device, inode, size, mtime_ns, algorithm, gunzipped) -> digest already checked here.
_VERIFIED: dict[tuple, str] = {}
_LOCK = threading.Lock()


class DataWarning(UserWarning):
    """Something about the data was repaired (e.g. a corrupt cache file was removed)."""


class ChecksumMismatch(BayesLRPError):
    """A file's digest differs from the expected constant."""

    def __init__(self, what: str, expected: str, got: str, algorithm: str = "sha256", advice: str = ""):
        self.what, self.expected, self.got, self.algorithm = what, expected, got, algorithm
        advice = advice or "delete it or replace it with the original file"
        label = {"sha256": "SHA-256", "md5": "MD5"}.get(algorithm, algorithm.upper())
        super().__init__(f"{what} fails its {label} check (expected {expected}, got {got}): {advice}")


def digest(data: bytes | bytearray | memoryview, algorithm: str = "sha256") -> str:
    """Hex digest of ``data``."""
    return hashlib.new(algorithm, data).hexdigest()


def _gunzip(path: Path, gz: bool | None) -> bool:
    return path.name.endswith(".gz") if gz is None else bool(gz)


def _key(path: Path, algorithm: str, gz: bool | None) -> tuple:
    st = os.stat(path)
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, algorithm, _gunzip(path, gz))


def read_bytes(path: str | os.PathLike, *, gz: bool | None = None) -> bytearray:
    """File contents as a writable ``bytearray``, gunzipped when ``gz`` (default: name ends in ``.gz``)."""
    path = Path(path)
    if _gunzip(path, gz):
        try:
            return bytearray(gzip.decompress(path.read_bytes()))
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise BayesLRPError(f"{path} is not a readable gzip file ({exc}): replace it with the original file") from exc
    size = path.stat().st_size
    buffer = bytearray(size)
    with open(path, "rb") as handle:
        if handle.readinto(buffer) != size:
            raise BayesLRPError(f"{path} changed while being read: try again")
    return buffer


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *, gz: bool | None = None) -> str:
    """Digest of the contents of ``path``, decompressed as in :func:`read_bytes`."""
    return digest(read_bytes(path, gz=gz), algorithm)


def is_verified(path: str | os.PathLike, expected: str, *, algorithm: str = "sha256", gz: bool | None = None) -> bool:
    """True when this process already verified the unchanged file at ``path`` against ``expected``."""
    try:
        return _VERIFIED.get(_key(Path(path), algorithm, gz)) == expected
    except OSError:
        return False


def read_verified(path: str | os.PathLike, expected: str, *, algorithm: str = "sha256",
                  advice: str = "", gz: bool | None = None) -> bytearray:
    """Read ``path`` and check the digest of its (decompressed) bytes.

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
    gz
        Gunzip before hashing; default: when the name ends in ``.gz``.

    Raises
    ------
    ChecksumMismatch
        The digest differs.
    """
    path = Path(path)
    before = _key(path, algorithm, gz)
    data = read_bytes(path, gz=gz)
    if _VERIFIED.get(before) != expected:
        got = digest(data, algorithm)
        if got != expected:
            raise ChecksumMismatch(str(path), expected, got, algorithm, advice)
        if _key(path, algorithm, gz) == before:
            with _LOCK:
                _VERIFIED[before] = expected
    return data


def remember(path: str | os.PathLike, expected: str, *, algorithm: str = "sha256", gz: bool | None = None) -> None:
    """Record that ``path`` holds ``expected`` (call right after writing verified bytes to it)."""
    key = _key(Path(path), algorithm, gz)
    with _LOCK:
        _VERIFIED[key] = expected


def forget(path: str | os.PathLike) -> None:
    """Drop memoised verifications of ``path`` (after deleting or replacing it)."""
    resolved = str(Path(path).resolve())
    with _LOCK:
        for key in [k for k in _VERIFIED if k[0] == resolved]:
            del _VERIFIED[key]
