"""An advisory lock on a run directory: one ``run`` writes into it at a time.

The lock is ``fcntl.flock`` on ``RUN_DIR/run.lock``; the file also holds a note line with the
holder's pid and host, so a second run can say whom it waits for. The kernel releases a
``flock`` when its process dies, so the lock of a killed run is stale at once and the next
run takes it over (and rewrites the note).

>>> with RunDirLock("runs/my", wait=None):      # doctest: +SKIP
...     ...                                     # the run directory is ours
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Callable

from bayeslrp.errors import BayesLRPError, warn
from bayeslrp.fileio import file_mode, fs_error

__all__ = ["LOCK_NAME", "RunDirLock", "lock_holder"]

LOCK_NAME = "run.lock"
_POLL_S = 0.2


def lock_holder(run_dir: str | os.PathLike) -> str:
    """The note of the lock file (``pid N on HOST``), or ``"unknown"``."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "unknown"
    return text.splitlines()[0] if text else "unknown"


class RunDirLock:
    """Hold the run directory for this process.

    Parameters
    ----------
    run_dir : path
        Must exist.
    wait : float or None
        Seconds to wait for another holder: ``None`` waits as long as it takes, ``0`` stops at
        once.
    on_wait : callable, optional
        Called once with the holder's note when this lock has to wait (default: a
        ``warning:`` line on stderr).

    Raises
    ------
    BayesLRPError
        The directory is held by another run (naming its pid) after ``wait`` seconds.
    FileSystemError
        The lock file cannot be created.
    """

    def __init__(self, run_dir: str | os.PathLike, wait: float | None = None,
                 on_wait: Callable[[str], None] | None = None):
        self.path = Path(run_dir) / LOCK_NAME
        self.wait = wait
        self.on_wait = on_wait or (lambda holder: warn(
            f"{self.path.parent} is in use by another bayeslrp run ({holder}); waiting for it "
            f"to finish"))
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        except OSError as exc:
            raise fs_error(exc, self.path, "cannot be created") from None

    def acquire(self) -> "RunDirLock":
        fd = self._open()
        deadline = None if self.wait is None else time.monotonic() + self.wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise fs_error(exc, self.path, "cannot be locked") from None
            holder = lock_holder(self.path.parent)
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                raise BayesLRPError(f"{self.path.parent} is in use by another bayeslrp run "
                                    f"({holder}); wait for it to finish or choose another "
                                    f"--run-dir")
            if not told:
                self.on_wait(holder)
                told = True
            time.sleep(_POLL_S)
        note = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no stale note once nobody holds it
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
