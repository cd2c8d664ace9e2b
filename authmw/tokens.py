"""Opaque tokens: minting, keyed tags, digests at rest, and Authorization header parsing.

A token reads ``<kind>.<selector>.<verifier>.<tag>``:

* ``kind`` says what it is (``at1`` access, ``rt1`` refresh, ``st1`` session id);
* ``selector``: 128 random bits, public, the storage key (a token's ``token_id``);
* ``verifier``: 256 random bits, secret, stored only as its SHA-256 digest and compared in
  constant time;
* ``tag``: HMAC-SHA256 over the rest under a key derived from ``secret_key`` (truncated to 128
  bits), so junk and forged tokens are refused in-process without a storage lookup. Tags made
  under any of ``secret_key_fallbacks`` still verify, so keys can rotate.

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

TokenKind = Literal["at1", "rt1", "st1"]
ACCESS: TokenKind = "at1"
REFRESH: TokenKind = "rt1"
SESSION: TokenKind = "st1"

_SELECTOR_BYTES = 16
_VERIFIER_BYTES = 32
_TAG_BYTES = 16
# Lengths of the base64url (no padding) and hex encodings of the parts above.
_SELECTOR_LEN = 22
_VERIFIER_LEN = 43
_TAG_LEN = 2 * _TAG_BYTES
TOKEN_LENGTH = 3 + 1 + _SELECTOR_LEN + 1 + _VERIFIER_LEN + 1 + _TAG_LEN
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_TAG_DERIVATION = b"authmw/token-tag/v1"

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

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("TokenCodec needs at least one key")
        # Derive a tag key per secret so the raw secret is used for nothing but derivation,
        # and the same secret can sign cookies (itsdangerous) without the two ever colliding.
        # Each keyed HMAC is built once and copied per tag: copying the keyed state is about
        # a third cheaper than keying a fresh HMAC on every call.
        self._keys = [
            hmac.new(hmac.digest(k, _TAG_DERIVATION, "sha256"), digestmod=hashlib.sha256)
            for k in keys
        ]

    def __repr__(self) -> str:
        return f"TokenCodec(keys={len(self._keys)})"

    @staticmethod
    def _tag(key: hmac.HMAC, body: str) -> str:
        mac = key.copy()
        mac.update(body.encode("ascii"))
        return mac.digest()[:_TAG_BYTES].hex()

    def mint(self, kind: TokenKind) -> MintedToken:
        """A new token of ``kind``, tagged with the current key."""
        selector = secrets.token_urlsafe(_SELECTOR_BYTES)
        verifier = secrets.token_urlsafe(_VERIFIER_BYTES)
        body = f"{kind}.{selector}.{verifier}"
        return MintedToken(f"{body}.{self._tag(self._keys[0], body)}", selector, digest(verifier))

    def parse(self, token: object, kind: TokenKind) -> tuple[str, str]:
        """Split a token of ``kind`` into (selector, verifier) after checking its tag.

        Raises ``InvalidToken`` with reason ``"malformed"`` when it is not shaped like one of
        ours (wrong type, length, kind or alphabet) and ``"forged"`` when no key's tag matches.
        No storage is touched either way.
        """
        if (
            not isinstance(token, str)
            or len(token) != TOKEN_LENGTH
            or not token.startswith(kind)
            or not token.isascii()
        ):
            raise InvalidToken("malformed")
        parts = token.split(".")
        if len(parts) != 4:
            raise InvalidToken("malformed")
        _, selector, verifier, tag = parts
        if len(selector) != _SELECTOR_LEN or len(verifier) != _VERIFIER_LEN:
            raise InvalidToken("malformed")
        body = token[: -_TAG_LEN - 1]
        for key in self._keys:
            if hmac.compare_digest(self._tag(key, body), tag):
                return selector, verifier
        # Only a token we minted carries a valid tag, so the alphabet needs checking only here,
        # to tell junk from forgery, and the accepted path skips the scan.
        if not (_B64URL.issuperset(selector) and _B64URL.issuperset(verifier)):
            raise InvalidToken("malformed")
        raise InvalidToken("forged", token_id=selector)

    @staticmethod
    def kind_of(token: str) -> str:
        """The kind prefix of a token string (not checked)."""
        return token[:3]


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
