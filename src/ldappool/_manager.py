"""ConnectionManager: the public face, with the API of ldappool 3.x.

Its arguments, settings, policies and attributes are those of
:class:`~ldappool._base_manager.BaseManager`, shared with the asyncio manager; all
pooling is delegated to the threaded runner (:class:`~ldappool._threaded.ThreadedPool`).
Nothing here does I/O of its own.
"""

from __future__ import annotations

from typing import Any

from ldappool._auth import NO_POLICY, AuthResult, forget_locals
from ldappool._base_manager import BaseManager
from ldappool._dialer import Dialer
from ldappool._lease import Lease
from ldappool._port import Sasl
from ldappool._threaded import ThreadedPool

__all__ = ["ConnectionManager"]


class ConnectionManager(BaseManager):
    """A pool of bound LDAP connections to one or more servers.

    Every argument is described in the usage guide; each is checked here, so a bad value raises
    ValueError or TypeError naming it now rather than at the first checkout.
    """

    _pool: ThreadedPool

    def _runner(self, dialer: Dialer, **options: Any) -> ThreadedPool:
        return ThreadedPool(dialer, **options)

    # -- lending -------------------------------------------------------------------------

    def connection(
        self, bind: str | None = None, passwd: str | None = None, *, sasl: Sasl | None = None
    ) -> Lease:
        """A context manager lending a bound connection: the driver's own object.

        ``bind`` and ``passwd`` default, each on its own, to the manager's (as in the
        ldappool 3.x); ``sasl`` binds with SASL instead. The connection is returned to
        the pool when the block ends, unless the block lost it (connection errors) or
        re-bound it. A bind DN without a password raises InvalidCredentialsError here:
        servers would take it as anonymous (see :meth:`authenticate`).
        """
        default = self._default
        if bind is None and passwd is None and sasl is None and default is not None:
            return Lease(self._pool, default)
        return Lease(self._pool, self._credentials(bind, passwd, sasl))

    def authenticate(self, dn: str, password: str) -> AuthResult:
        """Check ``dn``'s ``password`` with exactly one bind; return what the server's
        password policy said, or raise.

        Lockout-safe: the bind is sent once, never retried and never sent to another
        server once sent (an answer lost on the way raises BackendError: it may have
        counted as a failed attempt); only connecting is retried and failed over. The
        check uses connections kept for password checks (at most ``auth_size`` of the
        pool's ``size``), never one a ``connection()`` could get while bound as the
        user, and keeps no password afterwards. Raises InvalidCredentialsError (and its
        AccountLockedError, PasswordExpiredError) when refused, at once for an empty
        password or DN; BackendError, MaxConnectionReachedError, PoolClosedError.
        """
        try:
            if not (dn.__class__ is str and password.__class__ is str and dn and password):
                self._check_password_args(dn, password)  # raises, unless str subclasses
            answer, server = self._pool.authenticate(dn, password)
        except BaseException as error:  # no frame the error passed through keeps password
            del password
            forget_locals(error)
            raise
        if answer.refusal is None:
            return AuthResult(dn, server.uri if server else None, answer.policy or NO_POLICY)
        del password  # this frame is in the error's traceback
        raise self._password_error(answer, server, dn) from answer.refusal

    def open(self, wait: bool = True) -> None:
        """Open ``min_size`` connections of the default identity now.

        ``wait=True``: here and now, raising BackendError (or InvalidCredentialsError)
        if one cannot be opened, so that a service can refuse to start without its
        directory; ``wait=False``: in the background. Either way the upkeep thread
        starts (when ``min_size`` or ``keepalive`` is set), as it would with the first
        connection otherwise.
        """
        self._pool.open(wait)

    def check(self) -> int:
        """Look at every idle connection now: its socket, then one WhoAmI round trip.
        Close the dead ones (the upkeep, or the next checkouts, open new ones); return
        how many were closed."""
        return self._pool.check()

    def close(self) -> None:
        """Unbind every idle connection and lend no more; lent ones close at checkin.
        Stops the upkeep thread."""
        self._pool.close()

    def __enter__(self) -> ConnectionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
