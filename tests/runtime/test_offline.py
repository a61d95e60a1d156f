"""ARCHITECTURE decision 8: a full episode opens no non-loopback socket."""

from __future__ import annotations

import importlib.util
import ipaddress
import socket

import numpy as np
import pytest
from runtime_fakes import FakeFactory, blob_gt, make_image

from medsam_agent_rt.policies import build_policy
from medsam_agent_rt.session import Session


def _loopback(host) -> bool:
    if isinstance(host, str) and host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:  # a name (would need DNS) or an AF_UNIX path
        return isinstance(host, (bytes, str)) and str(host).startswith("/")


@pytest.fixture
def no_network(monkeypatch):
    """Any connect / create_connection / DNS lookup to a non-loopback address fails loudly."""
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def check(address):
        host = address[0] if isinstance(address, tuple) else address
        if not _loopback(host):
            attempts.append(address)
            raise AssertionError(f"network access attempted: {address!r}")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    def create_connection(address, *a, **kw):
        check(address)
        return real_create(address, *a, **kw)

    def getaddrinfo(host, *a, **kw):
        check((host,))
        return real_getaddrinfo(host, *a, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def test_the_guard_catches_non_loopback_and_allows_loopback(no_network):
    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("203.0.113.7", 443), timeout=0.01)  # TEST-NET-3, never routed
    with pytest.raises(AssertionError, match="network access"):
        socket.getaddrinfo("huggingface.co", 443)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()
    assert len(no_network) == 2


@pytest.mark.parametrize("spec", ["expert", "clicker:2", "oracle-box"])
def test_a_full_episode_with_the_fake_tool_stays_offline(no_network, spec):
    mask, rec = Session(FakeFactory(), build_policy(spec)).run(make_image(), "t", blob_gt())
    assert rec.end_reason in ("stop", "budget") and mask.any()
    assert no_network == []


@pytest.mark.skipif(
    importlib.util.find_spec("medsam_agent_rt.segmenters.episode") is None,
    reason="needs the embedded segmenter (medsam_agent_rt.segmenters.episode)",
)
def test_a_full_episode_with_the_embedded_segmenter_stays_offline(no_network):
    from medsam_agent_rt.segmenters import build_segmenter

    seg = build_segmenter("litemedsam")
    image = make_image(96, 128)
    gt = np.zeros((96, 128), bool)
    gt[30:70, 40:100] = True
    mask, rec = Session(seg, build_policy("expert")).run(image, "t", gt)
    assert rec.end_reason in ("stop", "budget")
    assert no_network == []
