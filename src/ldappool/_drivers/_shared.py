"""What the two built-in drivers' native classes have in common."""

from __future__ import annotations

import time

from ldappool._port import Owner

__all__ = ["LentState"]


class LentState:
    """ldappool 3.x's ``active`` and ``get_lifetime()``, for a native connection class.

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
