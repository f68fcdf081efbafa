"""Exceptions raised by ldappool.

Everything derives from :class:`LDAPPoolError`, so ``except LDAPPoolError`` catches
all of them. When a driver error is behind one of ours, it is kept as ``__cause__``.

Errors about a server are also instances of the driver's own classes (see
:func:`driver_flavoured`): on python-ldap a wrong password is both an
:class:`InvalidCredentialsError` and an ``ldap.INVALID_CREDENTIALS``, so code written
for ldappool 3.x, which let python-ldap's exceptions through, keeps catching them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ldappool._port import ErrorKind

__all__ = [
    "ERROR_FOR_KIND",
    "AccountLockedError",
    "BackendError",
    "BackendTimeoutError",
    "DriverNotInstalledError",
    "InvalidCredentialsError",
    "LDAPPoolError",
    "MaxConnectionReachedError",
    "PasswordExpiredError",
    "PoolClosedError",
    "ServerDownError",
    "driver_flavoured",
    "flavour",
    "flavoured_error",
]

E = TypeVar("E", bound="LDAPPoolError")


class LDAPPoolError(Exception):
    """Base class of every error ldappool raises.

    ``backend`` is what the error is about, as in ldappool 3.x: for the errors ldappool
    raises itself, the URI of the last server tried, if any (also as ``server``).
    """

    def __init__(self, message: str = "", backend: Any = None) -> None:
        super().__init__(message)
        self.backend = backend

    @property
    def server(self) -> str | None:
        """The URI of the server the error is about, when there is one."""
        return self.backend if isinstance(self.backend, str) else None

    def __str__(self) -> str:
        # A driver-flavoured error carries the driver's args (see driver_flavoured);
        # its text stays ldappool's own.
        text = self.__dict__.get("_ldappool_text")
        return text if isinstance(text, str) else super().__str__()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A flavoured class is made at run time: pickle as the plain ldappool class.
        cls = type(self)
        plain = cls.__mro__[1] if cls.__dict__.get("_ldappool_flavoured") else cls
        return (plain, (str(self), self.backend))


class MaxConnectionReachedError(LDAPPoolError):
    """No connection slot became free within ``pool_timeout``.

    Raise ``size`` or ``pool_timeout``, or hold connections for less time.
    """


class BackendError(LDAPPoolError):
    """The LDAP server could not be used: connect, TLS or bind failed.

    ``BackendError(message, backend=None)``, as in ldappool 3.x.
    """


class ServerDownError(BackendError):
    """No server could be reached after every retry and failover."""


class BackendTimeoutError(ServerDownError):
    """The server did not answer within ``timeout``."""


class InvalidCredentialsError(LDAPPoolError):
    """The server refused the bind DN or password.

    Never retried and never failed over, so that a wrong password costs exactly one
    bind on the server (account lockout policies count those). Not a
    :class:`BackendError`: in ldappool 3.x a wrong password was python-ldap's
    ``INVALID_CREDENTIALS``, and programs catch it after ``except BackendError``.

    ``policy``: the server's password policy answer to the refused bind
    (:class:`~ldappool.PasswordPolicy`), when it sent one; see ``authenticate()``.
    """

    policy: Any = None


class AccountLockedError(InvalidCredentialsError):
    """The account is locked (password policy): the password was not even checked.

    Raised by ``authenticate()`` when the server's password policy answer says so.
    """


class PasswordExpiredError(InvalidCredentialsError):
    """The password has expired and no grace login is left (password policy): it must
    be reset by other means.

    Raised by ``authenticate()`` when the server's password policy answer says so.
    """


class PoolClosedError(LDAPPoolError):
    """The manager was closed; it lends no more connections."""


class DriverNotInstalledError(LDAPPoolError, ImportError):
    """The driver's package is missing; the message names the extra to install."""


#: What ldappool raises for a driver error of each kind: the one place this is decided.
ERROR_FOR_KIND: dict[ErrorKind, type[LDAPPoolError]] = {
    ErrorKind.DOWN: ServerDownError,
    ErrorKind.TIMEOUT: BackendTimeoutError,
    ErrorKind.CREDENTIALS: InvalidCredentialsError,
    ErrorKind.OTHER: BackendError,
}

_Key = tuple[type[LDAPPoolError], tuple[type[BaseException], ...]]
#: The class for each (error, bases) asked for, or the error itself when it already
#: derives from every one of the bases: made once per (error, bases that remain).
_FLAVOURS: dict[_Key, type[Any]] = {}
_MADE: dict[_Key, type[Any]] = {}


def driver_flavoured(
    error: type[E],
    bases: tuple[type[BaseException], ...],
    message: str,
    backend: Any = None,
    cause: BaseException | None = None,
) -> E:
    """An ``error`` that is also an instance of each of the driver's ``bases``.

    It carries the driver error's ``args`` and attributes (python-ldap's result dict
    in ``args[0]``, ldap3's ``result`` and ``description``), as the driver's own
    exception would; ``str()`` is ldappool's message. The classes are made once per
    combination and cached: ``bases`` must be a small, fixed set per driver.
    """
    made: type[E] = flavour(error, bases)
    return flavoured_error(made, message, backend, cause)


def flavour(error: type[E], bases: tuple[type[BaseException], ...]) -> type[E]:
    """The class :func:`driver_flavoured` makes its errors of: ``error`` derived from
    ``bases`` too (made once per combination), or ``error`` itself."""
    flavoured = _FLAVOURS.get((error, bases))
    if flavoured is None:
        flavoured = _FLAVOURS[error, bases] = _flavour(error, bases)
    return flavoured


def flavoured_error(
    flavoured: type[E], message: str, backend: Any = None, cause: BaseException | None = None
) -> E:
    """An instance of ``flavoured`` (a class from :func:`flavour`) for ``message``, with
    the ``args`` and attributes of the driver's ``cause`` when the class is also one of
    the driver's."""
    if "_ldappool_flavoured" not in flavoured.__dict__:
        return flavoured(message, backend)
    instance: E = Exception.__new__(flavoured)
    if cause is not None:
        instance.__dict__.update(cause.__dict__)
        instance.args = cause.args
    else:
        instance.args = (message,)
    instance.backend = backend
    instance.__dict__["_ldappool_text"] = message
    return instance


def _flavour(error: type[E], bases: tuple[type[BaseException], ...]) -> type[Any]:
    """``error`` derived from ``bases`` too: each class once, none that another one
    already derives from (for a valid MRO); ``error`` itself if nothing is left."""
    unique = [b for i, b in enumerate(bases) if b not in bases[:i] and not issubclass(error, b)]
    bases = tuple(b for b in unique if not any(o is not b and issubclass(o, b) for o in unique))
    if not bases:
        return error
    made = _MADE.get((error, bases))
    if made is None:
        namespace = {
            "__module__": error.__module__,
            "__qualname__": error.__qualname__,
            "_ldappool_flavoured": True,
        }
        made = _MADE[error, bases] = type(error.__name__, (error, *bases), namespace)
    return made
