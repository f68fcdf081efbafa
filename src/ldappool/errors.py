"""Exceptions raised by ldappool.

Everything derives from :class:`LDAPPoolError`, so ``except LDAPPoolError`` catches
all of them. When a driver error is behind one of ours, it is kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "DriverNotInstalledError",
    "InvalidCredentialsError",
    "LDAPPoolError",
    "MaxConnectionReachedError",
    "PoolClosedError",
    "ServerDownError",
]


class LDAPPoolError(Exception):
    """Base class of every error ldappool raises."""


class MaxConnectionReachedError(LDAPPoolError):
    """No connection slot became free within ``pool_timeout``.

    Raise ``size`` or ``pool_timeout``, or hold connections for less time.
    """


class BackendError(LDAPPoolError):
    """The LDAP server could not be used: connect, TLS or bind failed.

    ``server`` is the URI of the last server tried, when one was.
    """

    def __init__(self, message: str, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class ServerDownError(BackendError):
    """No server could be reached after every retry and failover."""


class BackendTimeoutError(ServerDownError):
    """The server did not answer within ``timeout``."""


class InvalidCredentialsError(BackendError):
    """The server refused the bind DN or password.

    Never retried and never failed over, so that a wrong password costs exactly one
    bind on the server (account lockout policies count those).
    """


class PoolClosedError(LDAPPoolError):
    """The manager was closed; it lends no more connections."""


class DriverNotInstalledError(LDAPPoolError, ImportError):
    """The driver's package is missing; the message names the extra to install."""
