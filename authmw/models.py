"""Records that flow between the framework and every storage backend.

All are slotted, frozen dataclasses with timezone-aware UTC datetimes and a JSON round trip
(``to_dict``/``from_dict``, ``to_json``/``from_json``) that every backend uses, so a record
written by one backend reads back identically from another (migration and backup rely on it).

Secrets never live in a stored record: tokens and session ids keep only the SHA-256 digest of
their verifier. The raw ``access_token``/``refresh_token`` exist only on the :class:`AuthToken`
handed back by ``authenticate``/``refresh`` and are excluded from ``repr``, equality and JSON.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ._time import utcnow

__all__ = [
    "AuditEvent",
    "AuthToken",
    "SessionData",
    "StorageStatistics",
    "UserRecord",
    "utcnow",
]

UTC = UTC


def _loads(text: str | bytes) -> Any:
    """``json.loads``, bytes decoded first: given bytes, json.loads sniffs their encoding
    (UTF-8, -16 or -32) and decodes them itself, which costs more than the parse of a token
    record. Records are written as UTF-8 (and ASCII JSON is that too)."""
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(parsed, datetime) and parsed.tzinfo is UTC:
        return parsed  # what every record holds: already aware UTC
    if not isinstance(parsed, datetime) or parsed.tzinfo is None:
        raise ValueError(f"expected a timezone-aware ISO datetime, got {value!r}")
    return parsed.astimezone(UTC)


def _parse_opt_dt(value: Any) -> datetime | None:
    return None if value is None else _parse_dt(value)


def _check_aware(name: str, *values: datetime | None) -> None:
    for value in values:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name}: naive datetime; authmw records use aware UTC datetimes")


@dataclass(frozen=True, slots=True)
class AuthToken:
    """An issued access token, optionally paired with a refresh token.

    ``token_id`` is the public half (selector) of the access token and the record's storage key.
    ``family_id`` is shared by every token descended from one login through refresh, so a reused
    refresh token can revoke the whole family. A revoked token stays stored (``revoked_at`` set)
    until it expires, so that its refusal reason and refresh reuse can still be told.
    """

    token_id: str
    user_id: str
    access_digest: bytes = field(repr=False)
    expires_at: datetime
    created_at: datetime
    family_id: str
    refresh_id: str | None = None
    refresh_digest: bytes | None = field(default=None, repr=False)
    refresh_expires_at: datetime | None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    token_type: str = "Bearer"
    revoked_at: datetime | None = None
    revoke_reason: str | None = None
    # The login that started this token's family: when (None in records written before authmw
    # kept it) and from where (cleaned client text). Copied to every token a refresh mints, so a
    # "your devices" page shows the login, and the live token's created_at its last refresh.
    login_at: datetime | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    access_token: str = field(default="", repr=False, compare=False)
    refresh_token: str = field(default="", repr=False, compare=False)
    # POSIX timestamps of the two expiries, derived once: the verify hot path compares floats
    # because building an aware "now" datetime costs more than the rest of a cached lookup.
    expires_ts: float = field(init=False, repr=False, compare=False)
    storage_expires_ts: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_aware(
            "AuthToken",
            self.expires_at,
            self.created_at,
            self.refresh_expires_at,
            self.revoked_at,
            self.login_at,
        )
        object.__setattr__(self, "expires_ts", self.expires_at.timestamp())
        object.__setattr__(self, "storage_expires_ts", self.storage_expires_at.timestamp())

    @property
    def storage_expires_at(self) -> datetime:
        """When the record may be forgotten: the later of the access and refresh expiries."""
        refresh = self.refresh_expires_at
        if refresh is not None and refresh > self.expires_at:
            return refresh
        return self.expires_at

    @property
    def is_revoked(self) -> bool:
        """True once the token was revoked or rotated away by a refresh."""
        return self.revoked_at is not None

    def stored(self) -> AuthToken:
        """This record without the raw token strings: the form every backend keeps."""
        if not self.access_token and not self.refresh_token:
            return self
        return replace(self, access_token="", refresh_token="")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the raw token strings."""
        return {
            "token_id": self.token_id,
            "user_id": self.user_id,
            "access_digest": self.access_digest.hex(),
            "expires_at": _dt(self.expires_at),
            "created_at": _dt(self.created_at),
            "family_id": self.family_id,
            "refresh_id": self.refresh_id,
            "refresh_digest": self.refresh_digest.hex() if self.refresh_digest else None,
            "refresh_expires_at": _dt(self.refresh_expires_at),
            "roles": list(self.roles),
            "permissions": list(self.permissions),
            "token_type": self.token_type,
            "revoked_at": _dt(self.revoked_at),
            "revoke_reason": self.revoke_reason,
            "login_at": _dt(self.login_at),
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthToken:
        """Rebuild a record from :meth:`to_dict` output."""
        refresh_digest = data.get("refresh_digest")
        return cls(
            token_id=data["token_id"],
            user_id=data["user_id"],
            access_digest=bytes.fromhex(data["access_digest"]),
            expires_at=_parse_dt(data["expires_at"]),
            created_at=_parse_dt(data["created_at"]),
            family_id=data["family_id"],
            refresh_id=data.get("refresh_id"),
            refresh_digest=bytes.fromhex(refresh_digest) if refresh_digest else None,
            refresh_expires_at=_parse_opt_dt(data.get("refresh_expires_at")),
            roles=tuple(data.get("roles", ())),
            permissions=tuple(data.get("permissions", ())),
            token_type=data.get("token_type", "Bearer"),
            revoked_at=_parse_opt_dt(data.get("revoked_at")),
            revoke_reason=data.get("revoke_reason"),
            login_at=_parse_opt_dt(data.get("login_at")),
            ip_address=data.get("ip_address"),
            user_agent=data.get("user_agent"),
        )

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AuthToken:
        """Rebuild a record from :meth:`to_json` output."""
        return cls.from_dict(_loads(text))


@dataclass(frozen=True, slots=True)
class SessionData:
    """A server-side session.

    ``session_id`` is the public half (selector) of the session id and the storage key; only
    the digest of the secret half is kept. ``expires_at`` is the effective expiry (the earlier of
    the idle deadline and ``absolute_expires_at``) and is what storage uses for its TTL.
    ``data`` holds JSON-serialisable values; backends hand out a fresh copy on every read.
    ``ip_address`` and ``user_agent`` are the client's at login (cleaned text, or None).
    ``user_id`` is None for an anonymous visitor's session (a cart, a flash message, the
    login form's CSRF token): it belongs to no user, is in no user's index, and is counted
    in ``StorageStatistics.anonymous_sessions``.
    """

    session_id: str
    user_id: str | None
    verifier_digest: bytes = field(repr=False)
    created_at: datetime
    last_accessed: datetime
    expires_at: datetime
    absolute_expires_at: datetime
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    ip_address: str | None = None
    user_agent: str | None = None
    expires_ts: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_aware(
            "SessionData",
            self.created_at,
            self.last_accessed,
            self.expires_at,
            self.absolute_expires_at,
        )
        object.__setattr__(self, "expires_ts", self.expires_at.timestamp())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "verifier_digest": self.verifier_digest.hex(),
            "created_at": _dt(self.created_at),
            "last_accessed": _dt(self.last_accessed),
            "expires_at": _dt(self.expires_at),
            "absolute_expires_at": _dt(self.absolute_expires_at),
            "data": self.data,
            "roles": list(self.roles),
            "permissions": list(self.permissions),
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionData:
        """Rebuild a session from :meth:`to_dict` output."""
        return cls(
            session_id=data["session_id"],
            user_id=data["user_id"],
            verifier_digest=bytes.fromhex(data["verifier_digest"]),
            created_at=_parse_dt(data["created_at"]),
            last_accessed=_parse_dt(data["last_accessed"]),
            expires_at=_parse_dt(data["expires_at"]),
            absolute_expires_at=_parse_dt(data["absolute_expires_at"]),
            data=dict(data.get("data") or {}),
            roles=tuple(data.get("roles", ())),
            permissions=tuple(data.get("permissions", ())),
            ip_address=data.get("ip_address"),
            user_agent=data.get("user_agent"),
        )

    def with_data(self, data: dict[str, Any]) -> SessionData:
        """This record holding ``data``: ``dataclasses.replace(self, data=data)`` without
        re-checking fields this record already checked. Every session read makes one (a fresh
        copy of the data per caller), and ``replace`` cost more than the rest of a cached read.
        """
        copy = object.__new__(SessionData)
        for name in _SESSION_FIELDS:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "data", data)
        return copy

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`; raises ``TypeError`` if ``data`` is not JSON-able."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionData:
        """Rebuild a session from :meth:`to_json` output."""
        return cls.from_dict(_loads(text))


_SESSION_FIELDS = tuple(name for name in SessionData.__slots__ if name != "data")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A registered user. ``password_hash`` is an argon2id PHC string, never shown in ``repr``."""

    user_id: str
    password_hash: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    is_active: bool = True

    def __post_init__(self) -> None:
        _check_aware("UserRecord", self.created_at, self.updated_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the hash included: backups and migrations need it)."""
        return {
            "user_id": self.user_id,
            "password_hash": self.password_hash,
            "created_at": _dt(self.created_at),
            "updated_at": _dt(self.updated_at),
            "roles": list(self.roles),
            "permissions": list(self.permissions),
            "is_active": self.is_active,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserRecord:
        """Rebuild a user from :meth:`to_dict` output."""
        return cls(
            user_id=data["user_id"],
            password_hash=data["password_hash"],
            created_at=_parse_dt(data["created_at"]),
            updated_at=_parse_dt(data["updated_at"]),
            roles=tuple(data.get("roles", ())),
            permissions=tuple(data.get("permissions", ())),
            is_active=bool(data.get("is_active", True)),
        )

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> UserRecord:
        """Rebuild a user from :meth:`to_json` output."""
        return cls.from_dict(_loads(text))


def _event_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the audit log.

    ``action`` is e.g. ``"login"``, ``"token.issue"``, ``"token.refresh"``, ``"token.revoke"``,
    ``"account.lockout"``; ``outcome`` is True for success. ``metadata`` holds small JSON-able
    details (a refusal reason, a token id), never a secret.
    """

    action: str
    outcome: bool
    user_id: str | None = None
    timestamp: datetime = field(default_factory=utcnow)
    resource: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=_event_id)

    def __post_init__(self) -> None:
        _check_aware("AuditEvent", self.timestamp)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "event_id": self.event_id,
            "action": self.action,
            "outcome": self.outcome,
            "user_id": self.user_id,
            "timestamp": _dt(self.timestamp),
            "resource": self.resource,
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """Rebuild an event from :meth:`to_dict` output."""
        return cls(
            event_id=data["event_id"],
            action=data["action"],
            outcome=bool(data["outcome"]),
            user_id=data.get("user_id"),
            timestamp=_parse_dt(data["timestamp"]),
            resource=data.get("resource"),
            ip_address=data.get("ip_address"),
            user_agent=data.get("user_agent"),
            metadata=dict(data.get("metadata") or {}),
        )

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditEvent:
        """Rebuild an event from :meth:`to_json` output."""
        return cls.from_dict(_loads(text))


@dataclass(slots=True)
class StorageStatistics:
    """What a backend reports about itself. Counts exclude expired records.

    ``memory_bytes`` (in-memory and Redis) and ``database_size_mb`` (PostgreSQL) are None where
    the backend cannot tell. ``extra`` holds backend-specific figures (cache hit rates, ...).
    """

    backend: str
    total_users: int = 0
    total_tokens: int = 0
    active_sessions: int = 0
    kv_entries: int = 0
    audit_events: int = 0
    memory_bytes: int | None = None
    database_size_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Of ``active_sessions``, how many belong to no user (anonymous visitors' sessions).
    anonymous_sessions: int = 0
