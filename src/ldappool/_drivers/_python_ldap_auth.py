"""Authentication on python-ldap connections: the password check, SASL binds, and the
root DSE read that decides whether a password check sends the policy control.

Functions on a connection's :class:`StateConnector`, which
:class:`~ldappool._drivers.python_ldap.PythonLdapConnection`'s ``sasl_bind`` and
``supported_controls`` delegate to; the connection keeps its own bookkeeping (the
socket it watches, the controls its password checks send). Its ``check_password``, run
on every login, is written there in one piece, with :func:`policy` from here.
"""

from __future__ import annotations

import time
from typing import TypeAlias

import ldap
import ldap.sasl

from ldappool._drivers._ppolicy import PPOLICY_OID, policy_or_none
from ldappool._drivers._state_connector import BASE, StateConnector
from ldappool._port import BindAnswer, Driver, PasswordPolicy, Sasl

__all__ = ["BOUND", "BindControls", "bind_controls", "policy", "sasl_bind", "supported_controls"]

#: What a password check sends: the policy request control, or None (no control).
BindControls: TypeAlias = list[tuple[str, bool, None]] | None

# The password policy request control: not critical, no value. Immutable once built.
#: The password policy request control as libldap takes it (criticality False, no value).
_PPOLICY_TUPLES = [(PPOLICY_OID, False, None)]
#: A successful check that came back without any response control.
BOUND = BindAnswer()
# SASL mechanisms driven through libsasl's callbacks with a user name and a secret (and
# an optional authorization identity); EXTERNAL and GSSAPI take only the latter.
_SECRET_MECHANISMS = frozenset(
    {"PLAIN", "CRAM-MD5", "DIGEST-MD5"}
    | {f"SCRAM-SHA-{bits}" for bits in ("1", "224", "256", "384", "512")}
)


def supported_controls(native: StateConnector, driver: Driver) -> frozenset[str] | None:
    """The root DSE's supportedControl: a base search; None if refused, a transient
    error (as ``driver`` classifies it) raised."""
    try:
        found = BASE.search_ext_s(
            native, "", ldap.SCOPE_BASE, "(objectClass=*)", ["supportedControl"]
        )
    except ldap.LDAPError as error:
        if driver.classify(error).transient:
            raise
        return None
    return _listed(found[0][1] if found else None)


def bind_controls(supported: frozenset[str] | None) -> BindControls:
    """What a password check sends to a server whose supportedControl is ``supported``
    (None: it would not say): the policy control unless the server does not list it."""
    return _PPOLICY_TUPLES if supported is None or PPOLICY_OID in supported else None


def sasl_bind(native: StateConnector, sasl: Sasl, driver: Driver) -> None:
    """SASL bind through libsasl (``sasl_interactive_bind_s``); raises when refused.

    The secret is asked of ``sasl.secret()`` here, given to libsasl through the
    callback values for this one bind, and those are emptied afterwards. The
    object's ``sasl_interactive_bind_s`` is called (a connector class's override
    runs), and the "holder re-bound" flag it sets is cleared: this bind is the
    pool's, refused or not. ``who`` becomes the identity asked for (``authz_id``,
    else ``user``), or "" when the transport or Kerberos says who (EXTERNAL,
    GSSAPI without ``authz_id``); None after a refusal (anonymous).
    """
    auth = _sasl_auth(sasl)
    state = native.__dict__
    try:
        native.sasl_interactive_bind_s("", auth)
    except ldap.LDAPError as error:
        if not driver.classify(error).transient:
            state["who"], state["_ldappool_rebound"] = None, False
        raise
    finally:
        auth.cb_value_dict.clear()  # the secret, if any
    state["_ldappool_rebound"] = False
    state["connected"], state["who"] = True, sasl.authz_id or sasl.user or ""
    if state["_connection_time"] is None:
        state["_connection_time"] = time.time()


def policy(controls: object) -> PasswordPolicy | None:
    """The policy answer among python-ldap's raw response control tuples, if any."""
    if not isinstance(controls, (list, tuple)):
        return None
    for control in controls:
        if isinstance(control, tuple) and len(control) == 3 and control[0] == PPOLICY_OID:
            return policy_or_none(control[2])
    return None


def _sasl_auth(sasl: Sasl) -> ldap.sasl.sasl:
    """python-ldap's SASL object for ``sasl``; ValueError for what libsasl is not given
    enough for here (or python-ldap was built without SASL)."""
    mechanism = sasl.mechanism
    if not ldap.SASL_AVAIL:
        raise ValueError(f"SASL {mechanism}: this python-ldap was built without SASL")
    authz_id = sasl.authz_id or ""
    if mechanism == "EXTERNAL":
        return ldap.sasl.external(authz_id)
    if mechanism == "GSSAPI":
        return ldap.sasl.gssapi(authz_id)
    if mechanism not in _SECRET_MECHANISMS:
        known = ", ".join(["EXTERNAL", "GSSAPI", *sorted(_SECRET_MECHANISMS)])
        raise ValueError(
            f"SASL mechanism {mechanism!r} is not one the python-ldap driver can do ({known})"
        )
    if not sasl.user or sasl.secret is None:
        raise ValueError(f"SASL {mechanism} needs Sasl.user and Sasl.secret")
    values = {
        ldap.sasl.CB_AUTHNAME: sasl.user,
        ldap.sasl.CB_PASS: sasl.secret(),
        ldap.sasl.CB_USER: authz_id,
    }
    return ldap.sasl.sasl(values, mechanism)


def _listed(attributes: object) -> frozenset[str]:
    """supportedControl's values from a search result's attributes (any case)."""
    if not isinstance(attributes, dict):
        return frozenset()
    for name, values in attributes.items():
        if name.lower() == "supportedcontrol":
            return frozenset(v.decode("ascii", "replace") for v in values)
    return frozenset()
