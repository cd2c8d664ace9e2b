"""AuthConfig and CookieConfig: frozen settings, checked once when built."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from argon2 import PasswordHasher

from ._time import Duration, seconds
from .errors import ConfigurationError

__all__ = ["AuthConfig", "CookieConfig"]

MIN_SECRET_BYTES = 32

_process_key: bytes | None = None


def _process_secret() -> bytes:
    """One random key per process, so every config built without a key agrees with the others."""
    global _process_key
    if _process_key is None:
        _process_key = secrets.token_bytes(32)
    return _process_key


def _key_bytes(value: str | bytes, name: str) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise ConfigurationError(f"{name}: expected str or bytes")
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{name}: at least {MIN_SECRET_BYTES} bytes are required; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


@dataclass(frozen=True, slots=True)
class CookieConfig:
    """How the session cookie is set. HttpOnly is always on.

    ``secure`` defaults to True and ``same_site`` to ``"lax"``. ``max_age`` None makes a browser
    session cookie. A name starting with ``__Host-`` requires ``secure``, ``path="/"`` and no
    ``domain``; ``__Secure-`` requires ``secure``; ``same_site="none"`` requires ``secure``.
    """

    name: str = "authmw_session"
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    same_site: Literal["lax", "strict", "none"] = "lax"
    max_age: Duration | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ' ;,=\t\r\n"'):
            raise ConfigurationError(f"cookie name {self.name!r} is not a valid cookie name")
        if self.same_site not in ("lax", "strict", "none"):
            raise ConfigurationError(
                f"cookie same_site must be 'lax', 'strict' or 'none', got {self.same_site!r}"
            )
        if self.max_age is not None:
            seconds(self.max_age, "cookie max_age")
        if self.name.startswith("__Host-") and (
            not self.secure or self.path != "/" or self.domain is not None
        ):
            raise ConfigurationError("a __Host- cookie needs secure=True, path='/' and no domain")
        if self.name.startswith("__Secure-") and not self.secure:
            raise ConfigurationError("a __Secure- cookie needs secure=True")
        if self.same_site == "none" and not self.secure:
            raise ConfigurationError("same_site='none' needs secure=True (browsers require it)")


@dataclass(frozen=True)
class AuthConfig:
    """Settings for :class:`authmw.AuthFramework`. Durations are seconds or ``timedelta``.

    Without ``secret_key`` a random key is generated once for this process, with a warning:
    tokens and cookies then die with the process and do not work across instances. Give
    ``secret_key_fallbacks`` (old keys) to keep verifying tokens signed before a key rotation.

    ``password_hasher`` defaults to argon2-cffi's RFC 9106 low-memory profile (argon2id,
    64 MiB, 3 passes); ``max_concurrent_hashes`` bounds how many hashes run at once, since each
    uses that much memory. ``verified_token_cache`` is how many recently verified access tokens
    and session ids are remembered so a repeat ``verify`` skips re-hashing (storage is still
    asked every time, so revocation is immediate); 0 turns it off.

    Password guessing (docs/lockout.md): ``max_failed_logins`` failures of one user from one
    client address within ``failed_login_window`` lock that address out of the account for
    ``lockout_duration``. Across addresses, past ``login_delay_after`` attempts within
    ``login_delay_window`` from addresses the user has not logged in from within
    ``known_address_ttl``, each further attempt waits ``login_delay_base``, doubling per
    attempt up to ``login_delay_max``.
    Anonymous sessions (a visitor's cart or flash message before any login, created by the
    middleware on the first write) expire sooner than a user's:
    ``anonymous_session_idle_timeout`` (30 minutes) and ``anonymous_session_absolute_timeout``
    (12 hours); their data may hold at most ``anonymous_session_max_bytes`` of JSON (4 KiB), so
    a bot's sessions stay small and short-lived.
    """

    secret_key: str | bytes | None = field(default=None, repr=False)
    secret_key_fallbacks: Sequence[str | bytes] = field(default=(), repr=False)
    access_token_ttl: Duration = timedelta(hours=1)
    refresh_token_ttl: Duration = timedelta(days=14)
    session_idle_timeout: Duration = timedelta(hours=2)
    session_absolute_timeout: Duration = timedelta(days=1)
    session_touch_interval: Duration | None = None
    max_failed_logins: int = 5
    failed_login_window: Duration = timedelta(minutes=15)
    lockout_duration: Duration = timedelta(minutes=15)
    login_delay_after: int = 10
    login_delay_window: Duration = timedelta(days=1)
    login_delay_base: Duration = timedelta(seconds=1)
    login_delay_max: Duration = timedelta(minutes=5)
    known_address_ttl: Duration = timedelta(days=30)
    min_password_length: int = 8
    max_password_length: int = 1024
    max_user_id_length: int = 255
    password_hasher: PasswordHasher | None = field(default=None, repr=False)
    max_concurrent_hashes: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    audit_log: bool = True
    verified_token_cache: int = 10_000
    cookie: CookieConfig = field(default_factory=CookieConfig)
    anonymous_session_idle_timeout: Duration = timedelta(minutes=30)
    anonymous_session_absolute_timeout: Duration = timedelta(hours=12)
    anonymous_session_max_bytes: int = 4096
    generated_secret: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.secret_key is None:
            object.__setattr__(self, "secret_key", _process_secret())
            object.__setattr__(self, "generated_secret", True)
            message = (
                "AuthConfig has no secret_key: a random one was generated, so tokens and "
                "session cookies will not survive a restart or work across instances. "
                "Set secret_key (e.g. from AUTHMW_SECRET_KEY) in production."
            )
            warnings.warn(message, UserWarning, stacklevel=3)
        _key_bytes(self.secret_key, "secret_key")  # type: ignore[arg-type]
        if isinstance(self.secret_key_fallbacks, (str, bytes)):
            raise ConfigurationError("secret_key_fallbacks: expected a list of keys, not one key")
        for index, key in enumerate(self.secret_key_fallbacks):
            _key_bytes(key, f"secret_key_fallbacks[{index}]")
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "session_idle_timeout",
            "session_absolute_timeout",
            "failed_login_window",
            "lockout_duration",
            "login_delay_window",
            "login_delay_base",
            "login_delay_max",
            "known_address_ttl",
            "anonymous_session_idle_timeout",
            "anonymous_session_absolute_timeout",
        ):
            seconds(getattr(self, name), name)
        for name, minimum in (
            ("max_failed_logins", 1),
            ("min_password_length", 1),
            ("max_password_length", 1),
            ("max_user_id_length", 1),
            ("max_concurrent_hashes", 1),
            ("verified_token_cache", 0),
            ("login_delay_after", 0),
            ("anonymous_session_max_bytes", 2),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigurationError(f"{name}: must be an integer >= {minimum}, got {value!r}")
        if self.touch_interval >= seconds(self.session_idle_timeout, "session_idle_timeout"):
            # An active user's session would only be extended after it had already expired.
            raise ConfigurationError(
                "session_touch_interval must be shorter than session_idle_timeout, or active "
                "users are logged out"
            )
        if seconds(self.login_delay_base, "login_delay_base") > seconds(
            self.login_delay_max, "login_delay_max"
        ):
            raise ConfigurationError("login_delay_base is above login_delay_max")
        if self.min_password_length > self.max_password_length:
            raise ConfigurationError("min_password_length is above max_password_length")
        if self.password_hasher is not None and not isinstance(
            self.password_hasher, PasswordHasher
        ):
            raise ConfigurationError("password_hasher: expected an argon2.PasswordHasher")
        if not isinstance(self.cookie, CookieConfig):
            raise ConfigurationError("cookie: expected a CookieConfig")

    @property
    def touch_interval(self) -> float:
        """Seconds between writes of a session's ``last_accessed``: ``session_touch_interval``,
        or by default a minute, capped at half the idle timeout. (Anonymous sessions are
        touched at least twice per ``anonymous_session_idle_timeout``.)"""
        if self.session_touch_interval is None:
            return min(60.0, seconds(self.session_idle_timeout, "session_idle_timeout") / 2)
        return seconds(self.session_touch_interval, "session_touch_interval", allow_zero=True)

    @property
    def signing_keys(self) -> list[bytes]:
        """The current key first, then the fallbacks, as bytes."""
        keys = [self.secret_key, *self.secret_key_fallbacks]
        return [k.encode("utf-8") if isinstance(k, str) else k for k in keys]  # type: ignore[misc]
