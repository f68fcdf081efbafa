"""After ``os.fork()``: every pool of the child process forgets its parent's connections.

The child shares the parent's sockets. Reading, writing or unbinding on one would
corrupt the parent's conversation with the server, so each pool is told, in the child
only, to abandon its connections without any I/O and to start anew (a new lock too:
the parent's may have been held by a thread that does not exist in the child).
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "watch"]


class ForkAware(Protocol):
    """What a pool runner offers to be told of a fork."""

    def after_fork_in_child(self) -> None: ...


_WATCHED: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def watch(pool: ForkAware) -> None:
    """Have ``pool.after_fork_in_child()`` called in each child forked from now on
    (for as long as the pool lives)."""
    _WATCHED.add(pool)


def _after_fork_in_child() -> None:
    for pool in list(_WATCHED):
        pool.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
