"""Who a connection is bound as, without keeping the password.

A pooled connection must only be lent to the identity it was bound as. The pool keeps
the bind DN and a keyed BLAKE2b digest of the password: the key is random per manager
and never leaves memory, so the digest cannot be checked against guesses, and digests
are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import NamedTuple

from ldappool._port import Sasl

__all__ = ["PASSWORD_CHECKS", "Credentials", "Identity", "IdentityHasher"]


class Identity:
    """A bind DN plus a keyed digest of DN and password; compared in constant time.

    ``key`` alone tells identities apart (the DN is in the digest too), so the pool
    indexes idle connections by it: a bytes key hashes in C. Equal keys are then
    confirmed with :func:`hmac.compare_digest`.
    """

    __slots__ = ("_hash", "dn", "key", "label")

    def __init__(self, dn: str | None, key: bytes, label: str | None = None) -> None:
        self.dn = dn
        self.key = key
        #: What ``print(cm)`` shows in the Bind DN column: the DN unless said otherwise.
        self.label = dn if label is None else label
        self._hash = hash(key)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Identity):
            return NotImplemented
        return self.dn == other.dn and hmac.compare_digest(self.key, other.key)

    def __hash__(self) -> int:
        return self._hash

    def matches_dn(self, dn: str | None) -> bool:
        """Same bind DN, whatever the password."""
        return self.dn == dn

    def __repr__(self) -> str:
        return f"Identity(dn={self.dn!r})"


class IdentityHasher:
    """Makes identities with a key drawn once per hasher (one per manager)."""

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def identity(self, dn: str | None, password: str | None) -> Identity:
        """The identity for a DN and password (None for an anonymous or unauthenticated bind)."""
        digest = hashlib.blake2b(key=self._key, digest_size=32)
        for part in (dn, password):  # None and "" differ; the length prefix splits them
            if part is None:
                digest.update(b"\xff")
            else:
                data = part.encode("utf-8", "surrogatepass")
                digest.update(len(data).to_bytes(8, "big") + data)
        return Identity(dn, digest.digest())

    def sasl_identity(self, sasl: Sasl) -> Identity:
        """The identity of a SASL bind: its mechanism, authentication and authorization
        identities (no secret: it may change between binds without changing who binds)."""
        digest = hashlib.blake2b(key=self._key, digest_size=32, person=b"ldappool-sasl")
        for part in (sasl.mechanism, sasl.user, sasl.authz_id):
            data = b"\xff" if part is None else part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big") + data)
        who = " ".join(p for p in (sasl.user, sasl.authz_id) if p)
        return Identity(None, digest.digest(), f"SASL {sasl.mechanism} {who}".rstrip())


class Credentials(NamedTuple):
    """Who one checkout binds as: what the pool passes down instead of the checkout itself.

    The pool keeps it on a slot only while the slot is lent (the read recovery binds a new
    transport with it), and drops it at checkin: then nothing of the pool holds the
    password. Its repr shows the DN only. A named tuple: immutable, and made on every
    checkout for a user identity, at a third of the cost of an attrs class.
    """

    identity: Identity
    who: str | None
    cred: str | None = None
    #: A SASL bind instead of a simple one (``who`` and ``cred`` are then None).
    sasl: Sasl | None = None

    def __repr__(self) -> str:
        how = f", sasl={self.sasl.mechanism!r}" if self.sasl is not None else ""
        return f"Credentials(who={self.who!r}{how})"


#: Who a connection kept for ``authenticate()`` is lent to: no checkout can ask for it
#: (its key is no digest's length), and it binds as nobody until the check binds it.
PASSWORD_CHECKS = Credentials(Identity(None, b"password checks", "(password checks)"), None)
