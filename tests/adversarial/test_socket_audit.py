"""The suite's socket audit (tests/conftest.py) itself: non-loopback connections are refused and
reported in this process and in child processes; loopback stays allowed."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

TEST_NET = ("203.0.113.7", 443)  # TEST-NET-3: never routed


def test_in_process_connections_are_refused_and_reported(socket_audit):
    with pytest.raises(PermissionError, match="non-loopback socket.connect"):
        socket.create_connection(TEST_NET, timeout=0.05)
    assert len(socket_audit.made()) == 1 and "203.0.113.7" in socket_audit.made()[0]
    socket_audit.forgive()  # made on purpose


def test_child_processes_are_audited_too(socket_audit):
    code = "import socket; socket.create_connection(('203.0.113.7', 443), timeout=0.05)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "test socket audit" in proc.stderr
    made = socket_audit.made()
    assert len(made) == 1 and made[0].startswith("pid ") and "203.0.113.7" in made[0]
    socket_audit.forgive()


def test_loopback_is_allowed(socket_audit):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    socket.create_connection(server.getsockname(), timeout=1).close()
    server.close()
    assert socket_audit.made() == []
