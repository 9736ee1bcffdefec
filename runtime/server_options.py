"""`bert14 serve`'s options, apart from the server so that the CLI builds its flags without FastAPI.

Each ServerOptions field with `flag` metadata is the flag of that name on `bert14 serve`
(bert14/options.py); runtime/server.py serves with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bert14.errors import InputError
from bert14.options import flag
from bert14.runtime.classifier import positive_int
from bert14.runtime.guard import check_host_names

MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens and what it accepts. Each field with `flag` metadata is also the flag of
    that name on `bert14 serve` (bert14/options.py); api_key has its own (it also reads BERT14_API_KEY)."""

    # loopback unless the operator opens it up on purpose
    host: str = field(default="127.0.0.1", metadata=flag("bind address (anything but loopback: set --api-key)"))
    port: int = field(default=8014, metadata=flag("TCP port"))
    max_texts: int = field(default=256, metadata=flag("texts per request"))
    max_body_bytes: int = field(default=1 << 20, metadata=flag("request body bytes (413 beyond)"))
    # tokens of one request after tokenization
    max_request_tokens: int = field(default=65536, metadata=flag("tokens per request (413 beyond)"))
    microbatch: bool = field(default=True, metadata=flag("each model run holds one request's texts"))
    window_ms: float = field(default=5.0, metadata=flag("micro-batching window"))
    max_batch_texts: int = 64  # rows per model run
    max_batch_tokens: int = 4096  # padded tokens per model run: bounds how long one run holds the model
    # rows (texts; a text in windows: each) accepted, not yet answered
    max_pending_texts: int = field(
        default=4096, metadata=flag("texts waiting before new requests get 503 (backpressure)")
    )
    body_timeout_s: float = field(
        default=10.0, metadata=flag("seconds for a request body (408 beyond)", name="body-timeout")
    )
    header_timeout_s: float = field(
        default=10.0, metadata=flag("seconds for request headers (closed)", name="header-timeout")
    )
    max_connections: int = field(default=512, metadata=flag("open connections (503 beyond)"))
    api_key: str | None = None  # when set: Authorization: Bearer KEY on every route but /healthz
    docs: bool = field(default=False, metadata=flag("serve /docs and /openapi.json (off by default)"))
    model_name: str = field(
        default="bert14", metadata=flag("the model's name in the Open Inference Protocol's /v2/models/NAME")
    )
    ui: bool = field(default=False, metadata=flag("serve a page at / to try the model (no external assets)"))
    # Host names answered besides the loopback ones and the bind address (runtime/guard.py)
    allow_hosts: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "also answer requests whose Host is NAME (repeatable; '*': any Host, behind a proxy that checks it); "
            "loopback names and the bind address are always answered",
            name="allow-host",
            metavar="NAME",
            repeat=True,
            parse=check_host_names,
        ),
    )

    def __post_init__(self) -> None:
        if isinstance(self.allow_hosts, str):
            raise InputError("allow_hosts: expected a list of host names, got a string")
        object.__setattr__(self, "allow_hosts", check_host_names(self.allow_hosts))
        positive_int("port", self.port, 65535)
        for name in ("max_texts", "max_body_bytes", "max_request_tokens", "max_batch_texts", "max_batch_tokens"):
            positive_int(name, getattr(self, name), 1 << 31)
        positive_int("max_pending_texts", self.max_pending_texts, 1 << 31)
        positive_int("max_connections", self.max_connections, 1 << 20)
        for name, top in (("window_ms", 10_000.0), ("body_timeout_s", 3600.0), ("header_timeout_s", 3600.0)):
            value = getattr(self, name)
            low_ok = value >= 0 if name == "window_ms" else value > 0
            if isinstance(value, bool) or not isinstance(value, int | float) or not (low_ok and value <= top):
                raise InputError(f"{name}: expected a number from {0 if name == 'window_ms' else '>0'} to {top:g}")
        if not MODEL_NAME.fullmatch(self.model_name):
            raise InputError(f"model_name: expected letters, digits, '-', '_' or '.', got {self.model_name!r}")
        if self.api_key is not None:
            check_api_key(self.api_key)


def check_api_key(key: str) -> None:
    """An API key is at least 16 visible ASCII characters. An empty or blank key is refused, never read
    as "no authentication": `BERT14_API_KEY= bert14 serve` would otherwise serve every route openly."""
    hint = "a random token, e.g. `openssl rand -hex 32`"
    if not isinstance(key, str) or not key.strip():
        raise InputError(f"api_key: expected at least 16 characters ({hint}), got an empty key; to serve without "
                         "authentication, leave the flag and BERT14_API_KEY unset")  # fmt: skip
    if any(not ("!" <= ch <= "~") for ch in key):
        raise InputError(f"api_key: expected visible ASCII characters only, no spaces or control characters ({hint})")
    if len(key) < 16:
        raise InputError(f"api_key: expected at least 16 characters ({hint}), got {len(key)}")
