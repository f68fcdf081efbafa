"""Giving slapd a core of its own, as if it ran on a machine of its own.

The bench runs slapd and its clients on one machine (the network here is loopback
only). Left to the scheduler, on a small machine they share every core: a client's
threads then wake on whichever core slapd is not using at that moment, each hand-over
of the GIL crosses cores, and slapd evicts the client's code and data from the caches
between two of its calls. The login storm measured that on this 2-core machine: 50 us
of client CPU per pre-bound bind, 3.3 thread switches per attempt, and rounds that
flipped, process by process, between that and a mode twice as fast (21 us, 1.0
switch), depending on where the scheduler happened to put the threads. With slapd on
one core and the clients on the others, every round runs in the second mode: what a
client on a host of its own, talking to a server on another, sees.

:func:`split_cores` does that for the duration of a ``with`` block: slapd's threads
(and those it starts meanwhile, which inherit it) on the first core this process may
use, this process (and the workers it starts meanwhile) on the others. Linux only; on
a machine with one core, or without ``sched_setaffinity``, it changes nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Split", "split_cores"]


@dataclass(frozen=True)
class Split:
    """Where slapd and the clients ran: the cores of each (empty: not split)."""

    server: tuple[int, ...] = ()
    clients: tuple[int, ...] = ()

    def describe(self) -> str:
        if not self.server:
            return "slapd and the clients sharing every core"
        return f"slapd on core {_cores(self.server)}, the clients on {_cores(self.clients)}"


def _cores(cores: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cores)


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(Path("/proc") / str(pid) / "task")]
    except OSError:
        return []


def _pin(pid: int, cores: set[int]) -> None:
    for tid in _threads(pid):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cores)


@contextlib.contextmanager
def split_cores(server_pid: int, split: bool = True) -> Iterator[Split]:
    """slapd (``server_pid``) on one core, this process on the rest, until the end of
    the block; then both back on every core they had. ``split=False``, one core, or no
    ``sched_setaffinity``: nothing moves (the Split says so)."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    getaffinity = getattr(os, "sched_getaffinity", None)
    if not split or setaffinity is None or getaffinity is None:
        yield Split()
        return
    ours = set(getaffinity(0))
    if len(ours) < 2:
        yield Split()
        return
    server = {min(ours)}
    clients = ours - server
    theirs = set(getaffinity(server_pid))
    _pin(server_pid, server)
    setaffinity(0, clients)
    try:
        yield Split(tuple(sorted(server)), tuple(sorted(clients)))
    finally:
        setaffinity(0, ours)
        _pin(server_pid, theirs)
