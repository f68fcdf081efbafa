"""The password policy response control decoder, on bytes built by hand and by pyasn1.

The hand-built cases pin the BER details (long-form lengths, multi-byte integers, what
is malformed); pyasn1, through python-ldap's own ASN.1 definition of the control,
is the independent encoder and decoder the property tests compare against.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ldappool._drivers._ppolicy import PPOLICY_OID, decode, policy_or_none
from ldappool._port import PasswordPolicy, PolicyError

ppolicy = pytest.importorskip("ldap.controls.ppolicy")
ber_encoder = pytest.importorskip("pyasn1.codec.ber.encoder")
der_encoder = pytest.importorskip("pyasn1.codec.der.encoder")

MAX_INT = 2**31 - 1


def tlv(tag: int, body: bytes) -> bytes:
    """One element with a short-form length."""
    assert len(body) < 0x80
    return bytes([tag, len(body)]) + body


def seq(*elements: bytes) -> bytes:
    return tlv(0x30, b"".join(elements))


def time_left(body: bytes) -> bytes:
    return tlv(0xA0, tlv(0x80, body))


def grace(body: bytes) -> bytes:
    return tlv(0xA0, tlv(0x81, body))


def error(code: int) -> bytes:
    return tlv(0x81, bytes([code]))


def test_the_oid_is_the_drafts() -> None:
    assert ppolicy.PasswordPolicyControl.controlType == PPOLICY_OID


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (seq(), PasswordPolicy()),
        (seq(time_left(b"\x01\x2c")), PasswordPolicy(expires_in=300)),
        (seq(grace(b"\x02")), PasswordPolicy(grace_logins_left=2)),
        (seq(grace(b"\x00")), PasswordPolicy(grace_logins_left=0)),
        (seq(error(0)), PasswordPolicy(error=PolicyError.PASSWORD_EXPIRED)),
        (seq(error(1)), PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)),
        (
            seq(time_left(b"\x05"), error(2)),
            PasswordPolicy(expires_in=5, error=PolicyError.CHANGE_AFTER_RESET),
        ),
        # 128 needs a leading zero byte: the top bit is the sign.
        (seq(time_left(b"\x00\x80")), PasswordPolicy(expires_in=128)),
        (seq(time_left(b"\x7f\xff\xff\xff")), PasswordPolicy(expires_in=MAX_INT)),
        # A redundant leading zero is BER (not DER): accepted.
        (seq(grace(b"\x00\x00\x07")), PasswordPolicy(grace_logins_left=7)),
        # Long-form lengths, minimal and not, at every level.
        (b"\x30\x81\x03" + error(1), PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)),
        (b"\x30\x82\x00\x03" + error(1), PasswordPolicy(error=PolicyError.ACCOUNT_LOCKED)),
        (
            b"\x30\x84\x00\x00\x00\x08" + b"\xa0\x81\x05" + b"\x80\x82\x00\x01\x09",
            PasswordPolicy(expires_in=9),
        ),
        (seq(b"\x81\x81\x01\x08"), PasswordPolicy(error=PolicyError.PASSWORD_IN_HISTORY)),
        (seq(error(9)), PasswordPolicy(error=PolicyError.PASSWORD_TOO_LONG)),
        # A value this client does not know (a vendor's): error None, the warning kept.
        (seq(grace(b"\x01"), error(10)), PasswordPolicy(grace_logins_left=1)),
        (seq(tlv(0x81, b"\x00\xc8")), PasswordPolicy()),
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else None,
)
def test_decode(value: bytes, expected: PasswordPolicy) -> None:
    assert decode(value) == expected
    assert decode(bytearray(value)) == expected
    assert decode(memoryview(value)) == expected
    assert policy_or_none(value) == expected


@pytest.mark.parametrize("code", list(PolicyError))
def test_every_known_error(code: PolicyError) -> None:
    assert decode(seq(error(code.value))).error is code


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (b"", "truncated"),
        (b"\x30", "truncated"),
        (b"\x30\x03\x81\x01", "truncated"),  # a byte missing
        (b"\x30\x81", "truncated"),  # the long form's length bytes missing
        (b"\x30\x82\x00", "truncated"),
        (b"\x31\x00", "SEQUENCE"),  # a SET
        (b"\x04\x00", "SEQUENCE"),
        (seq() + b"\x00", "after the SEQUENCE"),
        (b"\x30\x80\x00\x00", "indefinite"),
        (b"\x30\x85\x00\x00\x00\x00\x00", "length"),
        (seq(tlv(0xA0, tlv(0x82, b"\x01"))), "warning choice"),
        (seq(tlv(0xA0, b"")), "truncated"),  # an empty CHOICE
        (seq(tlv(0xA0, tlv(0x80, b"\x01") + tlv(0x81, b"\x01"))), "more than one"),
        (seq(tlv(0x80, b"\x01")), "unexpected element"),  # the choice without its [0]
        (seq(error(1), time_left(b"\x01")), "unexpected element"),  # out of order
        (seq(error(1), error(2)), "unexpected element"),
        (seq(time_left(b"\x01"), time_left(b"\x02")), "unexpected element"),
        (seq(tlv(0x02, b"\x01")), "unexpected element"),  # an untagged INTEGER
        (seq(time_left(b"")), "at least one byte"),
        (seq(time_left(b"\xff")), "outside"),  # -1
        (seq(grace(b"\x80\x00\x00\x00")), "outside"),  # -2**31
        (seq(time_left(b"\x00\x80\x00\x00\x00")), "outside"),  # maxInt + 1
        (seq(tlv(0x81, b"\xff")), "outside"),  # a negative error
        (seq(tlv(0xA0, b"\x9f\x21\x01\x00")), "multi-byte tag"),
        (bytes.fromhex("3005a003800201"), "truncated"),  # the integer overruns the warning
        (bytes.fromhex("3005a004800201"), "truncated"),  # the warning overruns the SEQUENCE
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else None,
)
def test_malformed_is_a_value_error(value: bytes, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        decode(value)
    assert policy_or_none(value) is None  # what the drivers use: never an exception


@pytest.mark.parametrize("value", [None, "0\x00", 48, [0x30, 0]])
def test_not_bytes(value: Any) -> None:
    if value is not None:
        with pytest.raises(ValueError, match="bytes"):
            decode(value)
    assert policy_or_none(value) is None


# --- against pyasn1 and python-ldap's definition of the control ---------------------

WARNINGS = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["timeBeforeExpiration", "graceAuthNsRemaining"]),
        st.integers(0, MAX_INT),
    ),
)
# 0..9: the draft's values, all python-ldap's encoder knows (an unknown one is a
# hand-built case above).
ERRORS = st.one_of(st.none(), st.integers(0, 9))


def encoded(warning: tuple[str, int] | None, code: int | None, encoder: Any) -> bytes:
    """The response value as python-ldap's ASN.1 definition has pyasn1 encode it."""
    value = ppolicy.PasswordPolicyResponseValue()
    if warning is not None:
        value["warning"][warning[0]] = warning[1]
    if code is not None:
        value["error"] = code
    return bytes(encoder.encode(value))


def expected(warning: tuple[str, int] | None, code: int | None) -> PasswordPolicy:
    name, number = warning or ("", None)
    return PasswordPolicy(
        expires_in=number if name == "timeBeforeExpiration" else None,
        grace_logins_left=number if name == "graceAuthNsRemaining" else None,
        error=PolicyError(code) if code is not None and code <= 9 else None,
    )


@given(WARNINGS, ERRORS)
@example(("timeBeforeExpiration", 0), None)
@example(("graceAuthNsRemaining", MAX_INT), 8)
@example(("timeBeforeExpiration", 128), 0)
@example(None, 9)
def test_decodes_what_pyasn1_encodes(warning: tuple[str, int] | None, code: int | None) -> None:
    for encoder in (ber_encoder, der_encoder):
        assert decode(encoded(warning, code, encoder)) == expected(warning, code)


@given(WARNINGS, ERRORS)
def test_reads_what_python_ldaps_decoder_reads(
    warning: tuple[str, int] | None, code: int | None
) -> None:
    value = encoded(warning, code, der_encoder)
    theirs = ppolicy.PasswordPolicyControl()
    theirs.decodeControlValue(value)
    ours = decode(value)
    assert ours.expires_in == theirs.timeBeforeExpiration
    assert ours.grace_logins_left == theirs.graceAuthNsRemaining
    assert (ours.error.value if ours.error else None) == (
        theirs.error if theirs.error is not None and theirs.error <= 9 else None
    )


@given(WARNINGS, ERRORS, st.data())
def test_any_truncation_is_malformed(
    warning: tuple[str, int] | None, code: int | None, data: st.DataObject
) -> None:
    value = encoded(warning, code, der_encoder)
    cut = data.draw(st.integers(0, len(value) - 1))
    with pytest.raises(ValueError):
        decode(value[:cut])


@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_raise_anything_but_value_error(value: bytes) -> None:
    try:
        policy = decode(value)
    except ValueError:
        assert policy_or_none(value) is None
    else:
        assert isinstance(policy, PasswordPolicy)
        assert policy_or_none(value) == policy
