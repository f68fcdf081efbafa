"""Has the server closed an idle connection? Answered without a round trip.

Shared by the drivers. On Linux, a TCP socket's state is read with
``getsockopt(TCP_INFO)``: a server that closed the connection has sent FIN (the state
leaves ESTABLISHED for CLOSE_WAIT) or RST (CLOSE), and whatever else it may write to an
idle connection first (a Notice of Disconnection, a TLS alert) comes right before that
FIN; such data, unread, shows in ``getsockopt(SO_MEMINFO)`` as receive-queue memory.
Unlike ``poll()`` (or ``ioctl``), ``getsockopt`` runs without releasing the GIL: with
eight threads, a poll on every checkout made each checkout a thread switch and cost a
fifth or more of the throughput. Elsewhere (other systems, ldapi:// sockets) a
zero-timeout poll is used: readable or hung up means closed.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys

__all__ = ["SocketWatch"]

_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux >= 4.12; [0]: receive queue memory
_EMPTY = b"\0\0\0\0"
_LINUX = sys.platform.startswith("linux")
_TCP_INFO = getattr(socket, "TCP_INFO", None) if _LINUX else None
_TCP_ESTABLISHED = 1  # tcpi_state, the first byte of struct tcp_info
_POLL_EVENTS = select.POLLIN | select.POLLPRI if hasattr(select, "poll") else 0


class SocketWatch:
    """Watches one connected socket for the peer closing it."""

    __slots__ = ("_owned", "_poll", "_sock", "_tcp")

    def __init__(self, sock: socket.socket, *, owned: bool = False) -> None:
        self._sock = sock
        self._owned = owned  # a dup made for watching: ours to close
        self._tcp = (
            _TCP_INFO is not None
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
            and _supported(sock)
        )
        self._poll: select.poll | None = None
        if not self._tcp and _POLL_EVENTS:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), _POLL_EVENTS)

    @classmethod
    def for_fd(cls, fd: int) -> SocketWatch:
        """Watch a socket known only by its fd (python-ldap): through a dup of it."""
        return cls(socket.socket(fileno=os.dup(fd)), owned=True)

    def alive(self) -> bool:
        """False once the peer has closed or reset the connection (poll: or written to it)."""
        try:
            if self._tcp:
                assert _TCP_INFO is not None
                if self._sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] != _TCP_ESTABLISHED:
                    return False  # FIN or RST received: CLOSE_WAIT, CLOSE...
                # Written to while idle: data waits in the receive queue.
                return self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4) == _EMPTY
            if self._poll is not None:
                return not self._poll.poll(0)
            readable, _, broken = select.select([self._sock], [], [self._sock], 0)
            return not (readable or broken)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        """Release the dup, if this watch made one. Never raises."""
        self._poll = None
        if self._owned:
            with contextlib.suppress(OSError):
                self._sock.close()


def _supported(sock: socket.socket) -> bool:
    """Whether this kernel answers both getsockopt calls (SO_MEMINFO needs 4.12)."""
    try:
        assert _TCP_INFO is not None
        sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)
        sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4)
    except OSError:
        return False
    return True
