"""Joining Ray from the CLI (`join`), and what `ray.init` does not do for a command-line tool.

- Ray's core worker installs its own SIGTERM handler when `ray.init` starts it (a crash dump and an
  abort). The CLI's handler turns SIGTERM into `Terminated`, so that a batch job removes its stage
  and a server shuts its replicas down; `keep_sigterm` puts it back.
- `ray.init(address="host:port")` with nothing listening there retries for minutes, printing C++
  warnings; `check_reachable` makes that one line at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bert14.errors import Bert14Error, InputError

CONNECT_TIMEOUT_S = 5.0


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


def check_reachable(address: str | None, option: str = "--address") -> None:
    """An InputError, at once, when `address` names a host:port (or ray://host:port) that nothing
    answers on. None (a local Ray) and "auto" (found by Ray itself) are left to ray.init."""
    if address in (None, "auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"{option} {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(
            f"{option} {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
            "`ray start --head` or check the address"
        ) from None


def join(address: str | None, error: type[Bert14Error], namespace: str | None = None) -> None:
    """Start an embedded Ray sized to this machine (address None) or join the cluster at `address`,
    quietly (warnings only, workers' output kept in Ray's logs), with the CLI's SIGTERM handler
    kept. A cluster that cannot be joined is `error`, one line."""
    import ray

    check_reachable(address)
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False, "namespace": namespace}
    with keep_sigterm():
        try:
            if address is None:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise error(f"--address {address}: could not connect to a Ray cluster: {first}") from exc
