"""What the ldap3 driver accepts to build its connections from: the ``get_info`` values,
the option mappings for ``ldap3.Connection``, ``Server`` and ``Tls`` (checked against
their signatures, without what the driver decides itself), and the connection class
(:class:`PooledConnection`, or mixed under a ``connector_cls``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import ldap3

from ldappool._drivers._ldap3_native import PooledConnection

__all__ = ["GET_INFO", "checked_options", "pooled_class"]

#: The values ``get_info`` may take.
GET_INFO = {ldap3.NONE, ldap3.DSA, ldap3.SCHEMA, ldap3.ALL} | {
    getattr(ldap3, name) for name in dir(ldap3) if name.startswith("OFFLINE_")
}
# What the driver decides itself, per option argument.
_RESERVED = {
    "connection_options": {
        "server", "user", "password", "auto_bind", "authentication", "client_strategy",
        "lazy", "receive_timeout", "sasl_mechanism", "sasl_credentials", "cred_store",
        "pool_name", "pool_size", "pool_lifetime", "pool_keepalive",
    },
    "server_options": {"host", "port", "use_ssl", "get_info", "tls", "connect_timeout"},
    "tls_options": {
        "validate", "ca_certs_file", "local_certificate_file", "local_private_key_file",
    },
}  # fmt: skip


def checked_options(argument: str, value: object, target: Any) -> Mapping[str, Any]:
    """A read-only copy of the option mapping ``argument`` (``value``) for ``target``;
    TypeError if not a mapping, ValueError for a key the driver decides or ``target``
    does not take."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise TypeError(f"{argument} must be a mapping, not {type(value).__name__}")
    accepted = set(inspect.signature(target).parameters) - {"self"}
    for key in value:
        if key in _RESERVED[argument]:
            raise ValueError(f"{argument}: {key!r} is set by ldappool, it cannot be overridden")
        if key not in accepted:
            raise ValueError(f"{argument}: {target.__qualname__} has no option {key!r}")
    return MappingProxyType(dict(value))


_MIXED: dict[type[Any], type[PooledConnection]] = {}


def pooled_class(cls: object) -> type[PooledConnection]:
    """The class to build: PooledConnection, or mixed under an ldap3.Connection subclass."""
    if cls is None:
        return PooledConnection
    if not isinstance(cls, type) or not issubclass(cls, ldap3.Connection):
        raise TypeError(
            "connector_cls must be an ldap3.Connection subclass with the ldap3 driver "
            f"(python-ldap connector classes need driver='python-ldap'), not {cls!r}"
        )
    if issubclass(cls, PooledConnection):
        return cls
    mixed = _MIXED.get(cls)
    if mixed is None:
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        mixed = _MIXED[cls] = type(cls.__name__, (cls, PooledConnection), namespace)
    return mixed
