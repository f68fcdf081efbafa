"""The native class of the ldap3 driver: the ``ldap3.Connection`` its holders get.

Exactly ldap3's class, but for a note of the holder's binds (such a connection is not
pooled again) and one retry of a read that lost its connection, through the pool. And
what the driver reads of ldap3's errors: timeouts, and the exception for a result.
"""

from __future__ import annotations

from typing import Any

import ldap3
from ldap3.core import exceptions as lx

from ldappool._drivers._shared import PAGED_RESULTS, WHOAMI, LentState, socket_timed_out

__all__ = ["PooledConnection", "continues_paging", "is_timeout", "result_error"]


class PooledConnection(LentState, ldap3.Connection):
    """An ``ldap3.Connection`` that notes when its holder binds, rebinds or unbinds it.

    Otherwise exactly its base class. The pool reads the note at checkin: a connection
    whose identity may differ from the one it was lent under is not pooled again.
    A failed bind counts too: it leaves the connection anonymous (RFC 4511).

    As python-ldap's StateConnector (ldappool 3.x's connection class): ``active``
    (lent now) and ``get_lifetime()`` (seconds since it was bound).
    """

    _ldappool_identity_changed = False

    # The reads retried once on a new connection while lent: search (and so paged
    # searches, page by page), compare, and the WhoAmI extended operation. search, on
    # every search's path, spells out its arguments: packing them into *args and
    # **kwargs and out again costs ~1 us per search once caches are cold.
    def search(
        self,
        search_base: str,
        search_filter: str,
        search_scope: Any = ldap3.SUBTREE,
        dereference_aliases: Any = ldap3.DEREF_ALWAYS,
        attributes: Any = None,
        size_limit: int = 0,
        time_limit: int = 0,
        types_only: bool = False,
        get_operational_attributes: bool = False,
        controls: Any = None,
        paged_size: int | None = None,
        paged_criticality: bool = False,
        paged_cookie: Any = None,
        auto_escape: bool | None = None,
    ) -> Any:
        try:
            return _SEARCH(
                self, search_base, search_filter, search_scope, dereference_aliases,
                attributes, size_limit, time_limit, types_only, get_operational_attributes,
                controls, paged_size, paged_criticality, paged_cookie, auto_escape,
            )  # fmt: skip
        except lx.LDAPCommunicationError as lost:
            if continues_paging(paged_cookie, controls):
                raise
            args = (
                search_base, search_filter, search_scope, dereference_aliases, attributes,
                size_limit, time_limit, types_only, get_operational_attributes, controls,
                paged_size, paged_criticality, paged_cookie, auto_escape,
            )  # fmt: skip
            return self._ldappool_retry(lost, _SEARCH, args, {})

    def compare(self, *args: Any, **kwargs: Any) -> Any:
        return self._ldappool_read(ldap3.Connection.compare, args, kwargs)

    def extended(self, request_name: str, *args: Any, **kwargs: Any) -> Any:
        if request_name != WHOAMI:
            return ldap3.Connection.extended(self, request_name, *args, **kwargs)
        return self._ldappool_read(ldap3.Connection.extended, (request_name, *args), kwargs)

    def _ldappool_read(self, read: Any, args: Any, kwargs: Any) -> Any:
        try:
            return read(self, *args, **kwargs)
        except lx.LDAPCommunicationError as lost:
            return self._ldappool_retry(lost, read, args, kwargs)

    def _ldappool_retry(self, lost: Exception, read: Any, args: Any, kwargs: Any) -> Any:
        if is_timeout(lost):
            raise lost  # a timed-out server may still be working on the request
        return super()._ldappool_retry(lost, read, args, kwargs)

    def bind(self, read_server_info: bool = True, controls: Any = None) -> Any:
        self._ldappool_identity_changed = True
        return super().bind(read_server_info, controls)

    def rebind(self, *args: Any, **kwargs: Any) -> Any:
        self._ldappool_identity_changed = True
        return super().rebind(*args, **kwargs)

    def unbind(self, controls: Any = None) -> Any:
        self._ldappool_identity_changed = True
        return super().unbind(controls)


_SEARCH = ldap3.Connection.search
_RESULT_KEYS = ("result", "description", "dn", "message", "type")


def continues_paging(cookie: Any, controls: Any) -> bool:
    """A page after the first: its cookie means nothing on another connection, so
    such a search is not retried (the server would answer a protocol error). A paged
    control passed by hand cannot be read cheaply: not retried either."""
    return bool(cookie) or any(c[0] == PAGED_RESULTS for c in controls or ())


def is_timeout(error: BaseException) -> bool:
    # ldap3 merges the socket's exception into its own, e.g. type("LDAPSocketReceiveError",
    # (LDAPSocketReceiveError, TimeoutError), {}): isinstance works.
    if socket_timed_out(error) or isinstance(error, lx.LDAPResponseTimeoutError):
        return True
    # Several addresses tried (::1 then 127.0.0.1): LDAPSocketOpenError(msg, [(exc, addr)])
    tried = error.args[1] if isinstance(error, lx.LDAPSocketOpenError) and error.args[1:] else 0
    if not isinstance(tried, list) or not tried:
        return False
    return all(isinstance(t, tuple) and socket_timed_out(t[:1] and t[0]) for t in tried)


def result_error(native: ldap3.Connection, what: str) -> Exception:
    """What ldap3 raises for the last result with ``raise_exceptions=True``."""
    res = native.result
    if isinstance(res, dict) and res.get("result"):
        # Builds the subclass for the result code: LDAPInvalidCredentialsResult for 49...
        return lx.LDAPOperationResult(*(res.get(k) for k in _RESULT_KEYS))
    return lx.LDAPBindError(f"{what}: {native.last_error or 'no result'}")
