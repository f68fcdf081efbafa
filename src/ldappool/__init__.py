"""ldappool: a connection pool for LDAP, for python-ldap and ldap3.

>>> from ldappool import ConnectionManager
>>> cm = ConnectionManager("ldap://localhost", "cn=admin,dc=example,dc=org", "secret")
>>> with cm.connection() as conn:  # doctest: +SKIP
...     conn.search_s("dc=example,dc=org", ldap.SCOPE_SUBTREE, "(uid=alice)")
"""

from typing import TYPE_CHECKING, Any

from ldappool.connector import (
    Connection,
    ConnectSettings,
    Driver,
    ErrorKind,
    Owner,
    Server,
    TLSSettings,
)
from ldappool.drivers import resolve
from ldappool.errors import (
    BackendError,
    BackendTimeoutError,
    DriverNotInstalledError,
    InvalidCredentialsError,
    LDAPPoolError,
    MaxConnectionReachedError,
    PoolClosedError,
    ServerDownError,
)
from ldappool.manager import ConnectionManager
from ldappool.policies import FailoverPolicy, InOrder, LifetimePolicy, RetryPolicy, RoundRobin
from ldappool.stats import Stats

if TYPE_CHECKING:
    from ldappool.drivers.python_ldap import StateConnector

__version__ = "4.0.0.dev0"

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "ConnectSettings",
    "Connection",
    "ConnectionManager",
    "Driver",
    "DriverNotInstalledError",
    "ErrorKind",
    "FailoverPolicy",
    "InOrder",
    "InvalidCredentialsError",
    "LDAPPoolError",
    "LifetimePolicy",
    "MaxConnectionReachedError",
    "Owner",
    "PoolClosedError",
    "RetryPolicy",
    "RoundRobin",
    "Server",
    "ServerDownError",
    "StateConnector",
    "Stats",
    "TLSSettings",
]


def __getattr__(name: str) -> Any:
    """``ldappool.StateConnector`` (as in 3.x), imported on first use: it needs python-ldap,
    which users of the ldap3 driver need not install."""
    if name == "StateConnector":
        resolve("python-ldap")  # DriverNotInstalledError naming the extra, if missing
        from ldappool.drivers.python_ldap import StateConnector  # noqa: PLC0415

        return StateConnector
    raise AttributeError(f"module 'ldappool' has no attribute {name!r}")
