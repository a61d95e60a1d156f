"""The test suite's socket audit, installed in the pytest process by tests/conftest.py and in
every child Python process (CLI subprocesses, spawned evaluation workers) through PYTHONPATH.

A ``socket.connect`` / ``socket.sendto`` to a non-loopback address is refused (the call raises
PermissionError) and appended to the file named by $MSRT_SOCKET_AUDIT_LOG, which the autouse
fixture ``socket_audit`` reads after each test."""

from __future__ import annotations

import ipaddress
import os
import sys


def is_loopback(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX path, abstract socket
        return True
    host = str(address[0]).split("%")[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install(log_path: str) -> None:
    def audit(event: str, args) -> None:
        if event in ("socket.connect", "socket.sendto") and len(args) >= 2:
            address = args[-1]
            if not is_loopback(address):
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(f"pid {os.getpid()}: {event} {address!r}\n")
                raise PermissionError(f"test socket audit: non-loopback {event} to {address!r}")

    sys.addaudithook(audit)


if os.environ.get("MSRT_SOCKET_AUDIT_LOG") and __name__ == "sitecustomize":
    install(os.environ["MSRT_SOCKET_AUDIT_LOG"])
