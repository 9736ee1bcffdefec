"""Ray's core worker installs its own SIGTERM handler when `ray.init` starts it (a crash dump and
an abort). The CLI's handler turns SIGTERM into `Terminated`, so that a batch job removes its stage
and a server shuts its replicas down; this puts it back."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def keep_sigterm() -> Iterator[None]:
    """Run the body (ray.init), then restore the SIGTERM handler that was there before it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers, and only it got the CLI's
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)
