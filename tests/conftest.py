"""Shared fixtures: seeded randomness, and no test reaches beyond this machine."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator seeded with 0, so every test sees the same numbers."""
    return np.random.default_rng(0)


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple):                  # AF_UNIX paths and the like
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:                                  # a host name: it would need a lookup
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any connection from the test process to an address other than loopback.

    A test that would download (a regression in a data or config check) then fails at once,
    naming the address, instead of reaching the internet. Local test servers still work.
    """
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if not _is_local(address):
            self.close()                                # callers close sockets only on OSError
            raise AssertionError(f"a test tried to connect to {address!r}; tests stay on this machine")
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
