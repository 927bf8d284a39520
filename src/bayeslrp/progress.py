"""Progress bars on stderr (rich), switched off for tests and non-interactive use."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator["_Bar"]:
    """A progress bar; ``bar.advance(n, **fields)`` moves it and updates its status text."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                        console=Console(stderr=True), transient=False)
    with progress:
        task = progress.add_task(description, total=total, status="")
        yield _Bar(progress, task)


class _Bar:
    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    @property
    def enabled(self) -> bool:
        """Whether the bar is drawn (callers skip computing its status fields otherwise)."""
        return self._progress is not None

    def advance(self, n: int = 1, **fields: float) -> None:
        if self._progress is None:
            return
        status = "  ".join(f"{k}={v:.4g}" for k, v in fields.items())
        self._progress.update(self._task, advance=n, status=status)
