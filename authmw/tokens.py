"""Opaque tokens: minting, keyed tags, digests at rest, and Authorization header parsing.

A token reads ``<kind><version>.<selector>.<verifier>.<tag>``:

* ``kind`` says what it is (``at`` access, ``rt`` refresh, ``st`` session id) and ``version``
  how its tag is made (below);
* ``selector``: 128 random bits, public, the storage key (a token's ``token_id``);
* ``verifier``: 256 random bits, secret, stored only as its SHA-256 digest and compared in
  constant time;
* ``tag``: a 128-bit MAC over the rest under a key derived from ``secret_key``, so junk and
  forged tokens are refused in-process without a storage lookup. Tags made under any of
  ``secret_key_fallbacks`` still verify, so keys can rotate.

Version 2 (minted now) tags with keyed BLAKE2b (RFC 7693's keyed mode, a standard MAC), about
three times cheaper than HMAC-SHA256 on a short message, which matters because every request
checks one. Version 1 (HMAC-SHA256 truncated to 128 bits) is still accepted, so tokens and
session ids issued before the change keep working until they expire; each version has its own
derived key. Both give 128-bit tags; neither is weaker than the other for this use.

Every character is in RFC 6750's b64token alphabet, so tokens travel in a bearer header, a
cookie or a URL unescaped.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import InvalidToken, MalformedAuthorization

__all__ = [
    "ACCESS",
    "MAX_AUTHORIZATION_BYTES",
    "REFRESH",
    "SESSION",
    "MintedToken",
    "TokenCodec",
    "digest",
    "parse_authorization",
    "verifier_matches",
]

TokenKind = Literal["at", "rt", "st"]
ACCESS: TokenKind = "at"
REFRESH: TokenKind = "rt"
SESSION: TokenKind = "st"

_SELECTOR_BYTES = 16
_VERIFIER_BYTES = 32
_TAG_BYTES = 16
# Lengths of the base64url (no padding) and hex encodings of the parts above.
_SELECTOR_LEN = 22
_VERIFIER_LEN = 43
_TAG_LEN = 2 * _TAG_BYTES
TOKEN_LENGTH = 3 + 1 + _SELECTOR_LEN + 1 + _VERIFIER_LEN + 1 + _TAG_LEN
# Where the dots fall in every token: the parts are sliced, not split.
_SELECTOR_AT = 4
_VERIFIER_AT = _SELECTOR_AT + _SELECTOR_LEN + 1
_TAG_AT = _VERIFIER_AT + _VERIFIER_LEN + 1
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_TAG_DERIVATION = b"authmw/token-tag/v1"  # version 1: HMAC-SHA256
_TAG_DERIVATION_V2 = b"authmw/token-tag/v2"  # version 2: keyed BLAKE2b

MAX_AUTHORIZATION_BYTES = 4096
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# The well-formed case in one match over the raw header bytes; anything else takes the slow
# path below, which says precisely what is wrong.
_B64TOKEN_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def digest(verifier: str) -> bytes:
    """The SHA-256 digest under which a verifier is stored."""
    return hashlib.sha256(verifier.encode("ascii")).digest()


def verifier_matches(verifier: str, stored_digest: bytes | None) -> bool:
    """Whether ``verifier`` hashes to ``stored_digest``, compared in constant time."""
    if stored_digest is None:
        return False
    return hmac.compare_digest(digest(verifier), stored_digest)


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A freshly minted token: the string to hand out, its selector and its verifier digest."""

    token: str
    selector: str
    verifier_digest: bytes

    def __repr__(self) -> str:
        return f"MintedToken(selector={self.selector!r})"


class TokenCodec:
    """Mints and checks tokens under a current key and any number of fallback keys."""

    __slots__ = ("_blake_keys", "_hmac_keys")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("TokenCodec needs at least one key")
        # A tag key per secret and per version, so the raw secret is used for nothing but
        # derivation, and the same secret can sign cookies (itsdangerous) without collisions.
        self._blake_keys = [hmac.digest(k, _TAG_DERIVATION_V2, "sha256") for k in keys]
        # Version 1: each keyed HMAC is built once and copied per tag, a third cheaper than
        # keying a fresh HMAC on every call.
        self._hmac_keys = [
            hmac.new(hmac.digest(k, _TAG_DERIVATION, "sha256"), digestmod=hashlib.sha256)
            for k in keys
        ]

    def __repr__(self) -> str:
        return f"TokenCodec(keys={len(self._blake_keys)})"

    @staticmethod
    def _tag(key: bytes, body: str) -> str:
        """The version 2 tag: keyed BLAKE2b, 128 bits, hex."""
        return hashlib.blake2b(body.encode("ascii"), key=key, digest_size=_TAG_BYTES).hexdigest()

    @staticmethod
    def _tag_v1(key: hmac.HMAC, body: str) -> str:
        """The version 1 tag: HMAC-SHA256 truncated to 128 bits, hex."""
        mac = key.copy()
        mac.update(body.encode("ascii"))
        return mac.digest()[:_TAG_BYTES].hex()

    def mint(self, kind: TokenKind) -> MintedToken:
        """A new token of ``kind`` (version 2), tagged with the current key."""
        selector = secrets.token_urlsafe(_SELECTOR_BYTES)
        verifier = secrets.token_urlsafe(_VERIFIER_BYTES)
        body = f"{kind}2.{selector}.{verifier}"
        tag = self._tag(self._blake_keys[0], body)
        return MintedToken(f"{body}.{tag}", selector, digest(verifier))

    def parse(self, token: object, kind: TokenKind) -> tuple[str, str]:
        """Split a token of ``kind`` into (selector, verifier) after checking its tag.

        Raises ``InvalidToken`` with reason ``"malformed"`` when it is not shaped like one of
        ours (wrong type, length, kind, version or alphabet) and ``"forged"`` when no key's tag
        matches. No storage is touched either way.
        """
        if (
            not isinstance(token, str)
            or len(token) != TOKEN_LENGTH
            or not token.startswith(kind)
            or not token.isascii()
            or token[_SELECTOR_AT - 1] != "."
            or token[_VERIFIER_AT - 1] != "."
            or token[_TAG_AT - 1] != "."
        ):
            raise InvalidToken("malformed")
        body, tag = token[: _TAG_AT - 1], token[_TAG_AT:]
        version = token[2]
        if version == "2":
            for key in self._blake_keys:
                if hmac.compare_digest(self._tag(key, body), tag):
                    return token[_SELECTOR_AT : _VERIFIER_AT - 1], token[_VERIFIER_AT : _TAG_AT - 1]
        elif version == "1":
            for old in self._hmac_keys:
                if hmac.compare_digest(self._tag_v1(old, body), tag):
                    return token[_SELECTOR_AT : _VERIFIER_AT - 1], token[_VERIFIER_AT : _TAG_AT - 1]
        else:
            raise InvalidToken("malformed")
        selector, verifier = (
            token[_SELECTOR_AT : _VERIFIER_AT - 1],
            token[_VERIFIER_AT : _TAG_AT - 1],
        )
        # Only a token we minted carries a valid tag, so the alphabet needs checking only here,
        # to tell junk from forgery, and the accepted path skips the scan.
        if not (_B64URL.issuperset(selector) and _B64URL.issuperset(verifier)):
            raise InvalidToken("malformed")
        raise InvalidToken("forged", token_id=selector)

    @staticmethod
    def kind_of(token: str) -> str:
        """The kind prefix of a token string, without its version (not checked)."""
        return token[:2]


def parse_authorization(header: str | bytes | None) -> str | None:
    """The bearer token in an ``Authorization`` header value, per RFC 6750 section 2.1.

    Returns None when there is no header or it uses another scheme (Basic, ...), so the app
    may handle those itself. The scheme is matched case-insensitively. Raises
    ``MalformedAuthorization`` for a bearer header that is empty, too long (over 4 KiB), not
    ASCII, or holds characters outside the b64token alphabet.
    """
    if header is None:
        return None
    if len(header) > MAX_AUTHORIZATION_BYTES:
        raise MalformedAuthorization(f"header longer than {MAX_AUTHORIZATION_BYTES} bytes")
    if isinstance(header, bytes) and header[:7] == b"Bearer ":
        # Fast path for the usual exact form: deleting every allowed byte must leave nothing
        # (a C-level scan, several times cheaper than the regex on a 100-byte token).
        body = header[7:].rstrip(b"=")
        if body and not body.translate(None, _B64TOKEN_ALPHABET):
            return header[7:].decode("ascii")
    return _parse_slow(header)


def _parse_slow(header: str | bytes) -> str | None:
    if len(header) > MAX_AUTHORIZATION_BYTES:
        raise MalformedAuthorization(f"header longer than {MAX_AUTHORIZATION_BYTES} bytes")
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedAuthorization("header is not ASCII") from None
    value = header.strip(" \t")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        if not value:
            raise MalformedAuthorization("header is empty")
        return None
    credentials = credentials.lstrip(" ")
    if not credentials:
        raise MalformedAuthorization("bearer token is empty")
    if not _B64TOKEN.fullmatch(credentials):
        raise MalformedAuthorization("bearer token has characters outside RFC 6750's b64token")
    return credentials
