"""One progress bar per stage while a grid runs (stderr, only when asked)."""
from __future__ import annotations

import contextlib

__all__ = ["StageBars"]


class StageBars:
    """One progress bar per stage, opened when the stage starts and closed when it is done."""

    def __init__(self, tasks: list, enabled: bool):
        self.enabled = enabled
        self.left: dict[str, int] = {}
        for t in tasks:
            self.left[t.stage] = self.left.get(t.stage, 0) + 1
        self._stack = contextlib.ExitStack()
        self._stage: str | None = None
        self._bar = None

    def _open(self, stage: str) -> None:
        if self._stage == stage:
            return
        self._close()
        from bayeslrp.progress import progress_bar

        self._bar = self._stack.enter_context(progress_bar(f"{stage:<8}", self.left[stage],
                                                           enabled=self.enabled))
        self._stage = stage

    def _close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._stage, self._bar = None, None

    def start(self, stage: str) -> None:
        self._open(stage)

    def done(self, stage: str, seconds: float | None = None) -> None:
        self._open(stage)
        self.left[stage] -= 1
        if seconds is None:
            self._bar.advance(1)
        else:
            self._bar.advance(1, s=seconds)
        if self.left[stage] == 0:
            self._close()

    def close(self) -> None:
        self._close()
