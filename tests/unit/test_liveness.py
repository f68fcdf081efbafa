"""SocketWatch: a server that closed or reset an idle connection, seen without I/O."""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from ldappool._drivers._liveness import SocketWatch
from tests.unit.polling import eventually


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


def test_tcp_peer_closing_is_noticed(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    watch = SocketWatch(client)
    assert watch.alive()
    server.close()  # FIN
    assert eventually(lambda: not watch.alive())


def test_tcp_peer_reset_is_noticed(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    watch = SocketWatch(client)
    # What a load balancer does on idle timeout: RST, no FIN. Nothing is left to read.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()
    assert eventually(lambda: not watch.alive())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP state: Linux only")
def test_tcp_peer_writing_without_closing_is_still_alive(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    watch = SocketWatch(client)
    server.sendall(b"\x30\x00")
    assert client.recv(2, socket.MSG_PEEK) == b"\x30\x00"  # arrived, unread
    assert watch.alive()  # the TCP state says open: an LDAP server closes after writing
    server.close()
    assert eventually(lambda: not watch.alive())


def test_closed_watch_says_dead(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = tcp_pair
    watch = SocketWatch(client)
    watch.close()
    assert not watch.alive()


def test_unix_socket_falls_back_to_poll() -> None:
    left, right = socket.socketpair()
    with left, right:
        watch = SocketWatch(left)
        assert watch.alive()
        right.sendall(b"\x30")  # poll: readable counts as closed
        assert not watch.alive()
        left.recv(1)
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
