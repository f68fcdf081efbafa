"""ldappool: a connection pool for LDAP, for python-ldap and ldap3.

>>> from ldappool import ConnectionManager
>>> cm = ConnectionManager("ldap://localhost", "cn=admin,dc=example,dc=org", "secret")
>>> with cm.connection() as conn:  # doctest: +SKIP
...     conn.search_s("dc=example,dc=org", ldap.SCOPE_SUBTREE, "(uid=alice)")
"""

import importlib as _importlib
import typing as _typing

from ldappool._async_manager import AsyncConnectionManager
from ldappool._auth import AuthResult
from ldappool._errors import (
    AccountLockedError,
    BackendError,
    BackendTimeoutError,
    DriverNotInstalledError,
    InvalidCredentialsError,
    LDAPPoolError,
    MaxConnectionReachedError,
    PasswordExpiredError,
    PoolClosedError,
    ServerDownError,
)
from ldappool._events import Event, EventKind
from ldappool._manager import ConnectionManager
from ldappool._policies import FailoverPolicy, InOrder, LifetimePolicy, RetryPolicy, RoundRobin
from ldappool._port import (
    BindAnswer,
    Connection,
    ConnectSettings,
    Driver,
    ErrorKind,
    Owner,
    PasswordPolicy,
    PolicyError,
    Sasl,
    Server,
    TLSSettings,
)
from ldappool._registry import ENTRY_POINT_GROUP, available_drivers
from ldappool._registry import resolve as _resolve
from ldappool._stats import Stats

if _typing.TYPE_CHECKING:
    from ldappool._drivers.ldap3 import Ldap3Driver
    from ldappool._drivers.python_ldap import PythonLdapDriver, StateConnector
    from ldappool._otel import OpenTelemetryMetrics

__version__ = "4.0.0.dev0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "AccountLockedError",
    "AsyncConnectionManager",
    "AuthResult",
    "BackendError",
    "BackendTimeoutError",
    "BindAnswer",
    "ConnectSettings",
    "Connection",
    "ConnectionManager",
    "Driver",
    "DriverNotInstalledError",
    "ErrorKind",
    "Event",
    "EventKind",
    "FailoverPolicy",
    "InOrder",
    "InvalidCredentialsError",
    "LDAPPoolError",
    "Ldap3Driver",
    "LifetimePolicy",
    "MaxConnectionReachedError",
    "OpenTelemetryMetrics",
    "Owner",
    "PasswordExpiredError",
    "PasswordPolicy",
    "PolicyError",
    "PoolClosedError",
    "PythonLdapDriver",
    "RetryPolicy",
    "RoundRobin",
    "Sasl",
    "Server",
    "ServerDownError",
    "StateConnector",
    "Stats",
    "TLSSettings",
    "available_drivers",
]

#: Public names that need a driver's package, imported on first use: users of one
#: driver need not install the other's library. name -> (driver, module).
_LAZY = {
    "StateConnector": ("python-ldap", "ldappool._drivers.python_ldap"),
    "PythonLdapDriver": ("python-ldap", "ldappool._drivers.python_ldap"),
    "Ldap3Driver": ("ldap3", "ldappool._drivers.ldap3"),
}

#: Public names that need an optional package, imported on first use:
#: name -> (extra, the package's import name, distribution, module).
_OPTIONAL = {
    "OpenTelemetryMetrics": ("otel", "opentelemetry", "opentelemetry-api", "ldappool._otel"),
}


def __getattr__(name: str) -> _typing.Any:
    """``ldappool.StateConnector`` (as in 3.x), the driver classes and the optional
    ``OpenTelemetryMetrics``, on first use."""
    if name in _LAZY:
        driver, module_name = _LAZY[name]
        _resolve(driver)  # DriverNotInstalledError naming the extra, if missing
        module = _importlib.import_module(module_name)
        return getattr(module, name)
    if name in _OPTIONAL:
        extra, package, distribution, module_name = _OPTIONAL[name]
        try:
            module = _importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name is None or exc.name.split(".")[0] != package:
                raise
            hint = f"pip install 'ldappool[{extra}]'"
            message = f"ldappool.{name} needs the {distribution} package: {hint}"
            raise ModuleNotFoundError(message, name=exc.name) from exc
        return getattr(module, name)
    raise AttributeError(f"module 'ldappool' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy ones included: the public ones are ``__all__``."""
    return sorted({*globals(), *__all__})
