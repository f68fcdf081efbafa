"""What ``authenticate()`` returns, the rule that no bind is unauthenticated, and how an
error keeps no password."""

from __future__ import annotations

import contextlib

from ldappool._port import PasswordPolicy, PolicyError

__all__ = ["NO_POLICY", "AuthResult", "forget_locals", "unauthenticated"]

#: The answer of a server that sent no password policy control (immutable, shared).
NO_POLICY = PasswordPolicy()


class AuthResult:
    """A password the server accepted, with what its password policy said about it.

    The bind succeeded: the password is right. The policy may still ask for action:
    ``must_change`` (an administrator reset it: the server allows nothing but a password
    change until then), ``grace_logins_left`` (it has expired; this many more logins
    are allowed with it), ``expires_in`` (seconds before it expires).

    Immutable, compared and hashed by its three fields. Written out rather than made
    with attrs: one is made per login, and a frozen attrs class takes three times as
    long to build (0.3 us against 0.1 us, on the login storm's path).
    """

    __slots__ = ("_dn", "_policy", "_server")
    __match_args__ = ("dn", "server", "policy")

    def __init__(self, dn: str, server: str | None, policy: PasswordPolicy = NO_POLICY) -> None:
        self._dn = dn
        self._server = server
        self._policy = policy

    @property
    def dn(self) -> str:
        """The DN whose password was checked."""
        return self._dn

    @property
    def server(self) -> str | None:
        """The URI of the server that checked it."""
        return self._server

    @property
    def policy(self) -> PasswordPolicy:
        """The server's answer; empty (all None) when it sent none."""
        return self._policy

    @property
    def must_change(self) -> bool:
        """The password was reset by an administrator and must be changed first."""
        return self._policy.error is PolicyError.CHANGE_AFTER_RESET

    @property
    def expires_in(self) -> int | None:
        """Seconds before the password expires, when the server warns of it."""
        return self._policy.expires_in

    @property
    def grace_logins_left(self) -> int | None:
        """The password has expired: logins it still allows (this one was one)."""
        return self._policy.grace_logins_left

    def _fields(self) -> tuple[str, str | None, PasswordPolicy]:
        return self._dn, self._server, self._policy

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuthResult):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"AuthResult(dn={self._dn!r}, server={self._server!r}, policy={self._policy!r})"


def unauthenticated(who: str | None, cred: str | None) -> bool:
    """Whether a simple bind would be an *unauthenticated* one: a DN without a password.

    Many servers answer it with success, as anonymous (RFC 4513, 5.1.2): a login form
    left empty would then log anybody in. ldappool never sends one.
    """
    return bool(who) and not cred


def forget_locals(error: BaseException) -> None:
    """Clear the local variables of the frames that ``error`` and its causes
    (``__cause__``, which ldappool sets whenever it wraps an error) passed through and
    that have returned: the password checked is one of them. Their tracebacks remain,
    line by line; only what tools that show locals (error trackers, debuggers) would
    find there is gone. A frame still running (the caller's) is left as it is, and so is
    ``__context__``, which may be the caller's own error. (Clearing the frame of a
    suspended generator or coroutine would close it: none is on the way of the errors
    ldappool clears, whose frames have returned or are the one handling the error.)
    """
    if error.__traceback__ is None and error.__cause__ is None:
        return  # (a python-ldap refusal of a password check: nothing to clear)
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        tb = found.__traceback__
        while tb is not None:
            with contextlib.suppress(RuntimeError):  # still running
                tb.tb_frame.clear()
            tb = tb.tb_next
        found = found.__cause__
