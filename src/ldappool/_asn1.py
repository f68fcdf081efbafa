"""Just enough BER/DER for ``ldappool check``: the StartTLS exchange and a certificate.

``check`` probes a server below any LDAP library, on a raw socket, so that it can time
each step and see a certificate that fails verification. That takes the two StartTLS
messages of RFC 4511 (4.14) and the fields of an X.509 certificate that an operator
asks about. Python's ``ssl`` decodes a certificate only once it has been verified, and
the standard library has no public X.509 parser; so both are decoded here. Only the
definite-length, single-byte-tag forms that LDAP messages and certificates use are
accepted; anything else raises :class:`BerError`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

import attrs

__all__ = [
    "STARTTLS_OID",
    "BerError",
    "CertificateFields",
    "ExtendedResponse",
    "encode_tlv",
    "message_length",
    "parse_certificate",
    "parse_extended_response",
    "starttls_request",
]

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"

_SEQUENCE, _SET, _INTEGER, _ENUMERATED, _OCTET_STRING, _OID = 0x30, 0x31, 0x02, 0x0A, 0x04, 0x06
_EXTENDED_REQUEST, _EXTENDED_RESPONSE = 0x77, 0x78  # [APPLICATION 23], [APPLICATION 24]
_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_SUBJECT_ALT_NAME = "2.5.29.17"


class BerError(ValueError):
    """Bytes that are not the BER (or DER) expected."""


@attrs.frozen
class ExtendedResponse:
    """An LDAP ExtendedResponse: the server's answer to StartTLS."""

    message_id: int
    result_code: int
    matched_dn: str
    diagnostic: str
    response_name: str | None


@attrs.frozen
class CertificateFields:
    """What an operator asks about a server certificate; names in RFC 4514 order."""

    subject: str
    issuer: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    #: subjectAltName entries as OpenSSL prints them: ``DNS:host``, ``IP:1.2.3.4``...
    alt_names: tuple[str, ...]


# -- encoding --------------------------------------------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def encode_tlv(tag: int, content: bytes) -> bytes:
    """One tag-length-value element (definite length, the shortest form: DER)."""
    return bytes([tag]) + _length(len(content)) + content


def starttls_request(message_id: int = 1) -> bytes:
    """The StartTLS ExtendedRequest: ``LDAPMessage { id, [APPLICATION 23] { [0] OID } }``."""
    if not 0 < message_id < 0x80000000:
        raise ValueError(f"message_id must be in 1..2**31-1, not {message_id}")
    number = message_id.to_bytes((message_id.bit_length() + 8) // 8, "big")
    request = encode_tlv(_EXTENDED_REQUEST, encode_tlv(0x80, STARTTLS_OID.encode()))
    return encode_tlv(_SEQUENCE, encode_tlv(_INTEGER, number) + request)


# -- decoding --------------------------------------------------------------------------


def message_length(head: bytes) -> int | None:
    """The full size of the element starting ``head``, or None until enough is read.

    Lets a caller read exactly one LDAP message off a socket, and nothing of what
    follows it (the TLS handshake after a StartTLS answer).
    """
    if len(head) < 2:
        return None
    first = head[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise BerError(f"unsupported BER length form 0x{first:02x}")
    if len(head) < 2 + count:
        return None
    return 2 + count + int.from_bytes(head[2 : 2 + count], "big")


def _read(data: bytes, offset: int, end: int | None = None) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``offset``."""
    end = len(data) if end is None else end
    if offset + 2 > end:
        raise BerError("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-byte tag at offset {offset}")
    size = message_length(data[offset:end])
    if size is None or offset + size > end:
        raise BerError("truncated element")
    header = 2 + (data[offset + 1] & 0x7F if data[offset + 1] >= 0x80 else 0)
    return tag, offset + header, offset + size


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    while start < end:
        element = _read(data, start, end)
        found.append(element)
        start = element[2]
    return found


def _expect(element: tuple[int, int, int], tag: int, what: str) -> tuple[int, int]:
    if element[0] != tag:
        raise BerError(f"{what}: expected tag 0x{tag:02x}, got 0x{element[0]:02x}")
    return element[1], element[2]


def _integer(content: bytes) -> int:
    if not content:
        raise BerError("empty INTEGER")
    return int.from_bytes(content, "big", signed=True)


def _oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise BerError("malformed OBJECT IDENTIFIER")
    arcs, value = [], 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def parse_extended_response(message: bytes) -> ExtendedResponse:
    """Decode one LDAPMessage holding an ExtendedResponse (RFC 4511, 4.12)."""
    start, end = _expect(_read(message, 0), _SEQUENCE, "LDAPMessage")
    parts = _children(message, start, end)
    if len(parts) < 2:
        raise BerError("LDAPMessage: no protocolOp")
    message_id = _integer(message[slice(*_expect(parts[0], _INTEGER, "messageID"))])
    start, end = _expect(parts[1], _EXTENDED_RESPONSE, "ExtendedResponse")
    fields = _children(message, start, end)
    if len(fields) < 3:
        raise BerError("ExtendedResponse: missing LDAPResult fields")
    code = _integer(message[slice(*_expect(fields[0], _ENUMERATED, "resultCode"))])
    matched = message[slice(*_expect(fields[1], _OCTET_STRING, "matchedDN"))]
    diagnostic = message[slice(*_expect(fields[2], _OCTET_STRING, "diagnosticMessage"))]
    name = next((message[s:e].decode() for tag, s, e in fields[3:] if tag == 0x8A), None)
    return ExtendedResponse(
        message_id,
        code,
        matched.decode(errors="replace"),
        diagnostic.decode(errors="replace"),
        name,
    )


def _string(tag: int, content: bytes) -> str:
    codec = _STRING_CODECS.get(tag, "latin-1")
    return content.decode(codec, errors="replace")


def _escape(value: str) -> str:
    escaped = "".join("\\" + char if char in ',+"\\<>;' else char for char in value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    return escaped[:-1] + "\\ " if escaped.endswith(" ") else escaped


def _name(data: bytes, start: int, end: int) -> str:
    """An X.501 Name as an RFC 4514 string (the last RDN first, as LDAP writes DNs)."""
    rdns = []
    for rdn in _children(data, start, end):
        pairs = []
        for pair in _children(data, *_expect(rdn, _SET, "RelativeDistinguishedName")):
            oid_element, value = _children(data, *_expect(pair, _SEQUENCE, "attribute"))[:2]
            oid = _oid(data[slice(*_expect(oid_element, _OID, "attribute type"))])
            text = _string(value[0], data[value[1] : value[2]])
            pairs.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={_escape(text)}")
        rdns.append("+".join(pairs))
    return ",".join(reversed(rdns))


def _time(tag: int, content: bytes) -> dt.datetime:
    text = content.decode("ascii", errors="replace")
    try:
        if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280)
            parsed = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
            if parsed.year >= 2050:
                parsed = parsed.replace(year=parsed.year - 100)
        elif tag == 0x18:
            parsed = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise BerError(f"Time: unexpected tag 0x{tag:02x}")
    except ValueError as exc:
        raise BerError(f"Time: {text!r} is not a certificate time") from exc
    return parsed.replace(tzinfo=dt.timezone.utc)


def _alt_names(data: bytes, start: int, end: int) -> tuple[str, ...]:
    names = []
    for tag, s, e in _children(data, *_expect(_read(data, start, end), _SEQUENCE, "SAN")):
        value = data[s:e]
        if tag == 0x82:
            names.append(f"DNS:{value.decode('ascii', errors='replace')}")
        elif tag == 0x87 and len(value) in (4, 16):
            names.append(f"IP:{ipaddress.ip_address(value)}")
        elif tag == 0x81:
            names.append(f"email:{value.decode('ascii', errors='replace')}")
        elif tag == 0x86:
            names.append(f"URI:{value.decode('ascii', errors='replace')}")
        elif tag == 0xA4:
            names.append(f"DirName:{_name(data, *_expect(_read(data, s, e), _SEQUENCE, 'dn'))}")
        else:
            names.append(f"othername:<tag 0x{tag:02x}>")
    return tuple(names)


def parse_certificate(der: bytes) -> CertificateFields:
    """Decode the fields of :class:`CertificateFields` from a DER X.509 certificate."""
    tbs = _children(der, *_expect(_read(der, 0), _SEQUENCE, "Certificate"))[0]
    fields = _children(der, *_expect(tbs, _SEQUENCE, "TBSCertificate"))
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    if len(fields) < 6:
        raise BerError("TBSCertificate: missing fields")
    serial = _integer(der[slice(*_expect(fields[0], _INTEGER, "serialNumber"))])
    issuer = _name(der, *_expect(fields[2], _SEQUENCE, "issuer"))
    not_before, not_after = _children(der, *_expect(fields[3], _SEQUENCE, "validity"))[:2]
    subject = _name(der, *_expect(fields[4], _SEQUENCE, "subject"))
    alt_names: tuple[str, ...] = ()
    for tag, start, end in fields[6:]:
        if tag != 0xA3:  # [3] EXPLICIT extensions
            continue
        for extension in _children(der, *_expect(_read(der, start, end), _SEQUENCE, "exts")):
            parts = _children(der, *_expect(extension, _SEQUENCE, "Extension"))
            if _oid(der[slice(*_expect(parts[0], _OID, "extnID"))]) == _SUBJECT_ALT_NAME:
                alt_names = _alt_names(der, *_expect(parts[-1], _OCTET_STRING, "extnValue"))
    return CertificateFields(
        subject=subject,
        issuer=issuer,
        serial=serial,
        not_before=_time(not_before[0], der[not_before[1] : not_before[2]]),
        not_after=_time(not_after[0], der[not_after[1] : not_after[2]]),
        alt_names=alt_names,
    )
