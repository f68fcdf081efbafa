"""Parsing of the ``uri`` argument into :class:`~ldappool._port.Server` objects."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ldappool._port import Server

__all__ = ["parse_uris"]

_SCHEMES = ("ldap", "ldaps", "ldapi")
_SEPARATORS = re.compile(r"[\s,]+")


def parse_uris(value: object, *, any_scheme: bool = False) -> tuple[Server, ...]:
    """Split ``value`` on commas and/or whitespace and parse each URI.

    A list or tuple of strings is accepted as well. Duplicates are dropped, order kept.
    ``any_scheme``: any ``scheme://rest`` is taken as it is (a duck-typed 3.x connector
    class decides what its URIs mean).
    """
    if isinstance(value, (list, tuple)):
        if not all(isinstance(item, str) for item in value):
            raise TypeError("uri must be a string or a list of strings")
        value = " ".join(value)
    if not isinstance(value, str):
        raise TypeError(f"uri must be a string of LDAP URIs, not {type(value).__name__}")
    parts = [part for part in _SEPARATORS.split(value) if part]
    if not parts:
        raise ValueError("uri must name at least one server, e.g. 'ldap://localhost'")
    servers: dict[str, Server] = {}
    for part in parts:
        server = _parse_any(part) if any_scheme else _parse_one(part)
        servers.setdefault(server.uri, server)
    return tuple(servers.values())


def _parse_any(text: str) -> Server:
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme:
        raise ValueError(f"uri: {text!r} is not a URI (scheme://...)")
    if scheme.lower() in _SCHEMES:
        return _parse_one(text)
    return Server(uri=text, scheme=scheme.lower(), host=rest, port=None)


def _parse_one(text: str) -> Server:
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        raise ValueError(
            f"uri: {text!r} is not an LDAP URI; use ldap://host[:port], "
            "ldaps://host[:port] or ldapi://[socket path, %2F-quoted]"
        )
    parts = urlsplit(text)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"uri: {text!r} has a DN, query or fragment part; give only the server")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"uri: {text!r} contains user information; use bind and passwd")
    if scheme == "ldapi":
        return Server(
            uri=f"ldapi://{parts.netloc}", scheme=scheme, host=unquote(parts.netloc), port=None
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"uri: {text!r} has no host name")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"uri: {text!r} has an invalid port") from exc
    if port == 0:
        raise ValueError(f"uri: {text!r} has an invalid port")
    return Server(uri=f"{scheme}://{parts.netloc}", scheme=scheme, host=host, port=port)
