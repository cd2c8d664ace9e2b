"""Encodes the session cookie (a session id signed with itsdangerous) and its CSRF tokens.

The cookie holds only the session id (``st1.…``), signed under ``secret_key``; signatures made
under any of ``secret_key_fallbacks`` still verify and are re-signed with the current key. The
session data lives in storage. The CSRF token is an HMAC of the session's public selector, so
it needs no storage and changes whenever the session id rotates; a token derived under a
fallback key is still accepted (a key rotation must not refuse every open page's next form).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from http.cookies import SimpleCookie
from typing import Any

from itsdangerous import BadSignature, Signer

from .._time import seconds
from ..config import CookieConfig

__all__ = ["SessionCookieCodec", "data_fingerprint"]

_SALT = b"authmw.session-cookie"
_CSRF_DERIVATION = b"authmw/csrf/v1"


class SessionCookieCodec:
    """Signs session ids into cookie values and builds ``Set-Cookie`` headers."""

    def __init__(self, keys: Sequence[bytes], cookie: CookieConfig, csrf_cookie: str) -> None:
        # itsdangerous signs with the last key and tries every key when verifying. Its "hmac"
        # key derivation (HMAC of the salt under the secret) is done here once instead of on
        # every cookie: the signatures are the same, each request saves one HMAC.
        derived = [hmac.digest(k, _SALT, "sha256") for k in keys]
        self._derived = derived  # current first: what unsign checks, in that order
        self._current = Signer(
            derived[0], salt=_SALT, key_derivation="none", digest_method=hashlib.sha256
        )
        # One HMAC per key, current first; copied per token instead of re-keyed.
        self._csrf_keys = [
            hmac.new(hmac.digest(k, _CSRF_DERIVATION, "sha256"), digestmod=hashlib.sha256)
            for k in keys
        ]
        self.cookie = cookie
        self.csrf_cookie = csrf_cookie
        self._max_age = (
            None if cookie.max_age is None else int(seconds(cookie.max_age, "cookie max_age"))
        )

    def __repr__(self) -> str:
        return f"SessionCookieCodec(cookie={self.cookie.name!r})"

    def sign(self, session_id: str) -> str:
        """The cookie value for a session id."""
        return self._current.sign(session_id).decode("ascii")

    def unsign(self, value: str) -> tuple[str, bool]:
        """(session id, whether it must be re-signed). Raises ``BadSignature`` if tampered.

        Only the canonical spelling of a signature is accepted: base64 leaves slack in the
        last character, and a cookie should have exactly one valid form.
        """
        # The check itsdangerous' Signer makes (HMAC-SHA256 of the payload under each derived
        # key, unpadded URL-safe base64), done inline: comparing the encoded text, not the
        # decoded bytes, accepts only the canonical spelling, and the request skips the
        # Signer's base64 decode and bytes conversions (a third of a cookie request's cost).
        payload, dot, signature = value.rpartition(".")
        if not dot or not value.isascii():
            raise BadSignature("cookie is not a signed ASCII value")
        body, given = payload.encode("ascii"), signature.encode("ascii")
        for index, key in enumerate(self._derived):
            expected = urlsafe_b64encode(hmac.digest(key, body, "sha256")).rstrip(b"=")
            if hmac.compare_digest(expected, given):
                return payload, index > 0
        raise BadSignature("signature does not match")

    def csrf_token(self, session_id: str, key: int = 0) -> str:
        """The CSRF token bound to a session (derived from its public selector) under the
        current key, or under ``signing_keys[key]``."""
        selector = session_id.split(".")[1] if session_id.count(".") >= 2 else session_id
        mac = self._csrf_keys[key].copy()
        mac.update(selector.encode("ascii", "replace"))
        return mac.hexdigest()

    def csrf_key(self, session_id: str, token: str) -> int | None:
        """Which key ``token`` is the session's CSRF token under (0: the current one, then
        the fallbacks), or None if under none. ``token`` must be ASCII."""
        for index in range(len(self._csrf_keys)):
            if hmac.compare_digest(token, self.csrf_token(session_id, index)):
                return index
        return None

    def _morsel(self, name: str, value: str, *, http_only: bool, max_age: int | None) -> str:
        jar: SimpleCookie = SimpleCookie()
        jar[name] = value
        morsel = jar[name]
        morsel["path"] = self.cookie.path
        if self.cookie.domain:
            morsel["domain"] = self.cookie.domain
        if max_age is not None:
            morsel["max-age"] = max_age
            if max_age == 0:
                morsel["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
        if self.cookie.secure:
            morsel["secure"] = True
        if http_only:
            morsel["httponly"] = True
        morsel["samesite"] = self.cookie.same_site.capitalize()
        return morsel.OutputString()

    def set_headers(self, session_id: str, *, csrf: bool) -> list[str]:
        """``Set-Cookie`` values that install a session (and its CSRF cookie)."""
        headers = [
            self._morsel(
                self.cookie.name, self.sign(session_id), http_only=True, max_age=self._max_age
            )
        ]
        if csrf:
            # Readable by the page's JavaScript (not HttpOnly): it echoes it in a header.
            headers.append(
                self._morsel(
                    self.csrf_cookie,
                    self.csrf_token(session_id),
                    http_only=False,
                    max_age=self._max_age,
                )
            )
        return headers

    def delete_headers(self, *, csrf: bool) -> list[str]:
        """``Set-Cookie`` values that remove the session (and CSRF) cookie."""
        headers = [self._morsel(self.cookie.name, "", http_only=True, max_age=0)]
        if csrf:
            headers.append(self._morsel(self.csrf_cookie, "", http_only=False, max_age=0))
        return headers


def data_fingerprint(data: Any) -> str | None:
    """A canonical JSON text of session data, to tell whether a request changed it.

    Returns None when the data is not JSON-serialisable (saving it will then fail loudly).
    """
    try:
        return _FINGERPRINT(data)
    except (TypeError, ValueError):
        return None


# Built once: json.dumps with options builds an encoder per call, which cost more than the
# encoding itself (it runs twice per session request: before the app and after).
_FINGERPRINT = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
