"""ldappool: a connection pool for LDAP, for python-ldap and ldap3.

>>> from ldappool import ConnectionManager
>>> cm = ConnectionManager("ldap://localhost", "cn=admin,dc=example,dc=org", "secret")
>>> with cm.connection() as conn:  # doctest: +SKIP
...     conn.search_s("dc=example,dc=org", ldap.SCOPE_SUBTREE, "(uid=alice)")
"""

from ldappool.connector import Connection, ConnectSettings, Driver, ErrorKind, Server, TLSSettings
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
    "PoolClosedError",
    "RetryPolicy",
    "RoundRobin",
    "Server",
    "ServerDownError",
    "Stats",
    "TLSSettings",
]
