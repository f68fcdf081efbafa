"""Has the server closed an idle connection? Answered without a round trip.

Shared by the drivers. On Linux, a TCP socket's state is read with one
``getsockopt(TCP_INFO)``: a server that closed the connection has sent FIN (the state
leaves ESTABLISHED for CLOSE_WAIT), a load balancer or firewall that cut it has sent
RST (CLOSE). Whatever an LDAP server writes before closing (a Notice of Disconnection, a
TLS alert) is followed by its FIN, so the state alone tells.

Why this call: it costs one system call and holds on to the GIL. ``poll()`` (and
``ioctl``) release the GIL, which with several threads turns checkouts into thread
switches: about 5 % of the throughput with 8 threads, more than the microsecond it
saves on one thread (``make hot-path``, docs/performance.rst). ``SO_MEMINFO`` (unread
data) misses a reset connection, and a FIN the library read along with its last
answer; both together cost a second system call. Elsewhere (other systems, ldapi://
sockets) a zero-timeout poll is used: readable or hung up means closed.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
from collections.abc import Callable

__all__ = ["SocketWatch", "dead", "probe"]

_LINUX = sys.platform.startswith("linux")
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if _LINUX else None
_ESTABLISHED = b"\x01"  # tcpi_state, the first byte of struct tcp_info
_POLL_EVENTS = select.POLLIN | select.POLLPRI if hasattr(select, "poll") else 0


class SocketWatch:
    """Watches one connected socket for the peer closing it.

    ``alive()`` is a closure picked once per socket, so a checkout pays one call and
    one system call, nothing else.
    """

    __slots__ = ("_owned", "_sock", "alive")

    def __init__(self, sock: socket.socket, *, owned: bool = False) -> None:
        self._sock = sock
        self._owned = owned  # a dup made for watching: ours to close
        #: False once the peer has closed or reset the connection. Never raises.
        self.alive: Callable[[], bool] = probe(sock)

    @classmethod
    def for_fd(cls, fd: int) -> SocketWatch:
        """Watch a socket known only by its fd (python-ldap): through a dup of it."""
        return cls(socket.socket(fileno=os.dup(fd)), owned=True)

    def close(self) -> None:
        """Release the dup, if this watch made one. Never raises."""
        self.alive = dead
        if self._owned:
            with contextlib.suppress(OSError):
                self._sock.close()


def probe(sock: socket.socket) -> Callable[[], bool]:
    """The cheapest check this socket allows: True while the peer has not closed it."""
    if _TCP_INFO is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        tcp_info = _TCP_INFO
        getsockopt = sock.getsockopt
        try:
            getsockopt(socket.IPPROTO_TCP, tcp_info, 1)
        except OSError:
            pass  # not a TCP socket after all, or a kernel without TCP_INFO
        else:

            def established() -> bool:
                try:
                    return getsockopt(socket.IPPROTO_TCP, tcp_info, 1) == _ESTABLISHED
                except OSError:
                    return False

            return established
    if _POLL_EVENTS:
        poller = select.poll()
        poller.register(sock.fileno(), _POLL_EVENTS)

        def quiet() -> bool:
            try:
                return not poller.poll(0)
            except (OSError, ValueError):
                return False

        return quiet

    def quiet_select() -> bool:
        try:
            readable, _, broken = select.select([sock], [], [sock], 0)
        except (OSError, ValueError):
            return False
        return not (readable or broken)

    return quiet_select


def dead() -> bool:
    """The probe of a socket closed or forgotten."""
    return False
