"""The only place where tests care which driver's connection they were handed."""

from __future__ import annotations

from typing import Any

import ldap

__all__ = ["describe", "search", "whoami"]


def _is_python_ldap(conn: Any) -> bool:
    return isinstance(conn, ldap.ldapobject.SimpleLDAPObject)


def search(conn: Any, base: str, filterstr: str = "(objectClass=*)") -> list[str]:
    """Subtree search on a native connection; return the DNs found, sorted."""
    if _is_python_ldap(conn):
        found = conn.search_s(base, ldap.SCOPE_SUBTREE, filterstr, attrlist=["1.1"])
        return sorted(dn for dn, _attrs in found if dn is not None)
    import ldap3

    if not isinstance(conn, ldap3.Connection):
        raise TypeError(f"not a python-ldap or ldap3 connection: {conn!r}")
    conn.search(base, filterstr, search_scope=ldap3.SUBTREE, attributes=[ldap3.NO_ATTRIBUTES])
    if conn.result["result"] != 0:
        raise RuntimeError(f"ldap3 search failed: {conn.result}")
    return sorted(
        str(item["dn"]) for item in conn.response or [] if item["type"] == "searchResEntry"
    )


def whoami(conn: Any) -> str:
    """The DN the server says this connection is bound as ("" when anonymous)."""
    answer = conn.whoami_s() if _is_python_ldap(conn) else conn.extend.standard.who_am_i()
    return str(answer or "").removeprefix("dn:")


def describe(conn: Any, dn: str, text: str) -> None:
    """A write: replace the entry's description (never retried by the pool)."""
    if _is_python_ldap(conn):
        conn.modify_s(dn, [(ldap.MOD_REPLACE, "description", [text.encode()])])
        return
    import ldap3

    conn.modify(dn, {"description": [(ldap3.MODIFY_REPLACE, [text])]})
    if conn.result["result"] != 0:
        raise RuntimeError(f"ldap3 modify failed: {conn.result}")
