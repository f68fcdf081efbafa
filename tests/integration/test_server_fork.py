"""After os.fork() the child opens its own connections; the parent keeps its own."""

from __future__ import annotations

import json
import os
import select
import time
import traceback

from tests.integration.harness import ManagerFactory, Slapd, wait_until, whoami

CHILD_DEADLINE = 20.0


def run_in_child(child: object) -> dict[str, object]:
    """Fork; run ``child()`` in the child and return what it returned (JSON), bounded."""
    assert callable(child)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            try:
                result = {"ok": True, **child()}
            except BaseException:
                result = {"ok": False, "error": traceback.format_exc()}
            os.write(write_end, json.dumps(result).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + CHILD_DEADLINE
    chunks: list[bytes] = []
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() >= deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError(f"child did not exit within {CHILD_DEADLINE} s")
            time.sleep(0.01)
    finally:
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, f"child exit status {status}"
    answer: dict[str, object] = json.loads(b"".join(chunks))
    assert answer["ok"], answer.get("error")
    return answer


def test_after_fork_child_opens_its_own_connection_and_parent_keeps_its_own(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, alice.dn, alice.password)
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    parents = slapd.client_ids()
    assert len(parents) == 1

    def child() -> dict[str, object]:
        with cm.connection() as conn:
            return {"whoami": whoami(conn), "ids": sorted(slapd.client_ids())}

    answer = run_in_child(child)
    assert answer["whoami"] == alice.dn
    assert isinstance(answer["ids"], list)
    child_ids = set(answer["ids"])
    assert len(child_ids) == 2 and parents < child_ids  # its own, next to the parent's
    # The child's exit closed its connection only; the parent's is the same, and works.
    wait_until(lambda: slapd.client_ids() == parents, message="only the parent's left")
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    assert slapd.client_ids() == parents
    stats = cm.stats()
    assert (stats.opened, stats.stale, stats.reused) == (1, 0, 1)


def test_fork_while_a_connection_is_lent_leaves_it_to_the_parent(
    slapd: Slapd, make_manager: ManagerFactory
) -> None:
    alice = slapd.users["alice"]
    cm = make_manager(slapd.ldap_uri, alice.dn, alice.password, size=1)
    with cm.connection() as lent:
        parents = slapd.client_ids()

        def child() -> dict[str, object]:
            with cm.connection() as conn:  # size=1, yet the child's pool is its own
                return {"whoami": whoami(conn), "ids": sorted(slapd.client_ids())}

        answer = run_in_child(child)
        assert answer["whoami"] == alice.dn
        wait_until(lambda: slapd.client_ids() == parents, message="only the parent's left")
        assert whoami(lent) == alice.dn
    with cm.connection() as conn:
        assert whoami(conn) == alice.dn
    assert slapd.client_ids() == parents
