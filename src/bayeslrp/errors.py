"""The exception types for errors a user can cause and fix."""
from __future__ import annotations

import os


class BayesLRPError(Exception):
    """A user-facing error: bad config or CLI value, missing data, corrupt file.

    The message is one line that says what went wrong and what to do about it.
    The CLI prints it as ``error: <message>`` and exits with code 2.
    """


class FileSystemError(BayesLRPError, OSError):
    """A file or directory cannot be read, written or created.

    The message names the path and what to do. It is also an :class:`OSError`, so code that
    catches file-system errors keeps working.

    Parameters
    ----------
    path : path
        The file or directory concerned.
    problem : str
        What is wrong, e.g. ``"is not writable"``.
    advice : str
        What to do about it.
    """

    def __init__(self, path: str | os.PathLike, problem: str, advice: str):
        self.path = os.fspath(path)
        self.problem = problem
        self.advice = advice
        super().__init__(f"{self.path} {problem}; {advice}")

    def __str__(self) -> str:
        return f"{self.path} {self.problem}; {self.advice}"

    def __reduce__(self):  # picklable (Ray workers send errors back)
        return type(self), (self.path, self.problem, self.advice)


def one_line(text, limit: int = 300) -> str:
    """``text`` (e.g. an exception) with its whitespace collapsed, cut at ``limit`` characters:
    a user's code may raise anything, and a report must stay one line."""
    return " ".join(str(text).split())[:limit]


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr as one line (a repair the user should know of)."""
    import sys

    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
