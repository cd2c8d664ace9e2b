"""The session cookie codec: signatures compatible with itsdangerous, one valid spelling each,
fallback keys re-signed; and the session-data fingerprint."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from itsdangerous import BadSignature, Signer

from authmw.config import CookieConfig
from authmw.middleware._cookies import SessionCookieCodec, data_fingerprint

CURRENT, OLD = (
    b"current-secret-key-0123456789abcdef0123",
    b"older-secret-key-0123456789abcdef012345",
)
SESSION_ID = "st2.selector.verifier.tag"


def codec(*keys: bytes) -> SessionCookieCodec:
    """A codec over ``keys`` (current first) with the default cookie settings."""
    return SessionCookieCodec(list(keys), CookieConfig(), "authmw_csrf")


def test_round_trip_and_itsdangerous_compatibility() -> None:
    """A signed id reads back unchanged, and the signature is itsdangerous' own (cookies
    issued before the inline check keep working)."""
    signed = codec(CURRENT).sign(SESSION_ID)
    reference = Signer(
        hmac.digest(CURRENT, b"authmw.session-cookie", "sha256"),
        salt=b"authmw.session-cookie",
        key_derivation="none",
        digest_method=hashlib.sha256,
    )
    assert signed == reference.sign(SESSION_ID).decode()
    assert codec(CURRENT).unsign(signed) == (SESSION_ID, False)


def test_fallback_key_is_accepted_and_marked_for_resigning() -> None:
    """A cookie signed under a fallback key is read, and flagged to be re-signed."""
    signed = codec(OLD).sign(SESSION_ID)
    assert codec(CURRENT, OLD).unsign(signed) == (SESSION_ID, True)
    with pytest.raises(BadSignature):
        codec(CURRENT).unsign(signed)


def test_non_canonical_and_tampered_values_are_refused() -> None:
    """Another base64 spelling of the same signature, a changed payload, a value without a
    signature or with non-ASCII text: all refused."""
    c = codec(CURRENT)
    signed = c.sign(SESSION_ID)
    payload, _, signature = signed.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 32 bytes in 43 characters: the last one carries 4 bits, so its neighbours in the
    # alphabet that keep the top 4 bits decode to the same bytes.
    last = alphabet.index(signature[-1])
    spellings = [alphabet[i] for i in range(last & ~3, (last & ~3) + 4) if i != last]
    for spelling in spellings:
        with pytest.raises(BadSignature):
            c.unsign(f"{payload}.{signature[:-1]}{spelling}")
    for bad in (
        f"{payload}x.{signature}",
        SESSION_ID.replace(".", ""),
        f"{payload}.{signature}=",
        f"{payload}é.{signature}",
        "",
    ):
        with pytest.raises(BadSignature):
            c.unsign(bad)


def test_fingerprint_tells_changes() -> None:
    """Equal data gives equal fingerprints whatever the key order; a change gives another;
    data JSON cannot hold gives None."""
    assert data_fingerprint({"a": 1, "b": [1, 2]}) == data_fingerprint({"b": [1, 2], "a": 1})
    assert data_fingerprint({"a": 1}) != data_fingerprint({"a": 2})
    assert data_fingerprint({"a": object()}) is None
