"""Authentication on ldap3 connections: the password check, SASL binds, and the root DSE
read that decides whether a password check sends the policy control.

Functions on a connection's :class:`PooledConnection`, which
:class:`~ldappool._drivers.ldap3.Ldap3Connection`'s ``check_password``, ``sasl_bind``
and ``supported_controls`` delegate to; the connection keeps the controls its password
checks send.
"""

from __future__ import annotations

import time
from typing import Any, TypeAlias

import ldap3
from ldap3.core import exceptions as lx

from ldappool._drivers._ldap3_native import PooledConnection, result_error
from ldappool._drivers._ppolicy import PPOLICY_OID, policy_or_none
from ldappool._port import BindAnswer, Driver, PasswordPolicy, Sasl

__all__ = ["BindControls", "bind_controls", "check_password", "sasl_bind", "supported_controls"]

#: What a password check sends: the policy request control, or None (no control).
BindControls: TypeAlias = list[tuple[str, bool, None]] | None

#: The SASL mechanisms ldap3 2.9 implements (GSSAPI only with the gssapi package).
_SASL_MECHANISMS = ("EXTERNAL", "DIGEST-MD5", "GSSAPI", "PLAIN")


def check_password(
    native: PooledConnection,
    who: str,
    cred: str,
    read_server_info: bool,
    controls: BindControls,
    driver: Driver,
) -> BindAnswer:
    """One simple bind with ``controls`` (the password policy request control, or none);
    a refusal is returned, a transient error (as ``driver`` classifies it) raised.

    ldap3 keeps the value of a response control it does not know as bytes, under
    ``result["controls"][oid]["value"]``, on success and failure alike. A result code
    is a refusal whether ldap3 returned False or raised it (``raise_exceptions``);
    socket errors are raised. ldap3 keeps the password on the Connection (for its
    reconnecting strategies) and the bind request, password included, in ``request``:
    both are cleared.
    """
    native.user, native.password = who, cred
    native.authentication = ldap3.SIMPLE
    native._ldappool_identity_changed = True  # until the server has answered
    native.result = None  # a refusal ldap3 makes client-side leaves the last one
    refusal: Exception | None = None
    try:
        bound = ldap3.Connection.bind(native, read_server_info=read_server_info, controls=controls)
        if bound is not True:
            refusal = result_error(native, "bind failed")
    except lx.LDAPException as error:
        refusal = error
    finally:
        native.password = native.request = None
    if refusal is not None and driver.classify(refusal).transient:
        raise refusal  # lost, timed out, or busy: noted as changed, not pooled again
    native._ldappool_identity_changed = False  # the pool's bind, refused or not
    if refusal is None and native._connection_time is None:
        native._connection_time = time.time()
    return BindAnswer(refusal=refusal, policy=_policy(native.result))


def supported_controls(native: PooledConnection, driver: Driver) -> frozenset[str] | None:
    """The root DSE's supportedControl: a base search; None if refused, a transient
    error (as ``driver`` classifies it) raised."""
    controls: frozenset[str] | None = None
    try:
        ldap3.Connection.search(
            native, "", "(objectClass=*)", ldap3.BASE, attributes=["supportedControl"]
        )
    except lx.LDAPException as error:
        if driver.classify(error).transient:
            raise
    else:
        result = native.result
        if isinstance(result, dict) and result.get("result") == 0:
            controls = frozenset()
            for entry in native.response or ():
                for name, values in (entry.get("raw_attributes") or {}).items():
                    if name.lower() == "supportedcontrol":
                        controls = frozenset(v.decode("ascii", "replace") for v in values)
    return controls


def bind_controls(supported: frozenset[str] | None) -> BindControls:
    """What a password check sends to a server whose supportedControl is ``supported``
    (None: it would not say): the policy control unless the server does not list it."""
    listed = supported is None or PPOLICY_OID in supported
    return [(PPOLICY_OID, False, None)] if listed else None


def sasl_bind(
    native: PooledConnection, sasl: Sasl, read_server_info: bool, driver: Driver
) -> None:
    """SASL bind with ldap3's own mechanisms; raises when refused.

    ``sasl_credentials`` are what ldap3 2.9 reads for each mechanism; the secret is
    asked of ``sasl.secret()`` for this bind, and the credentials, the password and
    the request (which holds the encoded credentials) are cleared afterwards. The
    "holder re-bound" note is cleared, refused or not: the bind is the pool's; a
    lost or timed-out connection stays noted, not to be pooled again.
    """
    credentials = _sasl_credentials(sasl)
    native.user = native.password = None
    native.authentication = ldap3.SASL
    native.sasl_mechanism = sasl.mechanism
    native.sasl_credentials = credentials
    native._ldappool_identity_changed = True  # until the server has answered
    native.result = None  # not to report an earlier operation's result
    try:
        bound = ldap3.Connection.bind(native, read_server_info=read_server_info)
    except lx.LDAPException as error:
        if not driver.classify(error).transient:
            native._ldappool_identity_changed = False
        raise
    finally:
        native.sasl_credentials = native.password = native.request = None
    if bound is not True:
        refused = result_error(native, f"SASL {sasl.mechanism} bind failed")
        native._ldappool_identity_changed = driver.classify(refused).transient
        raise refused
    native._ldappool_identity_changed = False
    if native._connection_time is None:
        native._connection_time = time.time()


def _policy(result: object) -> PasswordPolicy | None:
    """The policy answer in an ldap3 result, if the server sent one."""
    controls = result.get("controls") if isinstance(result, dict) else None
    control = controls.get(PPOLICY_OID) if isinstance(controls, dict) else None
    return policy_or_none(control.get("value") if isinstance(control, dict) else None)


def _sasl_credentials(sasl: Sasl) -> Any:
    """``sasl_credentials`` as ldap3 2.9 reads them for the mechanism; ValueError for a
    mechanism it does not implement, or without what the mechanism needs."""
    mechanism, authz_id = sasl.mechanism, sasl.authz_id or None
    if mechanism not in _SASL_MECHANISMS:
        raise ValueError(
            f"SASL mechanism {mechanism!r} is not one the ldap3 driver can do "
            f"({', '.join(_SASL_MECHANISMS)})"
        )
    if mechanism == "EXTERNAL":
        # The credentials octet string as it is, never absent: without an initial
        # response slapd answers saslBindInProgress with an empty challenge, which
        # ldap3's one-step EXTERNAL takes for the end. "": the transport's identity.
        return authz_id or ""
    if mechanism == "GSSAPI":
        try:  # ldap3 imports it at the first GSSAPI bind; fail before sending anything
            import ldap3.protocol.sasl.kerberos  # noqa: F401, PLC0415
        except lx.LDAPPackageUnavailableError as exc:
            raise ValueError("SASL GSSAPI with ldap3 needs the gssapi package") from exc
        return (None, authz_id)  # None: the service host is the Server's
    if not sasl.user or sasl.secret is None:
        raise ValueError(f"SASL {mechanism} needs Sasl.user and Sasl.secret")
    if mechanism == "PLAIN":
        return (authz_id, sasl.user, sasl.secret())
    return (None, sasl.user, sasl.secret(), authz_id)  # DIGEST-MD5: realm from the server
