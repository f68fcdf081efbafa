"""What the two built-in drivers have in common: their native classes' 3.x state and
read retry, the paged-results OID, the fork-safe release of a socket, timeouts."""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from ldappool._port import Owner

__all__ = ["PAGED_RESULTS", "WHOAMI", "LentState", "blackhole", "socket_timed_out"]

#: The simple paged results control (RFC 2696): a page's cookie is only good on the
#: connection that returned it.
PAGED_RESULTS = "1.2.840.113556.1.4.319"
#: The WhoAmI extended operation (RFC 4532): the drivers' ping, and a retried read.
WHOAMI = "1.3.6.1.4.1.4203.1.11.3"


class LentState:
    """ldappool 3.x's ``active`` and ``get_lifetime()``, and the read retry, for a native
    connection class.

    Reads what the pool gave the connection (its :class:`~ldappool.Owner`) and when the
    connection was first bound on its current transport (``_connection_time``, a
    ``time.time()``, set by the driver): nothing to keep up on the checkout path.
    """

    _ldappool_owner: Owner | None = None
    _connection_time: float | None = None

    @property
    def active(self) -> bool:
        """Whether the pool has lent this connection out now."""
        owner = self._ldappool_owner
        return owner is not None and owner.lent

    def get_lifetime(self) -> float:
        """Seconds since the connection was bound (0 before, and after an unbind)."""
        bound_at = self._connection_time
        return 0 if bound_at is None else time.time() - bound_at

    def _ldappool_retry(self, lost: Exception, read: Any, args: Any, kwargs: Any) -> Any:
        """A read lost its connection: have the pool reconnect it (``Owner.recover``)
        and run ``read`` once more; or raise ``lost``, the read's own error, as without a
        pool (not lent, or no server took the new connection)."""
        owner = self._ldappool_owner
        if owner is None:
            raise lost
        try:
            owner.recover()
        except Exception:
            raise lost from None
        return read(self, *args, **kwargs)


def blackhole(fd: int) -> None:
    """Point ``fd`` at /dev/null: drops this process's reference to the socket it was.

    For a forked child's copy of the parent's connection: whatever the LDAP library
    sends on it afterwards (an unbind, a TLS close_notify, a shutdown()) goes nowhere,
    and the parent's conversation with the server is untouched.
    """
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


def socket_timed_out(error: object) -> bool:
    """Whether ``error`` is the socket layer's time-out (a TimeoutError, or ETIMEDOUT)."""
    if isinstance(error, TimeoutError):
        return True
    return isinstance(error, OSError) and error.errno == errno.ETIMEDOUT
