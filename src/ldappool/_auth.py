"""What ``authenticate()`` returns, and the rule that no bind is unauthenticated."""

from __future__ import annotations

import attrs

from ldappool._port import PasswordPolicy, PolicyError

__all__ = ["NO_POLICY", "AuthResult", "unauthenticated"]

#: The answer of a server that sent no password policy control (immutable, shared).
NO_POLICY = PasswordPolicy()


@attrs.frozen
class AuthResult:
    """A password the server accepted, with what its password policy said about it.

    The bind succeeded: the password is right. The policy may still ask for action:
    ``must_change`` (an administrator reset it: the server allows nothing but a password
    change until then), ``grace_logins_left`` (it has expired; this many more logins
    are allowed with it), ``expires_in`` (seconds before it expires).
    """

    dn: str
    #: The URI of the server that checked it.
    server: str | None
    #: The server's answer; empty (all None) when it sent none.
    policy: PasswordPolicy = NO_POLICY

    @property
    def must_change(self) -> bool:
        """The password was reset by an administrator and must be changed first."""
        return self.policy.error is PolicyError.CHANGE_AFTER_RESET

    @property
    def expires_in(self) -> int | None:
        """Seconds before the password expires, when the server warns of it."""
        return self.policy.expires_in

    @property
    def grace_logins_left(self) -> int | None:
        """The password has expired: logins it still allows (this one was one)."""
        return self.policy.grace_logins_left


def unauthenticated(who: str | None, cred: str | None) -> bool:
    """Whether a simple bind would be an *unauthenticated* one: a DN without a password.

    Many servers answer it with success, as anonymous (RFC 4513, 5.1.2): a login form
    left empty would then log anybody in. ldappool never sends one.
    """
    return bool(who) and not cred
