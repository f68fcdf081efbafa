"""The password policy response control, read without an ASN.1 library.

Both drivers get the control's value as bytes: python-ldap hands unknown controls over
raw (and its own decoder, through pyasn1, is only used once ``ldap.controls.ppolicy`` is
imported, which would make the answer depend on what else the process imported); ldap3
keeps the value of a control it does not know as bytes. The value is three small
elements, so a few lines of BER reading do, the same for both drivers::

    PasswordPolicyResponseValue ::= SEQUENCE {               -- IMPLICIT TAGS
        warning [0] CHOICE {                                  -- 0xA0: a CHOICE stays
            timeBeforeExpiration [0] INTEGER (0 .. maxInt),   -- 0x80    explicit
            graceAuthNsRemaining [1] INTEGER (0 .. maxInt) }  -- 0x81
                OPTIONAL,
        error   [1] ENUMERATED { ... } OPTIONAL }             -- 0x81

(draft-behera-ldap-password-policy, section 6.2).

Malformed input raises ValueError: truncated or overlong elements, indefinite lengths
(RFC 4511, 5.1: LDAP uses definite lengths only), unexpected tags, elements out of
order or repeated, bytes after the SEQUENCE, integers outside 0 .. maxInt. The drivers
turn that into "no policy answer" (:func:`policy_or_none`): a control the server got
wrong must never turn a login into a crash.

An ``error`` value that :class:`~ldappool._port.PolicyError` does not list is not
malformed: the draft's list has grown (``passwordTooLong``, 9, came later), and vendors
may add their own. Such a value is read as
``error=None`` ("no error this client knows of"), and the warning in the same control
is kept. The refusal the error came with is still the bind's answer.
"""

from __future__ import annotations

from ldappool._port import PasswordPolicy, PolicyError

__all__ = ["PPOLICY_OID", "decode", "policy_or_none"]

#: The password policy control, the same OID for the request and the response.
PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"

_SEQUENCE = 0x30
_WARNING = 0xA0  # [0] constructed: the CHOICE
_TIME_BEFORE_EXPIRATION = 0x80  # [0] primitive, inside the warning
_GRACE_AUTHNS_REMAINING = 0x81  # [1] primitive, inside the warning
_ERROR = 0x81  # [1] primitive, in the SEQUENCE
_MAX_INT = 2**31 - 1  # RFC 4511's maxInt
# A length needs at most 4 bytes here: a control value is never 4 GiB.
_MAX_LENGTH_BYTES = 4
_ERRORS = {error.value: error for error in PolicyError}


def decode(value: bytes | bytearray | memoryview) -> PasswordPolicy:
    """Read the value of a password policy response control; ValueError if malformed."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError(f"a control value is bytes, not {type(value).__name__}")
    data = bytes(value)
    tag, start, end = _element(data, 0, len(data))
    if tag != _SEQUENCE:
        raise ValueError(f"expected a SEQUENCE (0x30), found tag {tag:#04x}")
    if end != len(data):
        raise ValueError(f"{len(data) - end} byte(s) after the SEQUENCE")
    expires_in = grace = error = None
    position = start
    if position < end and data[position] == _WARNING:
        tag, body, position = _element(data, position, end)
        choice, number_start, number_end = _element(data, body, position)
        if number_end != position:
            raise ValueError("the warning holds more than one element")
        if choice == _TIME_BEFORE_EXPIRATION:
            expires_in = _integer(data, number_start, number_end, "timeBeforeExpiration")
        elif choice == _GRACE_AUTHNS_REMAINING:
            grace = _integer(data, number_start, number_end, "graceAuthNsRemaining")
        else:
            raise ValueError(f"unexpected warning choice, tag {choice:#04x}")
    if position < end and data[position] == _ERROR:
        _, body, position = _element(data, position, end)
        code = _integer(data, body, position, "error")
        error = _ERRORS.get(code)  # an unknown value: see the module's docstring
    if position != end:
        raise ValueError(f"unexpected element, tag {data[position]:#04x}")
    return PasswordPolicy(expires_in=expires_in, grace_logins_left=grace, error=error)


def policy_or_none(value: object) -> PasswordPolicy | None:
    """The policy in a control value as a driver received it; None if it has no value or
    cannot be read (see the module's docstring): never an exception."""
    if value is None:
        return None
    try:
        return decode(value)  # type: ignore[arg-type]  # decode checks the type itself
    except ValueError:
        return None


def _element(data: bytes, position: int, limit: int) -> tuple[int, int, int]:
    """The tag, and where the contents start and end, of the element at ``position``,
    which must end by ``limit`` (the end of the element enclosing it)."""
    if position + 2 > limit:
        raise ValueError("truncated: an element needs a tag and a length")
    tag = data[position]
    if tag & 0x1F == 0x1F:
        raise ValueError(f"unexpected multi-byte tag at offset {position}")
    first = data[position + 1]
    start = position + 2
    if first < 0x80:  # short form
        length = first
    elif first == 0x80:
        raise ValueError("indefinite length (LDAP uses definite lengths only)")
    else:  # long form: the low 7 bits count the length bytes that follow
        count = first & 0x7F
        if count > _MAX_LENGTH_BYTES:
            raise ValueError(f"a {count}-byte length")
        if start + count > limit:
            raise ValueError("truncated length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > limit:
        raise ValueError(f"truncated: {length} byte(s) announced, {limit - start} left")
    return tag, start, end


def _integer(data: bytes, start: int, end: int, name: str) -> int:
    """A BER INTEGER (or ENUMERATED) of 0 .. maxInt: two's complement, big-endian."""
    if start == end:
        raise ValueError(f"{name}: an integer has at least one byte")
    number = int.from_bytes(data[start:end], "big", signed=True)
    if not 0 <= number <= _MAX_INT:
        raise ValueError(f"{name}: {number} is outside 0 .. maxInt")
    return number
