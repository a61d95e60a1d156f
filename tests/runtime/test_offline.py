"""ARCHITECTURE decision 8: a full episode opens no non-loopback socket (the ``no_network``
guard lives in conftest.py; test_episode_litemedsam.py runs it around the real segmenter)."""

from __future__ import annotations

import socket

import pytest
from runtime_fakes import FakeFactory, blob_gt, make_image

from medsam_agent_rt.episode import Episode
from medsam_agent_rt.policies import build_policy


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
    mask, rec = Episode(FakeFactory(), build_policy(spec)).run(make_image(), "t", blob_gt())
    assert rec.end_reason in ("stop", "budget") and mask.any()
    assert no_network == []
