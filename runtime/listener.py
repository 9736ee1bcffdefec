"""Running the HTTP app: bind the port first, guard connections, then hand the socket to uvicorn.

- The port is bound before anything is announced, so "serving at" is printed only when it is true;
  an address in use is a ServeError (exit 8) naming it.
- uvicorn waits forever for a connection's request headers (it times out idle keep-alive only), so
  a client sending a byte every few seconds holds a connection open indefinitely. The protocol
  below closes a connection whose request headers have not all arrived within `header_timeout_s`;
  the body has its own deadline in the app (408). uvicorn's `limit_concurrency` caps connections.
- A bind address other than loopback without an API key gets a warning: there is no
  authentication then, and the API is open to whoever can reach the port.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Mapping

from bert14.errors import ServeError
from bert14.runtime.classifier import Classifier
from bert14.runtime.server import ServerOptions, create_app

API_KEY_ENV = "BERT14_API_KEY"


def api_key_from(flag: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API key a server runs with: the flag's, else the environment's. A variable that is set, even to
    "", is a key (ServerOptions then refuses it): only an unset variable and no flag mean no key."""
    if flag is not None:
        return flag
    return environ.get(API_KEY_ENV)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ServeError that says why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host}: expected an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        why = "the address is in use (another server?)" if in_use else os.strerror(exc.errno or 0)
        raise ServeError(f"cannot listen on {host}:{port}: {why}") from None
    sock.setblocking(False)
    return sock


def _guarded_protocol(header_timeout_s: float):
    """uvicorn's httptools protocol with a header deadline; without httptools (uvicorn installed on
    its own), uvicorn's default protocol and a warning that the deadline is not enforced."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        print(
            "warning: httptools is not installed (pip install -r requirements/serve.txt), so --header-timeout is not "
            "enforced: a client that never finishes its headers keeps its connection",
            file=sys.stderr,
        )
        return "auto"

    class HeaderDeadline(HttpToolsProtocol):
        """Closes the connection when a request's headers take longer than the deadline."""

        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._bert14_deadline = self.loop.call_later(header_timeout_s, self._expired)

        def _expired(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def on_headers_complete(self) -> None:
            self._bert14_deadline.cancel()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._bert14_deadline.cancel()
                self._arm()  # the next request on this keep-alive connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._bert14_deadline.cancel()
            super().connection_lost(exc)

    return HeaderDeadline


def auth_note(options: ServerOptions) -> str:
    """The start line's word on authentication."""
    if options.api_key is None:
        return "no authentication"
    return "API key required (Authorization: Bearer) on every route but /healthz"


def serve(clf: Classifier, options: ServerOptions, announce=print) -> None:  # noqa: ANN001
    import uvicorn

    sock = bind(options.host, options.port)
    if not is_loopback(options.host) and options.api_key is None:
        print(
            f"warning: listening on {options.host}, beyond this machine, with no authentication: anyone who can "
            f"reach port {options.port} can use the model. Set --api-key or {API_KEY_ENV}, or bind 127.0.0.1 "
            "behind a proxy that authenticates.",
            file=sys.stderr,
        )
    config = uvicorn.Config(
        create_app(clf, options),
        log_level="warning",
        http=_guarded_protocol(options.header_timeout_s),
        limit_concurrency=options.max_connections,
        timeout_keep_alive=5,
    )
    engine = "" if clf.engine == "onnxruntime" else f", {clf.engine}"
    announce(
        f"serving {clf.directory.name} ({clf.precision} on {clf.provider}{engine}) at "
        f"http://{options.host}:{options.port}, {auth_note(options)}"
    )
    uvicorn.Server(config).run(sockets=[sock])
