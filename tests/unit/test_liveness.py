"""SocketWatch: a server that closed or wrote to an idle connection, seen without I/O."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from ldappool.drivers._liveness import SocketWatch


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


def test_tcp_peer_writing_is_noticed(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    watch = SocketWatch(client)
    assert watch.alive()
    server.sendall(b"\x30\x00")  # e.g. a Notice of Disconnection
    assert eventually(lambda: not watch.alive())
    client.recv(2)
    assert watch.alive()  # read by the client: nothing left waiting


def test_tcp_peer_closing_is_noticed(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    watch = SocketWatch(client)
    server.close()
    assert eventually(lambda: not watch.alive())


def test_unix_socket_falls_back_to_poll() -> None:
    left, right = socket.socketpair()
    with left, right:
        watch = SocketWatch(left)
        assert watch.alive()
        right.close()
        assert eventually(lambda: not watch.alive())


def test_watch_by_fd_uses_a_dup_and_closes_only_it(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    watch = SocketWatch.for_fd(client.fileno())
    assert watch.alive()
    watch.close()
    os.fstat(client.fileno())  # the original fd is untouched
    client.sendall(b"still open")
    assert server.recv(10) == b"still open"
