"""Token format, keyed tags, digests and RFC 6750 Authorization parsing."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import pytest

from authmw.errors import InvalidToken, MalformedAuthorization
from authmw.tokens import (
    ACCESS,
    REFRESH,
    SESSION,
    TOKEN_LENGTH,
    TokenCodec,
    digest,
    parse_authorization,
    verifier_matches,
)

KEY = b"k" * 32
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def test_minted_tokens_are_opaque_and_b64token() -> None:
    """Minted tokens have the fixed length, RFC 6750 alphabet and 256-bit verifiers."""
    codec = TokenCodec([KEY])
    seen = set()
    for kind in (ACCESS, REFRESH, SESSION):
        minted = codec.mint(kind)
        assert len(minted.token) == TOKEN_LENGTH
        assert B64TOKEN.fullmatch(minted.token)
        kind_part, selector, verifier, tag = minted.token.split(".")
        assert kind_part == kind + "2" and selector == minted.selector
        assert len(verifier) == 43  # 32 random bytes, base64url
        assert minted.verifier_digest == hashlib.sha256(verifier.encode()).digest()
        assert verifier not in repr(minted)
        seen.add(minted.token)
    assert len(seen) == 3


def test_parse_round_trip() -> None:
    """A minted token parses back to its selector and verifier."""
    codec = TokenCodec([KEY])
    minted = codec.mint(ACCESS)
    selector, verifier = codec.parse(minted.token, ACCESS)
    assert selector == minted.selector
    assert verifier_matches(verifier, minted.verifier_digest)
    assert not verifier_matches(verifier + "x", minted.verifier_digest)
    assert not verifier_matches(verifier, None)


@pytest.mark.parametrize("junk", [None, 42, b"bytes", "", "x", "at1." + "a" * 99, "\u00e9" * 103])
def test_junk_is_malformed(junk: object) -> None:
    """Values not shaped like our tokens are refused as malformed."""
    with pytest.raises(InvalidToken) as info:
        TokenCodec([KEY]).parse(junk, ACCESS)
    assert info.value.reason == "malformed"


def test_wrong_kind_is_malformed() -> None:
    """A refresh token is not accepted where an access token is expected."""
    codec = TokenCodec([KEY])
    with pytest.raises(InvalidToken) as info:
        codec.parse(codec.mint(REFRESH).token, ACCESS)
    assert info.value.reason == "malformed"


def test_bad_alphabet_in_parts_is_malformed() -> None:
    """A right-length token with characters outside base64url is malformed."""
    codec = TokenCodec([KEY])
    token = codec.mint(ACCESS).token
    broken = token[:5] + "+" + token[6:]
    with pytest.raises(InvalidToken) as info:
        codec.parse(broken, ACCESS)
    assert info.value.reason == "malformed"


def test_tampering_is_forged() -> None:
    """Changing any character of the selector, verifier or tag breaks the tag."""
    codec = TokenCodec([KEY])
    token = codec.mint(ACCESS).token
    for index in (5, 30, len(token) - 1):
        replacement = "A" if token[index] != "A" else "B"
        if index == len(token) - 1:
            replacement = "0" if token[index] != "0" else "1"
        tampered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(InvalidToken) as info:
            codec.parse(tampered, ACCESS)
        assert info.value.reason == "forged"


def test_fallback_keys_verify_but_do_not_sign() -> None:
    """Tokens from an old key verify under fallbacks; new tokens use the current key."""
    old, new = b"o" * 32, b"n" * 32
    token = TokenCodec([old]).mint(ACCESS).token
    rotated = TokenCodec([new, old])
    rotated.parse(token, ACCESS)
    fresh = rotated.mint(ACCESS).token
    TokenCodec([new]).parse(fresh, ACCESS)
    with pytest.raises(InvalidToken):
        TokenCodec([old]).parse(fresh, ACCESS)


def test_digest_is_sha256() -> None:
    """Stored digests are plain SHA-256 of the verifier text."""
    assert digest("abc") == hashlib.sha256(b"abc").digest()


# -- Authorization header ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Bearer abc.DEF-123_~+/==", "abc.DEF-123_~+/=="),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer    abc", "abc"),
        ("  Bearer abc  ", "abc"),
        (b"Bearer abc", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Digest username=x", None),
    ],
)
def test_authorization_accepts(header: str | bytes | None, expected: str | None) -> None:
    """Well-formed bearer headers yield the token; other schemes yield None."""
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("", "empty"),
        ("Bearer", "empty"),
        ("Bearer ", "empty"),
        ("Bearer a b", "b64token"),
        ("Bearer a,b", "b64token"),
        ("Bearer ab=c", "b64token"),
        ("Bearer \u00e9t\u00e9", "b64token"),
        (b"Bearer \xff", "ASCII"),
        ("Bearer " + "a" * 4100, "4096"),
    ],
)
def test_authorization_refuses(header: str | bytes, problem: str) -> None:
    """Malformed bearer headers raise MalformedAuthorization saying what is wrong."""
    with pytest.raises(MalformedAuthorization) as info:
        parse_authorization(header)
    assert problem in str(info.value)
    assert info.value.field == "Authorization"


def _v1_token(kind: str, key: bytes) -> tuple[str, str, str]:
    """A token as version 1 minted it (HMAC-SHA256 tag), built independently of the codec."""
    selector, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    body = f"{kind}1.{selector}.{verifier}"
    tag_key = hmac.digest(key, b"authmw/token-tag/v1", "sha256")
    return f"{body}.{hmac.digest(tag_key, body.encode(), 'sha256')[:16].hex()}", selector, verifier


def test_version_2_tag_is_keyed_blake2b() -> None:
    """New tokens carry a 128-bit keyed BLAKE2b tag under the key derived for version 2."""
    minted = TokenCodec([KEY]).mint(ACCESS)
    body, _, tag = minted.token.rpartition(".")
    tag_key = hmac.digest(KEY, b"authmw/token-tag/v2", "sha256")
    assert tag == hashlib.blake2b(body.encode(), key=tag_key, digest_size=16).hexdigest()


@pytest.mark.parametrize("kind", [ACCESS, REFRESH, SESSION])
def test_version_1_tokens_still_verify(kind: str) -> None:
    """Tokens minted before the move to BLAKE2b (HMAC tags) parse until they expire, under the
    current key and under a fallback key; a version 1 tag under another key is a forgery."""
    token, selector, verifier = _v1_token(kind, KEY)
    assert TokenCodec([KEY]).parse(token, kind) == (selector, verifier)  # type: ignore[arg-type]
    assert TokenCodec([b"n" * 32, KEY]).parse(token, kind) == (selector, verifier)  # type: ignore[arg-type]
    with pytest.raises(InvalidToken) as info:
        TokenCodec([b"n" * 32]).parse(token, kind)  # type: ignore[arg-type]
    assert info.value.reason == "forged"


def test_unknown_version_is_malformed() -> None:
    """A token whose version digit we never minted is refused as malformed."""
    token = TokenCodec([KEY]).mint(ACCESS).token
    with pytest.raises(InvalidToken) as info:
        TokenCodec([KEY]).parse("at3" + token[3:], ACCESS)
    assert info.value.reason == "malformed"
