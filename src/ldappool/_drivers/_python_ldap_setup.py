"""How the python-ldap driver builds a connection: the LDAPObject class it instantiates
(:class:`StateConnector`, or StateConnector mixed under a ``connector_cls``), and the
options and TLS context set on each new LDAPObject.

Every option is set on the connection's own LDAPObject, never with the process-global
``ldap.set_option``: see :mod:`ldappool._drivers.python_ldap`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import ldap
import ldap.ldapobject

from ldappool._drivers._state_connector import BASE, StateConnector
from ldappool._port import ConnectSettings, Server

__all__ = ["configure", "is_ldap_object", "state_connector_class"]

_NO_LIMIT = -1


def configure(
    native: Any, server: Server, settings: ConnectSettings, options: Mapping[int, object]
) -> None:
    """Set the pool's options, the manager's TLS material if any, then ``options`` (the
    driver's ``ldap.OPT_*`` values) on a new LDAPObject, before it connects."""

    # BASE.set_option: the pool's own options are not the holder's, to set again
    # on a new transport (StateConnector.set_option).
    def set_option(option: int, value: object) -> None:
        BASE.set_option(native, option, value)

    timeout = _NO_LIMIT if settings.timeout is None else settings.timeout
    set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
    set_option(ldap.OPT_REFERRALS, 0)
    # NETWORK_TIMEOUT bounds connect(); TIMEOUT bounds libldap's synchronous
    # calls (StartTLS, WhoAmI, SASL) and ldap_result() without a timeout;
    # .timeout is what python-ldap's own *_s methods pass to result().
    set_option(ldap.OPT_NETWORK_TIMEOUT, settings.timeout)
    set_option(ldap.OPT_TIMEOUT, settings.timeout)
    native.__dict__["timeout"] = timeout
    uses_tls = server.scheme == "ldaps" or settings.use_tls
    tls = settings.tls if uses_tls else None
    if tls is not None:  # the manager's own material, else python-ldap's globals
        ca_file, ca_dir = tls.ca_file, None
        if ca_file is None and tls.verify:
            ca_file, ca_dir = _default_trust()
        files: tuple[tuple[int, str | None], ...] = (
            (ldap.OPT_X_TLS_CACERTFILE, ca_file),
            (ldap.OPT_X_TLS_CACERTDIR, ca_dir),
            (ldap.OPT_X_TLS_CERTFILE, tls.cert_file),
            (ldap.OPT_X_TLS_KEYFILE, tls.key_file),
        )
        for option, path in files:
            if path is not None:
                set_option(option, path)
        require = ldap.OPT_X_TLS_DEMAND if tls.verify else ldap.OPT_X_TLS_NEVER
        set_option(ldap.OPT_X_TLS_REQUIRE_CERT, require)
    if uses_tls and settings.timeout is not None:
        # libldap 2.5 bounds the TLS handshake (ldaps:// or after StartTLS) by
        # NETWORK_TIMEOUT only in async-connect mode: otherwise it spins on
        # a silent server forever, at 100% CPU.
        set_option(ldap.OPT_CONNECT_ASYNC, 1)
    for option, value in options.items():
        set_option(option, value)
    if tls is not None:
        # Builds this connection's TLS context from the options above: must be last.
        set_option(ldap.OPT_X_TLS_NEWCTX, 0)


def is_ldap_object(cls: object) -> bool:
    """Whether a ``connector_cls`` is an LDAPObject class (else a duck-typed 3.x one)."""
    if not isinstance(cls, type):
        raise TypeError(f"connector_cls must be a class, not {type(cls).__name__}")
    return issubclass(cls, BASE)


_MIXED: dict[type[Any], type[StateConnector]] = {}


def state_connector_class(cls: type[Any] | None) -> type[StateConnector]:
    """The class to build: StateConnector's own, or mixed under another LDAPObject's."""
    if cls is None or issubclass(cls, StateConnector):
        return cls or StateConnector
    if issubclass(cls, ldap.ldapobject.ReconnectLDAPObject):
        raise TypeError(
            f"connector_cls: {cls.__qualname__} is a ReconnectLDAPObject, which reconnects "
            "and replays writes on its own; derive it from ldappool.StateConnector instead"
        )
    mixed = _MIXED.get(cls)
    if mixed is None:  # the class's own methods first, StateConnector's under them
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        mixed = _MIXED[cls] = type(cls.__name__, (cls, StateConnector), namespace)
    return mixed


def _default_trust() -> tuple[str | None, str | None]:
    """The CA file or directory libldap would use by default, else the system's.

    A connection's own TLS context starts empty, not from ldap.conf: without this,
    verify=True with no ca_file would trust nothing. One file beats a directory:
    GnuTLS would parse every file in /etc/ssl/certs.
    """
    ca_file = ldap.get_option(ldap.OPT_X_TLS_CACERTFILE)
    ca_dir = ldap.get_option(ldap.OPT_X_TLS_CACERTDIR)
    if not (ca_file or ca_dir):
        paths = ssl.get_default_verify_paths()
        ca_file, ca_dir = paths.cafile, paths.capath
    return (ca_file, None) if ca_file else (None, ca_dir)
