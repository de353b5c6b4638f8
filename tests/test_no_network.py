"""The suite's network guard (tests/conftest.py): loopback only."""

from __future__ import annotations

import socket
import urllib.request

import pytest


def test_a_connection_beyond_loopback_fails_naming_the_address() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so nothing is sent even without the guard.
    with pytest.raises(AssertionError, match=r"a test tried to connect to \('192\.0\.2\.1', 80\)"):
        urllib.request.urlopen("http://192.0.2.1/", timeout=5)


def test_loopback_connections_still_work() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"
