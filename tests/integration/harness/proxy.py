"""A loopback TCP proxy that injects faults between a client and a server.

Modes (switch at any time, they apply to live connections too):

- ``pass``: forward bytes both ways;
- ``delay``: forward, but hold each chunk ``delay`` seconds first;
- ``blackhole``: accept connections and swallow what clients send; never connect
  upstream, never answer.

:meth:`FaultProxy.cut` resets every live connection (RST to the client, close to the
server). :meth:`FaultProxy.cut_on` arms a trap for the next requests of one LDAP
operation: the connection carrying one is reset before the server sees the request
(the request is lost), or once the server answers it (the answer is lost: the server
did the work). All threads are daemons, wake up at least every ``TICK`` seconds to
notice :meth:`FaultProxy.close`, and are joined (bounded) when it runs.

:class:`SilentListener` is a port where TCP connects hang, like a host that is down
behind a firewall dropping packets.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

__all__ = ["FaultProxy", "Mode", "Op", "SilentListener", "request_ops"]

TICK = 0.05
CONNECT_TIMEOUT = 5.0


class Mode(enum.Enum):
    PASS = "pass"
    DELAY = "delay"
    BLACKHOLE = "blackhole"


class Op(enum.IntEnum):
    """LDAP request protocolOp tags (RFC 4511, BER application tags)."""

    BIND = 0x60
    UNBIND = 0x42
    SEARCH = 0x63
    MODIFY = 0x66
    ADD = 0x68
    DELETE = 0x4A
    MODDN = 0x6C
    COMPARE = 0x6E
    ABANDON = 0x50
    EXTENDED = 0x77


def _ber_length(data: bytes, at: int) -> tuple[int, int]:
    """(length, offset of the content) of the BER length octets at ``at``."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


def request_ops(data: bytes) -> list[int]:
    """The protocolOp tag of each LDAP message that starts in ``data``.

    A client sends each request in one write, so a chunk the proxy reads holds whole
    messages; a truncated one at the end still yields its tag when it is there.
    """
    tags: list[int] = []
    at = 0
    try:
        while at < len(data) and data[at] == 0x30:  # LDAPMessage ::= SEQUENCE
            length, body = _ber_length(data, at + 1)
            if data[body] != 0x02:  # messageID INTEGER
                break
            id_length, id_at = _ber_length(data, body + 1)
            tags.append(data[id_at + id_length])
            at = body + length
    except IndexError:
        pass
    return tags


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One client connection and, unless blackholed, its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        #: Reset this connection when the server's next answer arrives.
        self.cut_on_answer = False

    def close(self, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``(host, port)``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode = Mode.PASS
        self.delay = 0.0
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TICK)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        #: Requests seen from clients, by protocolOp tag (see :class:`Op`).
        self.requests: dict[int, int] = {}
        #: Connections reset by :meth:`cut_on` traps.
        self.trapped = 0
        self._traps: dict[int, tuple[int, bool]] = {}
        self._spawn(self._accept_loop, "proxy-accept")

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<FaultProxy {self.uri} -> {self.target} {self.mode.value} live={self.live()}>"

    # -- control -----------------------------------------------------------------

    def pass_through(self) -> None:
        self.mode, self.delay = Mode.PASS, 0.0

    def add_delay(self, seconds: float) -> None:
        self.mode, self.delay = Mode.DELAY, seconds

    def blackhole(self) -> None:
        self.mode = Mode.BLACKHOLE

    def cut(self) -> int:
        """Reset every live connection; return how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close(reset=True)
        return len(pairs)

    def cut_on(self, op: Op, count: int = 1, *, answered: bool = False) -> None:
        """Arm a trap: the next ``count`` ``op`` requests each reset their connection.

        ``answered=False``: the request is dropped, the server never sees it.
        ``answered=True``: the request goes through and the connection is reset when
        the server's answer arrives, which the client never gets (a write done, but
        not known to be). ``count=0`` disarms.
        """
        with self._lock:
            if count > 0:
                self._traps[int(op)] = (count, answered)
            else:
                self._traps.pop(int(op), None)

    def _trap(self, data: bytes) -> bool | None:
        """Count the requests in ``data``; None, or how a trap armed for them fires."""
        fired: bool | None = None
        with self._lock:
            for tag in request_ops(data):
                self.requests[tag] = self.requests.get(tag, 0) + 1
                count, answered = self._traps.get(tag, (0, False))
                if count > 0 and fired is None:
                    fired = answered
                    self.trapped += 1
                    if count > 1:
                        self._traps[tag] = (count - 1, answered)
                    else:
                        del self._traps[tag]
        return fired

    def live(self) -> int:
        with self._lock:
            self._pairs = [p for p in self._pairs if not p.closed.is_set()]
            return len(self._pairs)

    def close(self) -> None:
        """Stop accepting, cut everything, join the threads (bounded)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        deadline = time.monotonic() + 2.0
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- threads -----------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            upstream = None
            if self.mode is not Mode.BLACKHOLE:
                try:
                    upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
                except OSError:
                    _reset(client)
                    continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
            self._spawn(self._pump, f"proxy-pump-{self.accepted}", pair)

    def _pump(self, pair: _Pair) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(pair.client, selectors.EVENT_READ, pair.upstream)
            if pair.upstream is not None:
                sel.register(pair.upstream, selectors.EVENT_READ, pair.client)
            while not (self._stopping.is_set() or pair.closed.is_set()):
                try:
                    events = sel.select(timeout=TICK)
                    for key, _ in events:
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(65536)
                        if not data:
                            pair.close()
                            return
                        if source is pair.client:
                            fired = self._trap(data)
                            if fired is False:  # drop the request with the connection
                                pair.close(reset=True)
                                return
                            pair.cut_on_answer = pair.cut_on_answer or bool(fired)
                        elif pair.cut_on_answer:  # the server answered: lose the answer
                            pair.close(reset=True)
                            return
                        self._forward(pair, data, key.data)
                except (OSError, ValueError):  # a socket closed under us (cut/close)
                    pair.close()
                    return
        pair.close()

    def _forward(self, pair: _Pair, data: bytes, dest: socket.socket | None) -> None:
        if self.mode is Mode.BLACKHOLE or dest is None:
            return  # swallowed
        if self.mode is Mode.DELAY and self.delay > 0:
            # Bounded by close(): wait on the events rather than sleeping blindly.
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline:
                if self._stopping.is_set() or pair.closed.is_set():
                    return
                pair.closed.wait(min(TICK, max(0.0, deadline - time.monotonic())))
        dest.sendall(data)


class SilentListener:
    """A loopback port where TCP connects hang until the client gives up.

    A listening socket that never accepts, its one-slot backlog filled by a connection
    of its own: the kernel drops later SYNs (``tcp_abort_on_overflow`` is 0 by
    default), as a firewall or a vanished host would. Nothing runs in the background.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port: int = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=CONNECT_TIMEOUT)

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<SilentListener {self.uri}>"

    def close(self) -> None:
        for sock in (self._filler, self._listener):
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
