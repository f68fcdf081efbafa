"""How often to try one server, and how long to wait in between."""

from __future__ import annotations

import attrs

from ldappool._validate import non_negative, positive_int

__all__ = ["RetryPolicy"]


@attrs.frozen
class RetryPolicy:
    """Retry a server that is down or timed out; never a refused password.

    The pool consults it after each failed connect/bind attempt on one server, for
    errors the driver classifies as DOWN or TIMEOUT only: invalid credentials fail at
    once (account lockout), and other LDAP errors are not transient. When the policy
    says stop, the pool moves on to the next server of the failover policy.

    Override :meth:`should_retry` and :meth:`backoff` in a subclass for other
    schedules; the pool calls nothing else.
    """

    #: Connect/bind attempts per server, counting the first (``retry_max``).
    max_attempts: int = attrs.field(default=3, validator=positive_int)
    #: Seconds between attempts (``retry_delay``).
    delay: float = attrs.field(default=0.1, validator=non_negative)

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether to try the same server again after failed ``attempt`` (counted from 1)."""
        return attempt < self.max_attempts

    def backoff(self, attempt: int) -> float:
        """Seconds to sleep before attempt ``attempt + 1``."""
        return self.delay
