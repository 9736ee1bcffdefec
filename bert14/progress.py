"""Progress of long commands: the stage, and a bar for the steps of a stage.

Library code reports with `stage("...")` and `step(done, total)`; nothing is shown unless a
reporter is installed for the current context. The CLI installs `TerminalProgress` on stderr,
and only when stderr is a terminal and --quiet is not given, so pipes and logs stay clean.
An application may install its own callable (e.g. to feed a UI) with `reporting(...)`.
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

# (stage, done, total): a new stage comes with done = total = 0.
Reporter = Callable[[str, int, int], None]
_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("bert14_progress", default=None)
_stage: contextvars.ContextVar[str] = contextvars.ContextVar("bert14_stage", default="")


def stage(text: str) -> None:
    _stage.set(text)
    reporter = _reporter.get()
    if reporter is not None:
        reporter(text, 0, 0)


def step(done: int, total: int) -> None:
    reporter = _reporter.get()
    if reporter is not None:
        reporter(_stage.get(), done, total)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


class TerminalProgress:
    """One line per stage with the time since start, and a bar redrawn in place for its steps."""

    WIDTH = 30

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.started = time.perf_counter()
        self.open_bar = False

    def __call__(self, text: str, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.started
        if total == 0:
            self._end_bar()
            self.stream.write(f"[{elapsed:6.1f} s] {text}\n")
        else:
            filled = self.WIDTH * done // total
            self.stream.write(f"\r[{elapsed:6.1f} s]   [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}")
            self.open_bar = True
            if done == total:
                self._end_bar()
        self.stream.flush()

    def _end_bar(self) -> None:
        if self.open_bar:
            self.stream.write("\n")
            self.open_bar = False


def for_terminal(quiet: bool, stream: TextIO = sys.stderr) -> Reporter | None:
    """The CLI's reporter: on a terminal unless --quiet; none for pipes, files and CI logs."""
    return TerminalProgress(stream) if not quiet and stream.isatty() else None
