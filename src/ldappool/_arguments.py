"""The managers' own argument checks: each names the argument it refuses, so that a bad
value fails when the manager is made (or an attribute set), never at first use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ldappool._events import Listener
from ldappool._port import Driver, Sasl, TLSSettings
from ldappool._registry import resolve
from ldappool._validate import check_bool, check_int, check_number, check_optional_str

__all__ = [
    "auth_size",
    "driver",
    "listeners",
    "policy",
    "pool_timeout",
    "required_str",
    "sasl",
    "timeout",
    "tls_settings",
]


def timeout(value: object) -> float | None:
    """-1 or None: no limit; otherwise seconds > 0."""
    if value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value == -1
    ):
        return None
    return check_number("timeout", value, strict=True)


def pool_timeout(value: object) -> float | None:
    return check_number("pool_timeout", value, allow_none=True)


def auth_size(value: object, size: int) -> int | None:
    if value is None:
        return None
    auth_size = check_int("auth_size", value, minimum=1)
    if auth_size > size:
        raise ValueError(f"auth_size must be at most size ({size}), not {auth_size}")
    return auth_size


def sasl(value: object) -> Sasl | None:
    if value is not None and not isinstance(value, Sasl):
        raise TypeError(
            f"sasl must be an ldappool.Sasl instance or None, not {type(value).__name__}"
        )
    return value


def listeners(value: object) -> list[Listener]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"listeners must be an iterable of callables, not {type(value).__name__}")
    found = list(value)
    for listener in found:
        if not callable(listener):
            raise TypeError(f"listeners: {listener!r} is not callable")
    return found


def required_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def path(name: str, value: object) -> str | None:
    path = check_optional_str(name, value)
    if path == "":
        raise ValueError(f"{name} must be a file path or None, not an empty string")
    return path


def tls_settings(
    ca_file: object, cert_file: object, key_file: object, verify: object
) -> TLSSettings | None:
    """The manager's own TLS material, or None when no tls_* argument was given: then
    the driver's process-wide settings apply (python-ldap's, as in 3.x)."""
    tls = TLSSettings(
        ca_file=path("tls_ca_file", ca_file),
        cert_file=path("tls_cert_file", cert_file),
        key_file=path("tls_key_file", key_file),
        verify=True if verify is None else check_bool("tls_verify", verify),
    )
    if tls.key_file and not tls.cert_file:
        raise ValueError("tls_key_file needs tls_cert_file (the client certificate)")
    given = (ca_file, cert_file, key_file, verify)
    return None if all(value is None for value in given) else tls


def driver(driver: object, connector_cls: object, retry_max: int, retry_delay: float) -> Driver:
    if connector_cls is None:
        return resolve(driver)
    if not isinstance(connector_cls, type):
        raise TypeError(f"connector_cls must be a class, not {type(connector_cls).__name__}")
    if driver == "python-ldap":  # built the 3.x way: cls(uri, retry_max=, retry_delay=)
        args = {"retry_max": retry_max, "retry_delay": retry_delay}
        return resolve(driver, connector_cls=connector_cls, connector_args=args)
    return resolve(driver, connector_cls=connector_cls)


def policy(name: str, value: object, kind: type[Any]) -> Any:
    if value is not None and not isinstance(value, kind):
        raise TypeError(
            f"{name} must be a {kind.__name__} instance or None, not {type(value).__name__}"
        )
    return value
