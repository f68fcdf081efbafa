"""A real OpenLDAP slapd on loopback, with honest counters read from cn=Monitor.

The server listens on ldap:// and ldaps:// (127.0.0.1, free ports) and on ldapi://
(a socket in its run directory). The harness itself talks to the server only over
ldapi://, anonymously: the ACLs grant the ldapi listener read on cn=Monitor and manage
on the data and cn=config. So the harness never binds and never opens an IP
connection, and every IP connection and every bind the counters show comes from the
code under test.
"""

from __future__ import annotations

import os

os.environ.setdefault("LDAPNOINIT", "1")  # ignore ~/.ldaprc and ldap.conf

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote_plus

import attrs
import ldap
import ldap.modlist

from .waiting import wait_until

__all__ = ["CERTS_DIR", "ConfigExtras", "Slapd", "SlapdNotInstalled", "User", "find_slapd"]

CERTS_DIR = Path(ldap.__file__).resolve().parent.parent / "slapdtest" / "certs"
SCHEMA_DIRS = (Path("/etc/ldap/schema"), Path("/etc/openldap/schema"))
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib64/openldap"), Path("/usr/libexec/openldap"))
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/libexec", "/usr/libexec")
PR_SET_PDEATHSIG = 1
HARNESS_TIMEOUT = 5.0  # seconds for any single harness operation on the server


class SlapdNotInstalled(RuntimeError):
    """slapd, slapadd or the OpenLDAP schema files are missing."""


@attrs.frozen
class User:
    uid: str
    dn: str
    password: str


def find_slapd() -> tuple[str, str, Path]:
    """Return the paths of slapd, slapadd and the schema directory, or raise."""
    search_path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    slapd = shutil.which(os.environ.get("SLAPD") or "slapd", path=search_path)
    slapadd = shutil.which("slapadd", path=search_path)
    schema = next((d for d in SCHEMA_DIRS if (d / "core.ldif").exists()), None)
    if not slapd or not slapadd or schema is None:
        raise SlapdNotInstalled(
            f"OpenLDAP server not found (slapd={slapd}, slapadd={slapadd}, schema={schema}): "
            "install slapd and ldap-utils"
        )
    return slapd, slapadd, schema


def _load_prctl() -> Callable[[int, int], int] | None:
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return prctl


# Looked up now: the child of a threaded process must not dlopen() before exec.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM slapd if the test process dies (Linux).

    Keeps a killed or crashed test run (faulthandler's deadline) from leaving
    servers behind. Linux ties this to the thread that started slapd: start and
    restart servers from the main thread.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcLogLevel: {loglevel}
olcAllows: update_anon
olcPidFile: {rundir}/slapd.pid
olcTLSCACertificateFile: {ca_file}
olcTLSCertificateFile: {cert_file}
olcTLSCertificateKeyFile: {key_file}
olcTLSVerifyClient: never
{global_extra}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
{module_path}olcModuleLoad: {{0}}back_mdb
{modules_extra}
dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by sockurl.regex="^ldapi:" manage by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcRootDN: {root_dn}
olcRootPW: {root_pw}
olcDbDirectory: {rundir}/data
olcAccess: {{0}}to attrs=userPassword by sockurl.regex="^ldapi:" manage by self write
  by anonymous auth by * none
olcAccess: {{1}}to * by sockurl.regex="^ldapi:" manage by users read by * none
{database_extra}
dn: olcDatabase={{2}}monitor,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{2}}monitor
olcAccess: {{0}}to * by sockurl.regex="^ldapi:" read by dn.exact="{root_dn}" read
  by * none
{entries_extra}"""


@attrs.frozen
class ConfigExtras:
    """Additions to the generated cn=config, for servers with more than the basics.

    Each is LDIF text, every line ending with a newline: ``global_attrs`` go into
    ``cn=config`` (e.g. ``olcServerID``), ``modules`` are ``olcModuleLoad`` lines after
    back_mdb, ``database_attrs`` go into the data (mdb) database entry (e.g.
    ``olcSyncrepl``), and ``entries`` are whole entries appended last, each preceded
    by a blank line (e.g. an overlay).
    """

    global_attrs: str = ""
    modules: str = ""
    database_attrs: str = ""
    entries: str = ""


class Slapd:
    """One slapd process and its data, kept across restarts until :meth:`stop`.

    Users ``alice``, ``bob`` and ``carol`` exist from the start, with passwords
    ``<uid>-secret``; the root DN binds with :attr:`root_pw`. With ``seed=False`` the
    database starts empty (a replica that gets those entries from its provider).

    Subclasses add to the configuration by overriding :meth:`config_extras`.
    """

    suffix = "dc=ldappool,dc=test"
    root_pw = "root-secret"
    initial_users = ("alice", "bob", "carol")

    def __init__(
        self,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        loglevel: str = "none",
        seed: bool = True,
    ) -> None:
        self._slapd, self._slapadd, self._schema_dir = find_slapd()
        self.cert_file = str(cert_file or CERTS_DIR / "server.pem")
        self.key_file = str(key_file or CERTS_DIR / "server.key")
        #: The CA that signed the server's certificate: what a client must trust.
        self.ca_file = str(ca_file or CERTS_DIR / "ca.pem")
        self.loglevel = loglevel
        self.seed = seed
        self.root_dn = f"cn=Manager,{self.suffix}"
        self.people_dn = f"ou=people,{self.suffix}"
        self.users: dict[str, User] = {}
        self.rundir: Path | None = None
        self.port = 0
        self.ldaps_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._suspended = False
        self._configured = False
        self._log_file: Path | None = None

    # -- addresses ---------------------------------------------------------------

    @property
    def ldap_uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldapi_uri(self) -> str:
        assert self.rundir is not None, "slapd was never started"
        return "ldapi://" + quote_plus(str(self.rundir / "ldapi"))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def suspended(self) -> bool:
        return self._suspended

    def __repr__(self) -> str:
        state = "suspended" if self._suspended else "running" if self.running else "stopped"
        return f"<Slapd {self.ldap_uri} pid={self.pid} {state}>"

    # -- life cycle --------------------------------------------------------------

    def allocate(self) -> None:
        """Choose the run directory (hence the ldapi:// socket) and the ports, once.

        :meth:`start` does it too; call it first when another server's configuration
        must name this one (replication) before either starts.
        """
        if self.rundir is not None:
            return
        # A short path: a unix socket path must fit in 108 bytes.
        self.rundir = Path(tempfile.mkdtemp(prefix="ldappool-slapd-"))
        self._log_file = self.rundir / "slapd.log"
        self.port, self.ldaps_port = free_port(), free_port()

    def config_extras(self) -> ConfigExtras:
        """What to add to the generated cn=config: nothing here; a hook for subclasses.

        Called once, when the configuration is created (the first :meth:`start` after
        :meth:`allocate`), so addresses from :meth:`allocate` are known.
        """
        return ConfigExtras()

    def start(self) -> None:
        """Create the configuration and data (first time only) and start the server."""
        if self.running:
            return
        if not self._configured:
            self._setup()
        self._spawn()

    def halt(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process with ``sig`` (SIGKILL: a crash), keeping configuration and
        data: :meth:`start` brings the same server back on the same ports."""
        self._terminate(sig)

    def stop(self) -> None:
        """Stop the server and delete its data. Safe to call more than once."""
        try:
            self._terminate()
        finally:
            if self.rundir is not None:
                shutil.rmtree(self.rundir, ignore_errors=True)
                self.rundir = None
            self._configured = False

    def restart(self) -> None:
        """Stop and start again: same ports, same data, every connection dropped."""
        self._terminate()
        self._spawn()

    def suspend(self) -> None:
        """SIGSTOP: the kernel still accepts TCP connections, the server never answers.

        Returns once every thread of slapd is stopped (a signal is delivered
        asynchronously: a request sent right after kill() could still be answered).
        """
        assert self._proc is not None, "slapd is not running"
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._suspended = True
        wait_until(lambda: self._thread_states() <= {"T", "t"}, message=f"{self} stopped")

    def resume(self) -> None:
        """SIGCONT after :meth:`suspend`."""
        if self._proc is not None and self._suspended:
            os.kill(self._proc.pid, signal.SIGCONT)
            wait_until(lambda: not self._thread_states() & {"T", "t"}, message=f"{self} resumed")
        self._suspended = False

    def _thread_states(self) -> set[str]:
        """The scheduler state letter of each slapd thread (Linux /proc)."""
        assert self._proc is not None
        states = set()
        for stat in Path(f"/proc/{self._proc.pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):  # a thread that just ended
                # "tid (comm) S ...": the state follows the last parenthesis.
                states.add(stat.read_text().rsplit(")", 1)[1].split()[0])
        return states

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        """What slapd wrote to stderr (useful in failure messages)."""
        if self._log_file is None or not self._log_file.exists():
            return ""
        return self._log_file.read_text(errors="replace")

    def _setup(self) -> None:
        self.allocate()
        assert self.rundir is not None
        (self.rundir / "slapd.d").mkdir()
        (self.rundir / "data").mkdir()
        extras = self.config_extras()
        module_dir = next((d for d in MODULE_DIRS if (d / "back_mdb.la").exists()), None)
        config = _CONFIG.format(
            loglevel=self.loglevel,
            rundir=self.rundir,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            module_path=f"olcModulePath: {module_dir}\n" if module_dir else "",
            suffix=self.suffix,
            root_dn=self.root_dn,
            root_pw=self.root_pw,
            global_extra=extras.global_attrs,
            modules_extra=extras.modules,
            database_extra=extras.database_attrs,
            entries_extra=extras.entries,
        )
        self._slapadd_run(["-n0"], config)
        for schema in ("core", "cosine", "inetorgperson"):
            self._slapadd_run(["-n0", "-l", str(self._schema_dir / f"{schema}.ldif")])
        entries = [
            f"dn: {self.suffix}\nobjectClass: dcObject\nobjectClass: organization\n"
            "o: ldappool\ndc: ldappool\n",
            f"dn: {self.people_dn}\nobjectClass: organizationalUnit\nou: people\n",
        ]
        for uid in self.initial_users:
            user = self._user(uid, f"{uid}-secret")
            entries.append(
                f"dn: {user.dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
                f"sn: {uid}\nuserPassword: {user.password}\n"
            )
            self.users[uid] = user
        if self.seed:
            self._slapadd_run(["-b", self.suffix], "\n".join(entries))
        self._configured = True

    def _slapadd_run(self, args: list[str], ldif: str | None = None) -> None:
        assert self.rundir is not None
        proc = subprocess.run(
            [self._slapadd, "-F", str(self.rundir / "slapd.d"), *args],
            input=ldif.encode() if ldif is not None else None,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"slapadd {args} failed: {proc.stderr.decode(errors='replace')}")

    def _spawn(self) -> None:
        assert self.rundir is not None and self._log_file is not None
        urls = f"{self.ldap_uri}/ {self.ldaps_uri}/ {self.ldapi_uri}"
        with self._log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._slapd, "-F", str(self.rundir / "slapd.d"), "-h", urls, "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads run in the child)
            )
        self._suspended = False
        try:
            wait_until(self._ready, timeout=15, interval=0.05, message=f"{self} ready")
        except BaseException:
            self._terminate()
            raise

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"slapd exited with {self._proc.returncode}:\n{self.log()}")
        # slapd opens every listener before it serves any: an answer over ldapi://
        # means ldap:// and ldaps:// accept too (and no TCP probe shows in the counts).
        try:
            self.connections()
        except ldap.LDAPError:
            return False
        return True

    def _terminate(self, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._suspended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self._suspended = False
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    # -- harness connection (ldapi://, anonymous, never binds) -------------------

    @contextlib.contextmanager
    def admin(self) -> Iterator[ldap.ldapobject.LDAPObject]:
        """A fresh anonymous ldapi:// connection with manage rights; closed after use."""
        conn = ldap.initialize(self.ldapi_uri)
        try:
            conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, HARNESS_TIMEOUT)
            conn.set_option(ldap.OPT_TIMEOUT, HARNESS_TIMEOUT)
            yield conn
        finally:
            with contextlib.suppress(ldap.LDAPError):
                conn.unbind_s()

    def add_user(self, uid: str, password: str) -> str:
        """Add an inetOrgPerson under ou=people and return its DN."""
        user = self._user(uid, password)
        entry = {
            "objectClass": [b"inetOrgPerson"],
            "uid": [uid.encode()],
            "cn": [uid.encode()],
            "sn": [uid.encode()],
            "userPassword": [password.encode()],
        }
        with self.admin() as conn:
            conn.add_s(user.dn, ldap.modlist.addModlist(entry))
        self.users[uid] = user
        return user.dn

    def set_idle_timeout(self, seconds: int) -> None:
        """olcIdleTimeout: the server closes connections idle that long (0: never)."""
        with self.admin() as conn:
            conn.modify_s(
                "cn=config", [(ldap.MOD_REPLACE, "olcIdleTimeout", [str(int(seconds)).encode()])]
            )

    def _user(self, uid: str, password: str) -> User:
        return User(uid=uid, dn=f"uid={uid},{self.people_dn}", password=password)

    # -- counters from cn=Monitor ------------------------------------------------

    def connections(self) -> list[dict[str, str]]:
        """One dict per connection slapd lists now (monitorConnection* attributes).

        Includes the ldapi:// connection doing the read.
        """
        with self.admin() as conn:
            found = conn.search_s(
                "cn=Connections,cn=Monitor",
                ldap.SCOPE_ONELEVEL,
                "(objectClass=monitorConnection)",
                attrlist=["*", "+"],
            )
        return [
            {name: values[0].decode() for name, values in attrs_.items()} for _dn, attrs_ in found
        ]

    def clients(self) -> list[dict[str, str]]:
        """The connections from IP peers: the code under test (or a proxy for it)."""
        return [
            entry
            for entry in self.connections()
            if entry.get("monitorConnectionPeerAddress", "").startswith("IP=")
        ]

    def client_connections(self) -> int:
        """How many connections from IP peers are open now."""
        return len(self.clients())

    def client_ids(self) -> set[int]:
        """The server's numbers for the IP connections open now (stable per connection)."""
        return {int(entry["monitorConnectionNumber"]) for entry in self.clients()}

    def client_identities(self) -> list[str]:
        """The DN each IP connection is bound as, as the server sees it ("" anonymous)."""
        return [entry.get("monitorConnectionAuthzDN", "") for entry in self.clients()]

    def completed(self, operation: str) -> int:
        """How many ``operation`` (Bind, Search, Extended...) the server completed since
        it (re)started.

        Taken once none is in flight: slapd counts an operation as completed just
        after sending its result, so one the client saw answered may not be counted
        yet.
        """
        deadline = time.monotonic() + HARNESS_TIMEOUT
        while True:
            with self.admin() as conn:
                [(_dn, found)] = conn.search_s(
                    f"cn={operation},cn=Operations,cn=Monitor",
                    ldap.SCOPE_BASE,
                    attrlist=["monitorOpInitiated", "monitorOpCompleted"],
                )
            initiated, completed = (
                int(found[name][0]) for name in ("monitorOpInitiated", "monitorOpCompleted")
            )
            # Reading cn=Monitor is itself a search in flight, not yet completed: Search
            # counts include the harness's own reads (each call adds one to the next).
            own = 1 if operation == "Search" else 0
            if initiated - own == completed:
                return completed
            if time.monotonic() >= deadline:
                raise AssertionError(f"{operation} still in flight after {HARNESS_TIMEOUT} s")
            time.sleep(0.005)

    def binds(self) -> int:
        """Binds completed since the server (re)started: exact, as the harness never binds."""
        return self.completed("Bind")
