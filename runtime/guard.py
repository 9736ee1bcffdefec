"""Which requests the server answers at all: its own host names, its own origin, JSON bodies.

A server on 127.0.0.1 is reachable from every web page the user opens: a page cannot read a
cross-origin answer, but it can send a request (a form, or fetch with a "simple" body), and with DNS
rebinding (evil.example resolving to 127.0.0.1) even read it. Three checks, before any route runs:

- Host: the request must name this server: a loopback name (localhost, 127.0.0.0/8, ::1), the bind
  address when it is a specific one, or a name given with `--allow-host` (`*`: any, for a server
  behind a proxy that checks it). A rebinding page's requests carry its own name and get 403.
- Origin: a browser names the page that sent a request; one from another origin gets 403 (the
  page at / that `--ui` serves is this origin).
- Content-Type: a POST to /v1 must say application/json, one to /v2 application/json,
  application/octet-stream (the binary tensor extension) or nothing (tritonclient sends none);
  form and text/plain bodies, the kinds a page may send anywhere without asking, get 415.

The health probes (/healthz, /v2/health/*) hold no data and answer whatever the Host, since a
Kubernetes probe names the pod's address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from bert14.errors import InputError, shown

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"
WILDCARD_BINDS = ("0.0.0.0", "::", "")
# Bodies a web page may POST to any origin without a CORS preflight (the Fetch standard's safelist).
SIMPLE_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data", b"text/plain")
JSON_TYPE = b"application/json"
V2_TYPES = (JSON_TYPE, b"application/octet-stream", b"")


def check_host_names(names: Iterable[object]) -> tuple[str, ...]:
    """`--allow-host` values as normalised names, or an InputError naming the bad one."""
    out = []
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= 253 or any(c in name for c in " /\\@?#\t\r\n"):
            raise InputError(f"--allow-host: expected a host name or address (or '*'), got {shown(name)}")
        out.append(name if name == ANY_HOST else _normal(name.strip("[]")))
    return tuple(out)


def _normal(name: str) -> str:
    return name.lower().rstrip(".")


def host_of(authority: str) -> str | None:
    """The name in a Host header or an origin's authority ("name:port", "[::1]:port"), or None."""
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1 :] if end > 0 else "?"
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return _normal(authority[1:end])
    name, colon, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if colon and not (port.isascii() and port.isdigit()):
        return None
    return _normal(name) if name else None


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware applying the module's three checks to every HTTP request."""

    def __init__(self, app, bind: str, allow: tuple[str, ...], open_routes: frozenset[str]) -> None:  # noqa: ANN001
        self.app = app
        self.any_host = ANY_HOST in allow
        bound = _normal(bind.strip("[]"))
        extra = set(allow) | ({bound} if bind not in WILDCARD_BINDS and not _is_loopback(bound) else set())
        self.names = frozenset(extra - {ANY_HOST})
        self.open_routes = open_routes

    def allowed(self, name: str | None) -> bool:
        return self.any_host or (name is not None and (name in self.names or _is_loopback(name)))

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        from bert14.runtime.server import error_response

        await error_response(*refusal)(scope, receive, send)

    def _refusal(self, scope) -> tuple[int, str] | None:  # noqa: ANN001
        headers: dict[bytes, list[bytes]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key, []).append(value)
        path = scope["path"]
        hosts = headers.get(b"host", [])
        if path not in self.open_routes:
            if len(hosts) > 1:
                return 400, "expected one Host header, got several"
            host = hosts[0].decode("latin-1") if hosts else ""
            if hosts and not self.allowed(host_of(host)):
                return 403, (f"Host {shown(host)} is not a name this server answers to (loopback names"
                             f"{', ' + ', '.join(sorted(self.names)) if self.names else ''}); start it with "
                             "--allow-host NAME to serve that name")  # fmt: skip
            origins = headers.get(b"origin", [])
            if origins:
                origin = origins[-1].decode("latin-1")
                scheme, _, authority = origin.partition("://")
                if scheme not in ("http", "https") or not hosts or authority.lower() != host.lower():
                    return 403, (f"a cross-origin request (Origin {shown(origin)}) is refused: only this server's "
                                 "own page may call it from a browser")  # fmt: skip
        if scope["method"] == "POST":
            kind = b";".join(headers.get(b"content-type", [b""])).split(b";")[0].strip().lower()
            if path.startswith("/v2/"):
                if kind not in V2_TYPES:
                    return 415, (f"expected Content-Type application/json (or application/octet-stream with binary "
                                 f"tensors), got {shown(kind.decode('latin-1'))}")  # fmt: skip
            elif kind != JSON_TYPE:
                return 415, f"expected Content-Type: application/json, got {shown(kind.decode('latin-1') or None)}"
        return None
