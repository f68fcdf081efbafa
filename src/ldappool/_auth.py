"""What ``authenticate()`` returns, and the rule that no bind is unauthenticated."""

from __future__ import annotations

from ldappool._port import PasswordPolicy, PolicyError

__all__ = ["NO_POLICY", "AuthResult", "unauthenticated"]

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
