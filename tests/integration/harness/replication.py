"""Two slapd servers replicating each other: OpenLDAP multi-provider (mirror mode).

Each server is a provider (the syncprov overlay) and a consumer of the other
(``olcSyncrepl`` in refreshAndPersist mode, ``olcMultiProvider: TRUE``), with its own
``olcServerID``. Writes on either side reach the other; a server that was down
catches up from its peer when it comes back.

Only the first server is seeded; the second starts empty and receives every entry
through replication, so both hold the same entries with the same entryUUIDs (two
independent seeds would conflict). The consumers reach their provider over
``ldapi://``, anonymously, with the manage right the harness ACLs give that listener:
replication never shows up as an IP client or a bind in the counters the tests read
from cn=Monitor.
"""

from __future__ import annotations

import contextlib
import signal
import time

import ldap

from .slapd import MODULE_DIRS, ConfigExtras, Slapd
from .waiting import wait_until

__all__ = ["ReplicaSlapd", "ReplicatedPair"]

#: Seconds a consumer waits before reconnecting to a provider that went away, and
#: how often: keep short, so a server that comes back rejoins quickly.
RETRY_INTERVAL = 1
RETRY_COUNT = "+"
#: Seconds for replication to converge in the helpers below.
CONVERGE = 10.0


class ReplicaSlapd(Slapd):
    """A Slapd that is a provider and a consumer of :attr:`peer` (set before start)."""

    def __init__(self, server_id: int, *, seed: bool, loglevel: str = "none") -> None:
        super().__init__(loglevel=loglevel, seed=seed)
        self.server_id = server_id
        self.peer: Slapd | None = None

    def __repr__(self) -> str:
        return super().__repr__().replace("<Slapd", f"<ReplicaSlapd#{self.server_id}", 1)

    def config_extras(self) -> ConfigExtras:
        """olcServerID, syncprov, and a syncrepl consumer of the peer over ldapi://."""
        assert self.peer is not None and self.peer.rundir is not None, "allocate the peer first"
        # syncprov's module lives next to back_mdb when modules are used at all.
        modular = any((d / "back_mdb.la").exists() for d in MODULE_DIRS)
        syncrepl = (
            f"rid={self.server_id:03d} provider={self.peer.ldapi_uri} bindmethod=simple"
            f' searchbase="{self.suffix}" type=refreshAndPersist'
            f' retry="{RETRY_INTERVAL} {RETRY_COUNT}" timeout=3 network-timeout=3'
        )
        return ConfigExtras(
            global_attrs=f"olcServerID: {self.server_id}\n",
            modules="olcModuleLoad: {1}syncprov\n" if modular else "",
            database_attrs=(
                "olcDbIndex: entryCSN eq\n"
                "olcDbIndex: entryUUID eq\n"
                f"olcSyncrepl: {syncrepl}\n"
                "olcMultiProvider: TRUE\n"
            ),
            entries=(
                "\ndn: olcOverlay={0}syncprov,olcDatabase={1}mdb,cn=config\n"
                "objectClass: olcOverlayConfig\n"
                "objectClass: olcSyncProvConfig\n"
                "olcOverlay: {0}syncprov\n"
                "olcSpCheckpoint: 10 1\n"
            ),
        )


class ReplicatedPair:
    """Two servers in multi-provider replication; ``first`` holds the seed data.

    :meth:`start` returns once the second server has received every seeded entry.
    Use as a context manager, or call :meth:`stop` (which deletes both).
    """

    def __init__(self, loglevel: str = "none") -> None:
        self.first = ReplicaSlapd(1, seed=True, loglevel=loglevel)
        self.second = ReplicaSlapd(2, seed=False, loglevel=loglevel)
        self.first.peer, self.second.peer = self.second, self.first

    @property
    def servers(self) -> tuple[ReplicaSlapd, ReplicaSlapd]:
        return self.first, self.second

    @property
    def uris(self) -> str:
        """Both ldap:// URIs, first then second: what a pool is given."""
        return f"{self.first.ldap_uri} {self.second.ldap_uri}"

    def __repr__(self) -> str:
        return f"<ReplicatedPair {self.first!r} {self.second!r}>"

    def start(self) -> None:
        for server in self.servers:
            server.allocate()  # each configuration names the other's ldapi:// socket
        try:
            for server in self.servers:
                server.start()
            # The second got its users dict from the seed it did not load: same entries.
            self.second.users = dict(self.first.users)
            for user in self.first.users.values():
                self.wait_replicated(user.dn)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill both and delete their data.

        SIGKILL, not SIGTERM: a server that rejoined after a kill can take seconds to
        shut down (its consumer thread winds down on a timeout), and the data is
        thrown away anyway.
        """
        for server in self.servers:
            server.halt(signal.SIGKILL)
            server.stop()

    def __enter__(self) -> ReplicatedPair:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kill(self, server: Slapd) -> None:
        """Crash ``server`` (SIGKILL): no goodbye to clients or to its peer."""
        server.halt(signal.SIGKILL)

    def wait_replicated(
        self, dn: str, on: Slapd | None = None, timeout: float = CONVERGE
    ) -> float:
        """Wait until ``dn`` exists on ``on`` (default: both running servers); return
        the seconds it took."""
        targets = [on] if on is not None else [s for s in self.servers if s.running]
        started = time.monotonic()
        for server in targets:
            wait_until(
                lambda server=server: exists(server, dn),  # type: ignore[misc]
                timeout=timeout,
                interval=0.05,
                message=f"{dn} replicated to {server}",
            )
        return time.monotonic() - started


def exists(server: Slapd, dn: str) -> bool:
    """Whether ``dn`` exists on ``server`` (read over its ldapi:// socket)."""
    with server.admin() as conn:
        try:
            conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["1.1"])
        except ldap.NO_SUCH_OBJECT:
            return False
    return True


def read_attribute(server: Slapd, dn: str, name: str) -> list[str]:
    """The values of attribute ``name`` of ``dn`` on ``server`` ([] if the entry is absent)."""
    with server.admin() as conn, contextlib.suppress(ldap.NO_SUCH_OBJECT):
        [(_dn, found)] = conn.search_s(dn, ldap.SCOPE_BASE, attrlist=[name])
        return [value.decode() for value in found.get(name, [])]
    return []
