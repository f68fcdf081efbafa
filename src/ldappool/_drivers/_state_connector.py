"""``StateConnector``: the LDAPObject the python-ldap driver lends out.

It is the class ldappool 3.x lent (and that programs subclass or name as
``connector_cls``), with the same surface: ``connected``, ``who``, ``get_lifetime()``,
``active``. It is not a ``ReconnectLDAPObject``: reconnecting is the pool's job, and
ReconnectLDAPObject retries on its own (nested in the pool's retries) and replays writes.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import ldap
import ldap.ldapobject

from ldappool._drivers._shared import PAGED_RESULTS, LentState

__all__ = ["BASE", "StateConnector", "continues_paging"]

BASE = ldap.ldapobject.SimpleLDAPObject
#: python-ldap's module trace level from which LDAPLock writes a line per lock taken.
_LOCK_TRACE_LEVEL = ldap.LDAPLock._min_trace_level
# What a read raises when its connection is gone: the pool may reconnect and retry it.
_LOST_ERRORS = (ldap.SERVER_DOWN, ldap.UNAVAILABLE)


class StateConnector(LentState, ldap.ldapobject.SimpleLDAPObject):  # type: ignore[misc]
    """A SimpleLDAPObject that knows its state, and tells the pool what its holder did.

    - ``connected``: bound (True after ``simple_bind_s``, False after an unbind).
      A holder may set it to False: the connection is then closed at checkin, as in 3.x.
    - ``who``: the DN it was last bound as. ``cred`` is always None: no password is
      kept, on the object or anywhere in the pool.
    - ``get_lifetime()``: seconds since it was first bound on its current transport.
    - ``active``: whether it is checked out now (read-only: the pool says).

    The synchronous reads are retried once on a new connection when the connection is
    lost while lent (see :meth:`search_ext_s`); options set with ``set_option`` (or the
    option attributes such as ``deref``) are set again on that new connection. The
    pool reads, at checkin, whether the holder bound, unbound or lost the connection:
    such a connection is not pooled again.

    Accepts ReconnectLDAPObject's ``retry_max`` and ``retry_delay`` (3.x passed them):
    they are kept as ``_retry_max`` and ``_retry_delay`` and not used.
    """

    #: Never a password. Anything assigned to it is dropped (see __setattr__).
    cred: None = None

    def __init__(
        self, uri: str, *args: Any, retry_max: int = 1, retry_delay: float = 60.0, **kwargs: Any
    ) -> None:
        state = self.__dict__
        state["_ldappool_options"] = {}  # before the base's __init__ sets options
        state["_ldappool_rebound"] = False
        state["_ldappool_lost"] = False
        state["_connection_time"] = None
        state["connected"] = False
        state["who"] = ""
        state["_retry_max"], state["_retry_delay"] = retry_max, retry_delay
        super().__init__(uri, *args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "cred":  # 3.x subclasses may store the password: not here
            value = None
        elif name == "connected" and not value:  # 3.x: closed at checkin, not pooled
            self.__dict__["_ldappool_rebound"] = True
        super().__setattr__(name, value)

    def __str__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"LDAP Connector ({state}) - who: {self.who!r} - uri: {self._uri!r}"

    # -- what the holder does ------------------------------------------------------

    def simple_bind_s(
        self, who: str | None = None, cred: Any = None, serverctrls: Any = None,
        clientctrls: Any = None,
    ) -> Any:  # fmt: skip
        result = super().simple_bind_s(who, cred, serverctrls, clientctrls)
        state = self.__dict__
        state["connected"], state["who"] = True, who
        if state["_connection_time"] is None:
            state["_connection_time"] = time.time()
        return result

    # simple_bind is the funnel of bind, bind_s and simple_bind_s;
    # sasl_interactive_bind_s the one of every sasl_*_bind_s but sasl_bind_s.
    # A failed bind counts too: it leaves the connection anonymous (RFC 4511).
    def simple_bind(self, *args: Any, **kwargs: Any) -> Any:
        self.__dict__["_ldappool_rebound"] = True
        return super().simple_bind(*args, **kwargs)

    def sasl_interactive_bind_s(self, *args: Any, **kwargs: Any) -> Any:
        self.__dict__["_ldappool_rebound"] = True
        return super().sasl_interactive_bind_s(*args, **kwargs)

    def sasl_bind_s(self, *args: Any, **kwargs: Any) -> Any:
        self.__dict__["_ldappool_rebound"] = True
        return super().sasl_bind_s(*args, **kwargs)

    def unbind_ext(self, *args: Any, **kwargs: Any) -> Any:
        # The funnel of unbind, unbind_s and unbind_ext_s.
        state = self.__dict__
        state["_ldappool_rebound"] = True
        state["connected"], state["who"], state["_connection_time"] = False, None, None
        return super().unbind_ext(*args, **kwargs)

    def _apply_method_s(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """ReconnectLDAPObject's, which 3.x StateConnector subclasses call: here a plain
        call, since the pool is what retries (reads only, once)."""
        return func(self, *args, **kwargs)

    def set_option(self, option: int, invalue: Any) -> Any:
        """python-ldap's set_option; the pool sets it again on a new transport."""
        self._ldappool_options[option] = invalue
        return super().set_option(option, invalue)

    # -- reads retried once on a new connection --------------------------------------

    # search_s, search_st, read_s, read_rootdse_s, read_subschemasubentry_s... all
    # funnel into search_ext_s, compare_s into compare_ext_s. Asynchronous calls and
    # writes are not retried. Each read costs one try block when nothing goes wrong:
    # the retry logic is only reached from the except clause. search_ext_s, on every
    # search's path, does the base's two steps itself (search_ext, then result) rather
    # than call it: a wrapper frame costs ~1 us per search, 1 % of a search on loopback.
    def search_ext_s(
        self,
        base: str,
        scope: int,
        filterstr: str | None = None,
        attrlist: list[str] | None = None,
        attrsonly: int = 0,
        serverctrls: Any = None,
        clientctrls: Any = None,
        timeout: float = -1,
        sizelimit: int = 0,
    ) -> Any:
        try:
            msgid = self.search_ext(
                base, scope, filterstr, attrlist, attrsonly, serverctrls, clientctrls,
                timeout, sizelimit,
            )  # fmt: skip
            return self.result(msgid, all=1, timeout=timeout)[1]
        except _LOST_ERRORS as lost:
            if continues_paging(serverctrls):
                raise
            args = (base, scope, filterstr, attrlist, attrsonly, serverctrls, clientctrls)
            return self._ldappool_retry(lost, BASE.search_ext_s, (*args, timeout, sizelimit), {})

    def compare_ext_s(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return BASE.compare_ext_s(self, *args, **kwargs)
        except _LOST_ERRORS as lost:
            return self._ldappool_retry(lost, BASE.compare_ext_s, args, kwargs)

    def whoami_s(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return BASE.whoami_s(self, *args, **kwargs)
        except _LOST_ERRORS as lost:
            return self._ldappool_retry(lost, BASE.whoami_s, args, kwargs)

    def _ldap_call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call into libldap goes through here, under the object's lock.

        After SERVER_DOWN the link is dead, or (libldap's default-connection logic)
        reopened anonymously later. After a client-side TIMEOUT the request may still
        be running on the server, its answer still to come. Either way the connection
        is not pooled again. This replaces the base method rather than wrap it (it runs
        twice per search): same lock, same ``info`` from ``errno``; with python-ldap's
        tracing on, the base's own version runs, for its trace lines.
        """
        if self._trace_level or ldap._trace_level >= _LOCK_TRACE_LEVEL:
            try:
                return BASE._ldap_call(self, func, *args, **kwargs)
            except (ldap.SERVER_DOWN, ldap.TIMEOUT):
                self.__dict__["_ldappool_lost"] = True
                raise
        # The threading lock inside python-ldap's LDAPLock: its acquire() and release()
        # only add trace lines (at the module trace level above), two Python frames a
        # call, twice per operation.
        with self._ldap_object_lock._lock:
            try:
                return func(*args, **kwargs)
            except ldap.LDAPError as error:
                if isinstance(error, (ldap.SERVER_DOWN, ldap.TIMEOUT)):
                    self.__dict__["_ldappool_lost"] = True
                _explain_errno(error)
                raise

    def _ldappool_bind(self, who: str, cred: str, controls: Any) -> Any:
        """A simple bind and its answer: ``result4``'s tuple, or the LDAPError either
        libldap call raised, handed back rather than raised. The password check's two
        calls, under the object's lock once and as :meth:`_ldap_call` makes each (lost
        marked, ``info`` from ``errno``), two frames and a lock hold fewer.

        The error comes back without its traceback: the traceback's frame holds the
        password (``cred``), and a frame kept past its return makes each frame on the
        way back out be copied to the heap as it returns (a microsecond or two for each
        wrong password). A zero ``timeout`` set by hand makes ``result4`` poll: no answer
        yet is TIMEOUT, and the connection is lost to the pool (the answer may still come).
        """
        try:
            if self._trace_level or ldap._trace_level >= _LOCK_TRACE_LEVEL:
                msgid = self._ldap_call(self._l.simple_bind, who, cred, controls, None)
                answer = self._ldap_call(self._l.result4, msgid, 1, self.timeout, 0, 0, 0)
            else:
                native = self._l
                with self._ldap_object_lock._lock:
                    msgid = native.simple_bind(who, cred, controls, None)
                    answer = native.result4(msgid, 1, self.timeout, 0, 0, 0)
        except ldap.LDAPError as error:
            if isinstance(error, (ldap.SERVER_DOWN, ldap.TIMEOUT)):
                self.__dict__["_ldappool_lost"] = True
            _explain_errno(error)
            return error.with_traceback(None)
        if answer[0] is None:
            self.__dict__["_ldappool_lost"] = True
            return ldap.TIMEOUT({"desc": "Timed out", "msgid": msgid})
        return answer


def _explain_errno(error: Exception) -> None:
    """Add the text of the error's ``errno`` as its ``info``, as python-ldap does."""
    details = error.args[0] if error.args else None
    if isinstance(details, dict) and "info" not in details and "errno" in details:
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            details["info"] = os.strerror(details["errno"])


def continues_paging(controls: Any) -> bool:
    """A page after the first: its cookie means nothing on another connection, so
    such a search is not retried (the server would answer a protocol error)."""
    return any(
        getattr(c, "controlType", None) == PAGED_RESULTS and getattr(c, "cookie", None)
        for c in controls or ()
    )
