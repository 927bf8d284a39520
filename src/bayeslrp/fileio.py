"""Atomic writes, checksums and write checks: nothing is ever half-written.

Files are written through a temporary file and a rename, with the permissions an ordinary
``open`` would give them under the user's umask (``0666 & ~umask``; directories ``0777 &
~umask``), so colleagues can read results on a shared machine when the umask lets them.
Every file-system problem is raised as one :class:`~bayeslrp.errors.FileSystemError` that
names the path and what to do; :func:`check_writable` finds it before any work starts.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import FileSystemError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_writable",
           "dir_mode", "file_mode", "fs_error", "make_dirs", "sha256_bytes", "sha256_file",
           "umask"]

_CHUNK = 1 << 20


def umask() -> int:
    """The process's current umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # no way to read it without setting it elsewhere
    os.umask(old)
    return old


def file_mode() -> int:
    """Mode of a new file under the current umask (``0666 & ~umask``)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode of a new directory under the current umask (``0777 & ~umask``)."""
    return 0o777 & ~umask()


def fs_error(exc: OSError, path: str | os.PathLike, doing: str = "cannot be written") \
        -> FileSystemError:
    """The :class:`FileSystemError` for an ``OSError`` met while working on ``path``."""
    if isinstance(exc, FileSystemError):
        return exc
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "fix its permissions or choose another location"
    elif exc.errno == errno.ENOSPC:
        advice = "free some disk space and run again"
    else:
        advice = "check the path and run again"
    return FileSystemError(where, f"{doing} ({reason})", advice)


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable(path: str | os.PathLike, *, kind: str = "dir", what: str = "the output "
                   "path") -> Path:
    """Refuse, before any work starts, an output path that cannot be written.

    Parameters
    ----------
    path : path
        A directory (``kind="dir"``) that will be created if missing and written into, or a
        file (``kind="file"``) that will be created or replaced.
    kind : ``"dir"`` or ``"file"``
    what : str
        How the user named the path (``"--out"``), for the advice.

    Returns
    -------
    Path

    Raises
    ------
    FileSystemError
        The path (or the part of it that exists) is of the wrong kind or not writable.
    """
    path = Path(path)
    advice = f"choose another {what}"
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise FileSystemError(path, "exists and is not a directory", advice)
        if kind == "file" and path.is_dir():
            raise FileSystemError(path, "is a directory, not a file", advice)
        target = path if kind == "dir" else path.parent
    else:
        target = _nearest_existing(path.parent)
        if not target.is_dir():
            raise FileSystemError(target, "is not a directory", advice)
    if not os.access(target, os.W_OK | os.X_OK):
        raise FileSystemError(target, "is not writable", f"fix its permissions or {advice}")
    return path


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p`` with one :class:`FileSystemError` for any failure."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FileSystemError(path, "exists and is not a directory",
                              "choose another location") from None
    except OSError as exc:
        raise fs_error(exc, path, "cannot be created") from None
    return path


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Readers see either the old file or the complete new one, never a partial write. The file
    gets ``0666 & ~umask``.

    Raises
    ------
    FileSystemError
        The directory cannot be created or written, or the disk is full.
    """
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise fs_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), file_mode())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise fs_error(exc, path) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
