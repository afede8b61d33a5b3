"""Fixtures of the hooks tests: no test here may reach beyond loopback by accident."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # unix sockets
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that would need DNS


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Connections to anything but loopback fail loudly instead of leaving the machine."""

    def guarded(sock: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise AssertionError(f"hooks tests must not connect to {address!r}")
        return _real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """For pure tests: any connection at all is a bug."""

    def refuse(_sock: socket.socket, address: Any) -> Any:
        raise AssertionError(f"a pure hook test tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
