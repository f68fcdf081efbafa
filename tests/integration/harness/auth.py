"""A slapd with a password policy (the ppolicy overlay) and SASL EXTERNAL identities.

Password policy: one default policy for every entry (:attr:`AuthSlapd.default_policy_dn`)
locks an account after :attr:`~AuthSlapd.MAX_FAILURE` wrong passwords until an
administrator unlocks it, allows :attr:`~AuthSlapd.GRACE_LIMIT` grace binds with an
expired password, makes a password set by an administrator one the user must change,
and warns :attr:`~AuthSlapd.EXPIRE_WARNING` seconds before a password expires. Its
answers (the password policy response control, OID 1.3.6.1.4.1.42.2.27.8.5.1) come
only to a bind that sent the request control. The methods that put a user into a
policy state write the ppolicy operational attributes directly over the harness's
ldapi:// connection, so no test waits for time to pass. The policy governs simple
binds only: an EXTERNAL bind as a locked entry still succeeds.

SASL EXTERNAL: ``olcAuthzRegexp`` rules map two authentication identities to entries
that have no password (so no simple bind can pose as them): the peer credentials of
the test process on ldapi:// (:attr:`~AuthSlapd.peercred_dn` ->
:attr:`~AuthSlapd.ldapi_external_dn`) and the subject of the test client certificate
(:attr:`~AuthSlapd.cert_subject_dn` -> :attr:`~AuthSlapd.cert_external_dn`), presented
over ldaps:// or StartTLS. The server asks every TLS client for a certificate but does
not require one (``olcTLSVerifyClient: try``): simple binds over TLS work as on
:class:`Slapd`. The existing ACLs suffice: mapped identities are authenticated users,
who read the tree, and the overlay writes its attributes as the root DN.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

import ldap
import ldap.controls.simple
import ldap.dn
import ldap.modlist

from .slapd import CERTS_DIR, MODULE_DIRS, ConfigExtras, Slapd, User
from .waiting import wait_until

__all__ = ["AuthSlapd", "certificate_subject"]

#: The ppolicy attributes a state method may set; :meth:`AuthSlapd.restore` clears them.
_STATE_ATTRS = ("pwdAccountLockedTime", "pwdFailureTime", "pwdGraceUseTime", "pwdReset")
#: pwdAccountLockedTime's value for "locked by an administrator", whatever the policy's
#: pwdLockoutDuration (draft-behera-ldap-password-policy, 5.3.14).
_LOCKED_FOREVER = b"000001010000Z"
#: Characters special in a POSIX extended regular expression (slapd's olcAuthzRegexp).
_ERE_SPECIAL = frozenset(".[]()*+?{}|^$\\")
#: Linux's CLOCK_REALTIME_COARSE (<linux/time.h>; the time module does not name it):
#: the clock that time(2) reads, a timer tick behind the precise one.
_CLOCK_REALTIME_COARSE = 5


def certificate_subject(cert_file: str | Path) -> str:
    """The subject DN of a PEM certificate, as an LDAP DN string (RFC 4514).

    Read with the openssl tool (python's ssl module has no public parser, and the
    harness adds no dependency); openssl also generates the untrusted certificate.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl is needed to read the client certificate's subject")
    proc = subprocess.run(
        [openssl, "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", str(cert_file)],
        capture_output=True,
        check=True,
        text=True,
        timeout=30,
    )
    return proc.stdout.strip().removeprefix("subject=")


def _ere_escape(text: str) -> str:
    return "".join("\\" + char if char in _ERE_SPECIAL else char for char in text)


def _authz_pattern(dn: str) -> str:
    """An anchored olcAuthzRegexp pattern matching exactly ``dn`` as slapd sees it.

    slapd matches the normalized authentication DN: attribute types and (caseIgnore)
    values in lower case, no spaces, the values of a multi-valued RDN sorted.
    """
    rdns = []
    for rdn in ldap.dn.str2dn(dn):
        avas = sorted(
            f"{attr.lower()}={ldap.dn.escape_dn_chars(value.lower())}" for attr, value, _ in rdn
        )
        rdns.append("+".join(avas))
    return "^" + _ere_escape(",".join(rdns)) + "$"


def _generalized_time(moment: datetime.datetime) -> bytes:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ").encode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class AuthSlapd(Slapd):
    """A :class:`Slapd` with the ppolicy overlay and SASL EXTERNAL mappings.

    Every user under ``ou=people`` is subject to the default policy. The seeded users
    (alice, bob, carol) were loaded without a pwdChangedTime, so their passwords never
    age (the state methods work on them too); a test that needs a user in a known
    state takes a fresh one (:meth:`new_user`, or the ``policy_user`` fixture), so
    that failure counts and locks never leak between tests.

    A bind that sends the password policy request control
    (``ldap.controls.ppolicy.PasswordPolicyControl()``) gets the response control
    back; the states below say what it holds ("no warning, no error" means the
    control comes back empty). Changing a user's userPassword over :meth:`admin`
    sets pwdReset (pwdMustChange: a password set by someone else must be changed):
    call :meth:`restore` afterwards if that is not what the test wants. Users added
    with :meth:`add_user` start in the normal state.
    """

    #: Consecutive wrong passwords that lock an account (pwdMaxFailure).
    MAX_FAILURE = 3
    #: Binds allowed with an expired password (pwdGraceAuthnLimit).
    GRACE_LIMIT = 2
    #: Seconds before expiry from which a bind warns (pwdExpireWarning): 6 hours.
    EXPIRE_WARNING = 6 * 3600
    #: Seconds a password lives (pwdMaxAge): 10 years, no password expires in a test.
    MAX_AGE = 10 * 365 * 86400
    #: Default ``seconds`` of :meth:`expiring`.
    EXPIRING_IN = 3600

    def __init__(self, loglevel: str = "none") -> None:
        super().__init__(loglevel=loglevel)
        self.policies_dn = f"ou=policies,{self.suffix}"
        #: The policy entry every user falls under (olcPPolicyDefault).
        self.default_policy_dn = f"cn=default,{self.policies_dn}"
        #: The client certificate and key for SASL EXTERNAL over TLS (signed by the
        #: same CA as the server's certificate, :attr:`ca_file`).
        self.client_cert_file = str(CERTS_DIR / "client.pem")
        self.client_key_file = str(CERTS_DIR / "client.key")
        #: The subject of :attr:`client_cert_file`: the authentication DN slapd
        #: derives from it.
        self.cert_subject_dn = certificate_subject(self.client_cert_file)
        #: What SASL EXTERNAL over TLS with :attr:`client_cert_file` binds as (whoami):
        #: an entry without a password.
        self.cert_external_dn = f"uid=cert-client,{self.people_dn}"
        #: What SASL EXTERNAL over ldapi:// by this process's user binds as (whoami):
        #: an entry without a password.
        self.ldapi_external_dn = f"uid=local-admin,{self.people_dn}"
        self._provisioned = False
        self._serial = itertools.count(1)

    def __repr__(self) -> str:
        return super().__repr__().replace("<Slapd", "<AuthSlapd", 1)

    @property
    def peercred_dn(self) -> str:
        """The authentication DN slapd derives from this process's ldapi:// peer
        credentials (what :attr:`ldapi_external_dn` is mapped from)."""
        return f"gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth"

    # -- configuration -----------------------------------------------------------

    def config_extras(self) -> ConfigExtras:
        """The ppolicy module and overlay, and the EXTERNAL authz-regexp rules."""
        modular = any((d / "ppolicy.la").exists() for d in MODULE_DIRS)
        rules = [
            (self.peercred_dn, self.ldapi_external_dn),
            (self.cert_subject_dn, self.cert_external_dn),
        ]
        global_attrs = "".join(
            f'olcAuthzRegexp: {{{index}}}"{_authz_pattern(source)}" "{target}"\n'
            for index, (source, target) in enumerate(rules)
        )
        return ConfigExtras(
            global_attrs=global_attrs,
            modules="olcModuleLoad: {1}ppolicy\n" if modular else "",
            entries=(
                "\ndn: olcOverlay={0}ppolicy,olcDatabase={1}mdb,cn=config\n"
                "objectClass: olcOverlayConfig\n"
                "objectClass: olcPPolicyConfig\n"
                "olcOverlay: {0}ppolicy\n"
                f"olcPPolicyDefault: {self.default_policy_dn}\n"
                # Without it a locked account's bind answers no error at all (only
                # invalidCredentials), so as not to tell an attacker it is locked.
                "olcPPolicyUseLockout: TRUE\n"
            ),
        )

    def start(self) -> None:
        """Start, and on the first start of a new server add the policy, the EXTERNAL
        identities' entries and olcTLSVerifyClient: try.

        The base configuration says ``olcTLSVerifyClient: never`` (single-valued, so
        :meth:`config_extras` cannot override it): it is changed live, before any
        client connects. slapd keeps both changes across restarts.
        """
        super().start()
        if not self._provisioned:
            self._provision()
            self._provisioned = True

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._provisioned = False

    def _provision(self) -> None:
        policy = {
            "objectClass": [b"organizationalRole", b"pwdPolicy"],
            "cn": [b"default"],
            "pwdAttribute": [b"userPassword"],
            "pwdLockout": [b"TRUE"],
            "pwdMaxFailure": [str(self.MAX_FAILURE).encode()],
            "pwdLockoutDuration": [b"0"],  # locked until an administrator unlocks
            "pwdFailureCountInterval": [b"0"],  # failures are never forgotten by time
            "pwdMustChange": [b"TRUE"],
            "pwdGraceAuthnLimit": [str(self.GRACE_LIMIT).encode()],
            "pwdExpireWarning": [str(self.EXPIRE_WARNING).encode()],
            "pwdMaxAge": [str(self.MAX_AGE).encode()],
        }
        with self.admin() as conn:
            conn.modify_s("cn=config", [(ldap.MOD_REPLACE, "olcTLSVerifyClient", [b"try"])])
            conn.add_s(
                self.policies_dn,
                ldap.modlist.addModlist(
                    {"objectClass": [b"organizationalUnit"], "ou": [b"policies"]}
                ),
            )
            conn.add_s(self.default_policy_dn, ldap.modlist.addModlist(policy))
            for dn in (self.ldapi_external_dn, self.cert_external_dn):
                uid = ldap.dn.str2dn(dn)[0][0][1]
                entry = {
                    "objectClass": [b"inetOrgPerson"],
                    "uid": [uid.encode()],
                    "cn": [uid.encode()],
                    "sn": [uid.encode()],
                }
                conn.add_s(dn, ldap.modlist.addModlist(entry))

    # -- users ---------------------------------------------------------------------

    def new_user(self, prefix: str = "policy") -> User:
        """Add a user with a uid never used on this server (``<prefix>-<n>``), password
        ``<uid>-secret``, in the normal state."""
        uid = f"{prefix}-{next(self._serial)}"
        self.add_user(uid, f"{uid}-secret")
        return self.users[uid]

    def remove_user(self, uid: str) -> None:
        """Delete a user's entry (if it is there) and forget it."""
        with self.admin() as conn:
            with contextlib.suppress(ldap.NO_SUCH_OBJECT):
                conn.delete_s(self._dn(uid))
        self.users.pop(uid, None)

    def _dn(self, uid: str) -> str:
        user = self.users.get(uid)
        return user.dn if user is not None else f"uid={uid},{self.people_dn}"

    # -- password policy states ----------------------------------------------------

    def policy_attributes(self, uid: str) -> dict[str, list[str]]:
        """The user's ppolicy operational attributes now (for assertions and failure
        messages): pwdChangedTime, pwdFailureTime, pwdAccountLockedTime,
        pwdGraceUseTime, pwdReset, whichever are present."""
        with self.admin() as conn:
            [(_dn, found)] = conn.search_s(
                self._dn(uid), ldap.SCOPE_BASE, attrlist=["pwdChangedTime", *_STATE_ATTRS]
            )
        return {name: [value.decode() for value in values] for name, values in found.items()}

    def failures(self, uid: str) -> int:
        """How many failed binds slapd has recorded for the user (pwdFailureTime values).

        Each simple bind with a wrong password adds one, until the account locks at
        :attr:`MAX_FAILURE`; a bind to a locked account is refused before its password
        is checked and adds none. A successful bind clears them, as does
        :meth:`unlock` or :meth:`restore`.
        """
        return len(self.policy_attributes(uid).get("pwdFailureTime", []))

    def lock(self, uid: str) -> None:
        """Lock the account as an administrator would (pwdAccountLockedTime
        000001010000Z): until :meth:`unlock`.

        A bind, with the right password or not, answers invalidCredentials (49) with
        error accountLocked, and records no failure.
        """
        self._set_state(uid, [(ldap.MOD_REPLACE, "pwdAccountLockedTime", [_LOCKED_FOREVER])])

    def wait_locked(self, uid: str) -> None:
        """Wait until the lock that :attr:`MAX_FAILURE` wrong passwords set is in
        effect; fail at once if the account is not locked.

        slapd 2.5 stamps pwdAccountLockedTime from the precise clock, but the next
        bind compares the stamp with time(2), which on Linux reads the coarse clock, a
        timer tick (4 ms here) behind. A bind in that tick after the second turned
        finds the lock "not yet in effect" and checks the password: measured, 79 of
        14,758 lockouts let the right password in. A test that locks an account by
        wrong passwords and binds again calls this first; it returns at once but in
        those few milliseconds.
        """
        stamps = self.policy_attributes(uid).get("pwdAccountLockedTime")
        if not stamps:
            raise AssertionError(f"{uid} is not locked: {self.policy_attributes(uid)}")
        locked_at = (
            datetime.datetime.strptime(stamps[0][:14], "%Y%m%d%H%M%S")
            .replace(tzinfo=datetime.timezone.utc)
            .timestamp()
        )
        wait_until(
            lambda: time.clock_gettime(_CLOCK_REALTIME_COARSE) >= locked_at,
            timeout=2.0,
            interval=0.001,
            message=f"{self}: slapd's clock to reach {uid}'s lock",
        )

    def unlock(self, uid: str) -> None:
        """Unlock the account, whether :meth:`lock` or :attr:`MAX_FAILURE` wrong
        passwords locked it, and forget recorded failures; nothing else changes."""
        self._modify(
            uid,
            [
                (ldap.MOD_REPLACE, "pwdAccountLockedTime", None),
                (ldap.MOD_REPLACE, "pwdFailureTime", None),
            ],
        )

    def expire(self, uid: str, grace: int = 0) -> None:
        """Make the password expired (changed more than pwdMaxAge ago), with ``grace``
        grace binds left (0 to :attr:`GRACE_LIMIT`).

        ``grace=0``: a bind with the right password answers invalidCredentials (49)
        with error passwordExpired. ``grace=n > 0``: the next n binds with the right
        password succeed, each using one grace bind and answering warning
        graceAuthNsRemaining = the number left after it (n-1 for the first, ... 0);
        after them, binds fail as with ``grace=0``. The connection is not restricted.
        """
        if not 0 <= grace <= self.GRACE_LIMIT:
            raise ValueError(f"grace must be between 0 and {self.GRACE_LIMIT}, not {grace}")
        now = _now()
        # One pwdGraceUseTime value per grace bind already used; values must differ.
        used = [
            _generalized_time(now - datetime.timedelta(seconds=index))
            for index in range(self.GRACE_LIMIT - grace)
        ]
        changed = now - datetime.timedelta(seconds=self.MAX_AGE + 86400)
        self._set_state(
            uid,
            [(ldap.MOD_REPLACE, "pwdChangedTime", [_generalized_time(changed)])]
            + ([(ldap.MOD_REPLACE, "pwdGraceUseTime", used)] if used else []),
        )

    def reset(self, uid: str) -> None:
        """Mark the password as reset by an administrator (pwdReset TRUE).

        A bind with the right password succeeds (0) with error changeAfterReset. The
        connection is then restricted: any operation but bind, unbind, abandon,
        StartTLS, a password modify (extended operation) or whoami answers
        insufficientAccess (50). The user changing the password ends the state.
        """
        self._set_state(uid, [(ldap.MOD_REPLACE, "pwdReset", [b"TRUE"])])

    def expiring(self, uid: str, seconds: int = EXPIRING_IN) -> None:
        """Make the password expire in ``seconds`` (inside the warning window).

        A bind with the right password succeeds (0) with warning timeBeforeExpiration,
        the seconds left: ``seconds`` at most (less by the time since this call).
        """
        if not 0 < seconds < self.EXPIRE_WARNING:
            raise ValueError(f"seconds must be in (0, {self.EXPIRE_WARNING}), not {seconds}")
        changed = _now() - datetime.timedelta(seconds=self.MAX_AGE - seconds)
        self._set_state(uid, [(ldap.MOD_REPLACE, "pwdChangedTime", [_generalized_time(changed)])])

    def restore(self, uid: str) -> None:
        """Back to the normal state: password changed now, not locked, no failures, no
        grace bind used, no reset. A bind with the right password succeeds (0) with
        no warning and no error."""
        self._set_state(uid, [])

    def _set_state(self, uid: str, mods: list[tuple[int, str, list[bytes] | None]]) -> None:
        """One modify: clear every state, then apply ``mods`` (which win, coming last)."""
        clear: list[tuple[int, str, list[bytes] | None]] = [
            (ldap.MOD_REPLACE, name, None) for name in _STATE_ATTRS
        ]
        clear.append((ldap.MOD_REPLACE, "pwdChangedTime", [_generalized_time(_now())]))
        self._modify(uid, clear + mods)

    def _modify(self, uid: str, mods: list[tuple[int, str, list[bytes] | None]]) -> None:
        """Modify with the Relax Rules control: pwdChangedTime, pwdFailureTime and
        pwdGraceUseTime are NO-USER-MODIFICATION, which slapd lifts only under that
        control (and only for a client with manage access, as the ldapi:// one)."""
        with self.admin() as conn:
            conn.modify_ext_s(
                self._dn(uid), mods, serverctrls=[ldap.controls.simple.RelaxRulesControl()]
            )
