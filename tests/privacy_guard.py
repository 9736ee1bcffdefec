"""Run Python code (argv[2]) with every outgoing connection that is not to this machine refused and
recorded, one line each, in the file argv[1]: the audit hooks see every socket connect and name lookup
that Python code makes (OpenVINO's and NNCF's senders are Python; ONNX Runtime's store is a file)."""

from __future__ import annotations

import ipaddress
import socket
import sys

LOG = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115  # open for the process's life
LOCAL = {"localhost", "", None, socket.gethostname()}


def _local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host in LOCAL:
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect":
        sock, address = args
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # a Unix socket stays on this machine
        host = address[0]
    elif event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.gethostbyname":
        host = args[0]
    else:
        return
    if not _local(host):
        LOG.write(f"{event} {host}\n")
        LOG.flush()
        raise ConnectionRefusedError(f"privacy guard: no connection to {host}")


sys.addaudithook(_hook)
sys.argv = sys.argv[2:3]
exec(compile(sys.argv[0], "<guarded>", "exec"))  # noqa: S102
