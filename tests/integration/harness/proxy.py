"""A loopback TCP proxy that injects faults between a client and a server.

Modes (switch at any time, they apply to live connections too):

- ``pass``: forward bytes both ways;
- ``delay``: forward, but hold each chunk ``delay`` seconds first;
- ``blackhole``: accept connections and swallow what clients send; never connect
  upstream, never answer.

:meth:`FaultProxy.cut` resets every live connection (RST to the client, close to the
server). All threads are daemons, wake up at least every ``TICK`` seconds to notice
:meth:`FaultProxy.close`, and are joined (bounded) when it runs.
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

__all__ = ["FaultProxy", "Mode"]

TICK = 0.05
CONNECT_TIMEOUT = 5.0


class Mode(enum.Enum):
    PASS = "pass"
    DELAY = "delay"
    BLACKHOLE = "blackhole"


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
