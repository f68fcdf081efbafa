"""Duck-typed 3.x connector classes: objects that only look like python-ldap's.

ldappool 3.x built its connections as ``connector_cls(uri, retry_max=, retry_delay=)``
and then used a handful of methods on them. Test doubles (keystone's ``FakeLdapPool``)
and wrappers are written to that contract and are not LDAPObjects. This adapter drives
them the same way; what the pool cannot do without a real LDAPObject (see
docs/usage.rst, "Migrating from 3.x") is simply not done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from ldappool._port import BindAnswer, ConnectSettings, ErrorKind, Owner, Sasl, Server

__all__ = ["LegacyConnection"]

_NO_LIMIT = -1


class _OwnerSlot:
    """Holds the pool's side for one legacy object: ``active`` reads it."""

    owner: Owner | None = None


class LegacyConnection:
    """One connection of a duck-typed connector class (the port's ``Connection``).

    Used as 3.x did: ``timeout`` set as an attribute, ``start_tls_s()`` when use_tls,
    ``simple_bind_s(who, cred)`` (not called for an anonymous identity),
    ``unbind_ext_s()`` to close. ``active`` is set on the object while it is lent. It is
    closed at checkin when its ``connected`` attribute is false, as in 3.x.

    ``classify`` is the driver's: whatever the object raises is python-ldap's (or looks
    like it), and only the driver knows a refusal from a lost server.
    """

    def __init__(self, native: Any, classify: Callable[[BaseException], ErrorKind]) -> None:
        self._native = native
        self._classify = classify
        self._holder = _OwnerSlot()
        self._closed = False

    @classmethod
    def open(
        cls,
        connector_cls: type[Any],
        server: Server,
        settings: ConnectSettings,
        connector_args: Mapping[str, Any],
        classify: Callable[[BaseException], ErrorKind],
    ) -> LegacyConnection:
        """Build and configure one object; StartTLS when asked (not for ldaps://)."""
        native = connector_cls(server.uri, **connector_args)
        conn = cls(native, classify)
        try:
            native.timeout = _NO_LIMIT if settings.timeout is None else settings.timeout
            _install_active(native, conn._holder)
            if settings.use_tls and server.scheme != "ldaps":
                native.start_tls_s()
        except BaseException:
            conn.close()
            raise
        return conn

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LegacyConnection {type(self._native).__qualname__} {state}>"

    @property
    def native(self) -> Any:
        """The connector object itself."""
        return self._native

    def bind(self, who: str | None, cred: str | None) -> None:
        """``simple_bind_s(who, cred)``, as 3.x did: not for an anonymous identity."""
        if who is not None or cred is not None:
            self._native.simple_bind_s(who, cred)
        if hasattr(self._native, "connected"):
            self._native.connected = True

    def check_password(self, who: str, cred: str) -> BindAnswer:
        """``simple_bind_s(who, cred)``, once: a 3.x connector takes no controls, so
        there is never a policy answer. A refusal is returned, a lost server raised.

        ``connected`` is set as after :meth:`bind` either way: the pool made this bind,
        and a refused one leaves a usable (anonymous) connection, not one to close.
        """
        try:
            self._native.simple_bind_s(who, cred)
        except Exception as error:
            if self._classify(error).transient:
                raise
            refusal: BaseException | None = error
        else:
            refusal = None
        if hasattr(self._native, "connected"):
            self._native.connected = True
        return BindAnswer(refusal=refusal)

    def sasl_bind(self, sasl: Sasl) -> None:
        """Refused: a 3.x connector is only known to do simple binds.

        Its ``sasl_interactive_bind_s``, if it has one, is not used: it would want
        python-ldap's SASL objects, and a test double or wrapper that happens to have
        the name may do anything with them. SASL needs a python-ldap LDAPObject class
        (``StateConnector`` or a ``SimpleLDAPObject`` subclass) as ``connector_cls``.
        """
        raise TypeError(
            f"SASL {sasl.mechanism} bind: {type(self._native).__qualname__} is a duck-typed "
            "connector class; SASL needs ldappool.StateConnector (or another python-ldap "
            "SimpleLDAPObject subclass) as connector_cls"
        )

    def supported_controls(self) -> None:
        """A 3.x connector sends no controls: a WhoAmI (when it has one) proves the
        server answers, and the answer is "would not say"."""
        try:
            self.ping()
        except Exception as error:
            if self._classify(error).transient:
                raise

    def looks_alive(self) -> bool:
        """No socket to look at: alive unless it says it is not connected."""
        return not self._closed and getattr(self._native, "connected", True) is not False

    def ping(self) -> None:
        """WhoAmI, when the class has it."""
        whoami = getattr(self._native, "whoami_s", None)
        if whoami is not None:
            whoami()

    def reconnect(self, server: Server, settings: ConnectSettings) -> None:
        """Never called: a duck-typed object does not retry reads through the pool."""
        raise NotImplementedError("a duck-typed connector class is not reconnected")

    def set_owner(self, owner: Owner | None) -> None:
        """Keep the pool's side, for the object's ``active``."""
        self._holder.owner = owner

    def identity_changed(self) -> bool:
        """The 3.x rule: an object no longer ``connected`` is closed at checkin."""
        return not getattr(self._native, "connected", True)

    def close(self) -> None:
        """``unbind_ext_s()``; never raises, idempotent."""
        if self._closed:
            return
        self._closed = True
        self._holder.owner = None
        unbind = getattr(self._native, "unbind_ext_s", None) or getattr(
            self._native, "unbind_s", None
        )
        if unbind is not None:
            with contextlib.suppress(Exception):
                unbind()

    def abandon(self) -> None:
        """After fork(): forget the object; whatever it holds is not touched here."""
        self._closed = True
        self._holder.owner = None


class _Active:
    """``active`` on a legacy object's class: whether the pool lends it now."""

    def __get__(self, obj: Any, objtype: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        holder = obj.__dict__.get("_ldappool_holder")
        owner = holder.owner if holder is not None else None
        return owner is not None and owner.lent

    def __set__(self, obj: Any, value: Any) -> None:
        """3.x code (and its test doubles) assign it: the pool's answer stands."""


_WITH_ACTIVE: dict[type[Any], type[Any]] = {}


def _install_active(native: Any, holder: _OwnerSlot) -> None:
    """Give the object an ``active`` that reads the pool, as 3.x's pool wrote it.

    The object's class is replaced by a subclass that adds only that attribute (once
    per class), so that isinstance() and every method stay the class's own.
    """
    cls = type(native)
    if not hasattr(native, "__dict__"):
        return  # a class with __slots__ only: no ``active`` then
    with_active = _WITH_ACTIVE.get(cls)
    if with_active is None:
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "active": _Active(),
        }
        with_active = _WITH_ACTIVE[cls] = type(cls.__name__, (cls,), namespace)
    native.__dict__["_ldappool_holder"] = holder
    native.__class__ = with_active
