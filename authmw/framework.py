"""AuthFramework: registration, login, tokens and sessions over any ``AuthStorage``.

The framework knows storage only through the Protocol in :mod:`authmw.storage.base`; it never
sees HTTP. Every public method opens the framework on first use (once, under a lock), so the
storage guide's example runs without an explicit ``open()``.
"""

from __future__ import annotations

import asyncio
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from ._time import now_ts, seconds
from .config import AuthConfig
from .errors import (
    AccountDisabled,
    AccountLocked,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    RefreshTokenReused,
    UnknownUser,
)
from .models import AuditEvent, AuthToken, SessionData, UserRecord, utcnow
from .passwords import PasswordManager
from .storage.base import MISS, AuthStorage, SupportsNowaitReads
from .tokens import ACCESS, REFRESH, SESSION, TokenCodec, verifier_matches

__all__ = ["AuthFramework"]

_FAILURES = "authmw:login-failures:"
_LOCKED = "authmw:locked-until:"
# Longest user agent or address kept in the audit log (client-supplied, so bounded).
_CLIENT_TEXT_LIMIT = 512


class AuthFramework:
    """The authentication flows. Use ``async with AuthFramework(storage, config) as auth:``."""

    def __init__(self, storage: AuthStorage, config: AuthConfig | None = None) -> None:
        self.storage = storage
        self.config = config or AuthConfig()
        cfg = self.config
        self._codec = TokenCodec(cfg.signing_keys)
        self._passwords = PasswordManager(cfg.password_hasher, cfg.max_concurrent_hashes)
        self._access_ttl = timedelta(seconds=seconds(cfg.access_token_ttl, "access_token_ttl"))
        self._refresh_ttl = timedelta(seconds=seconds(cfg.refresh_token_ttl, "refresh_token_ttl"))
        self._idle = timedelta(seconds=seconds(cfg.session_idle_timeout, "session_idle_timeout"))
        self._absolute = timedelta(
            seconds=seconds(cfg.session_absolute_timeout, "session_absolute_timeout")
        )
        self._touch_every = timedelta(seconds=cfg.touch_interval)
        self._window = seconds(cfg.failed_login_window, "failed_login_window")
        self._lockout = seconds(cfg.lockout_duration, "lockout_duration")
        # Raw access token -> token id, filled only after a full check (tag and digest) passed.
        # A repeat verify then skips both hashes; storage is still asked every time, so a
        # revocation anywhere takes effect at once. Bounded, oldest entry evicted first.
        self._verified: dict[str, str] = {}
        self._verified_sessions: dict[str, str] = {}  # the same memo for session ids
        self._verified_max = cfg.verified_token_cache
        # A storage that answers some reads from memory (CachedStorage) lets verify_nowait and
        # get_session_nowait serve synchronous callers without an event loop.
        self._nowait = storage if isinstance(storage, SupportsNowaitReads) else None
        self._open = False
        self._open_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AuthFramework(storage={self.storage!r}, open={self._open})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the storage (idempotent, safe to call concurrently)."""
        async with self._open_lock:
            if not self._open:
                await self.storage.open()
                await self._passwords.warm()
                self._open = True

    async def close(self) -> None:
        """Close the storage. A later call reopens it."""
        async with self._open_lock:
            if self._open:
                self._open = False
                self._verified.clear()
                self._verified_sessions.clear()
                await self.storage.close()

    async def __aenter__(self) -> AuthFramework:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- input checks ----------------------------------------------------------------------

    def _check_user_id(self, user_id: object) -> str:
        if not isinstance(user_id, str):
            raise InvalidInput("user_id", "must be a string")
        if not user_id:
            raise InvalidInput("user_id", "must not be empty")
        if len(user_id) > self.config.max_user_id_length:
            limit = self.config.max_user_id_length
            raise InvalidInput("user_id", f"longer than {limit} characters")
        if user_id != user_id.strip() or any(
            unicodedata.category(c) in ("Cc", "Cs") for c in user_id
        ):
            raise InvalidInput("user_id", "has surrounding whitespace or control characters")
        return user_id

    def _check_password(self, password: object, *, registering: bool) -> str:
        if not isinstance(password, str):
            raise InvalidInput("password", "must be a string")
        longest, shortest = self.config.max_password_length, self.config.min_password_length
        if len(password) > longest:
            raise InvalidInput("password", f"longer than {longest} characters")
        if registering and len(password) < shortest:
            raise InvalidInput("password", f"shorter than {shortest} characters")
        return password

    @staticmethod
    def _client_text(value: str | None) -> str | None:
        """Client-supplied text (user agent, address) as the audit log keeps it: without
        control characters or lone surrogates, at most 512 characters.

        A client controls these and storage may refuse them (PostgreSQL stores no NUL): a
        refused audit write must not make a failed login go uncounted.
        """
        if value is None:
            return None
        if len(value) <= _CLIENT_TEXT_LIMIT and value.isprintable():
            return value
        kept = "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cs"))
        return kept[:_CLIENT_TEXT_LIMIT]

    async def _audit(self, action: str, outcome: bool, user_id: str | None, **info: Any) -> None:
        if self.config.audit_log:
            meta = {k: v for k, v in info.items() if v is not None and k not in ("ip", "agent")}
            await self.storage.append_audit(
                AuditEvent(
                    action=action,
                    outcome=outcome,
                    user_id=user_id,
                    ip_address=self._client_text(info.get("ip")),
                    user_agent=self._client_text(info.get("agent")),
                    metadata=meta,
                )
            )

    # -- users -----------------------------------------------------------------------------

    async def register_user(
        self,
        user_id: str,
        password: str,
        *,
        roles: tuple[str, ...] | list[str] = (),
        permissions: tuple[str, ...] | list[str] = (),
    ) -> UserRecord:
        """Create a user with an argon2id hash of ``password``.

        Raises ``UserExists`` if the id is taken (exactly one of concurrent registrations wins)
        and ``InvalidInput`` for an empty, oversized or control-character user id or a password
        outside the configured length bounds.
        """
        user_id = self._check_user_id(user_id)
        password = self._check_password(password, registering=True)
        if not self._open:
            await self.open()
        now = utcnow()
        user = UserRecord(
            user_id=user_id,
            password_hash=await self._passwords.hash(password),
            created_at=now,
            updated_at=now,
            roles=tuple(roles),
            permissions=tuple(permissions),
        )
        await self.storage.create_user(user)
        await self._audit("user.register", True, user_id)
        return user

    async def check_password(
        self,
        user_id: str,
        password: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> UserRecord:
        """Verify a login and return the user, counting failures and locking out.

        Raises ``InvalidCredentials`` (unknown user or wrong password, at the same cost),
        ``AccountLocked`` once ``max_failed_logins`` failures fall within the window, and
        ``InvalidInput`` for an oversized password. Rehashes when hash parameters changed.

        Each attempt counts as a failure before its hash is checked (increment-then-verify),
        so concurrent guesses never check more than ``max_failed_logins`` hashes before the
        lock; an attempt that ends without an answer (cancelled, storage lost) keeps its count.
        """
        user_id = self._check_user_id(user_id)
        password = self._check_password(password, registering=False)
        if not self._open:
            await self.open()
        who = {"ip": ip_address, "agent": user_agent}
        limit = self.config.max_failed_logins
        # Increment-then-verify: every attempt reserves a failure atomically before any hash
        # is checked, so concurrent guesses check at most ``limit`` hashes per lockout; the
        # reservation stands as the failure count unless the password turns out right.
        attempt = 0
        locked = await self._locked_until(user_id)
        if locked is None:
            attempt = await self.storage.kv_incr(_FAILURES + user_id, self._window)
            # Read again after reserving: the attempt that locks the account sets the lock and
            # then clears the count, so a reservation made just after sees a low count but
            # finds the lock here.
            locked = await self._locked_until(user_id)
            if locked is None and attempt > limit:
                # Earlier reservations used the limit up; the one that locks is still checking.
                locked = now_ts() + self._lockout
        if locked is not None:
            await self._audit("login", False, user_id, reason="locked", **who)
            raise AccountLocked(user_id, max(0.0, locked - now_ts()))
        user = await self.storage.get_user(user_id)
        if user is None or not user.is_active:
            ok = await self._passwords.burn(password)
        else:
            ok = await self._passwords.verify(user.password_hash, password)
        if not ok or user is None:
            await self._audit("login", False, user_id, reason="invalid_credentials", **who)
            if attempt >= limit:
                until = now_ts() + self._lockout
                # Lock first, then clear the count: see the second read above.
                await self.storage.kv_set(_LOCKED + user_id, repr(until).encode(), self._lockout)
                await self.storage.kv_delete(_FAILURES + user_id)
                await self._audit("account.lockout", True, user_id, failures=attempt, **who)
                raise AccountLocked(user_id, self._lockout)
            raise InvalidCredentials(user_id)
        await self.storage.kv_delete(_FAILURES + user_id)
        if self._passwords.needs_rehash(user.password_hash):
            user = replace(
                user, password_hash=await self._passwords.hash(password), updated_at=utcnow()
            )
            await self.storage.update_user(user)
        await self._audit("login", True, user_id, **who)
        return user

    async def _locked_until(self, user_id: str) -> float | None:
        """The time a lockout of ``user_id`` ends, or None when it is not locked."""
        locked = await self.storage.kv_get(_LOCKED + user_id)
        return None if locked is None else float(locked)

    async def check_user(
        self,
        user_id: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> UserRecord:
        """The user to log in without a password (SSO, OAuth callback, magic link, sign-up).

        The caller has proved who the user is by other means; this checks the account may log
        in and audits a ``login`` with ``method="passwordless"``, like a password login.
        Raises ``UnknownUser`` or ``AccountDisabled`` (both ``InvalidCredentials``, audited as
        failed logins) and ``InvalidInput`` for a malformed user id. The password lockout is
        not consulted: it guards against guessed passwords, and no password is involved.
        """
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self.open()
        who = {"ip": ip_address, "agent": user_agent}
        user = await self.storage.get_user(user_id)
        if user is None:
            await self._audit(
                "login", False, user_id, method="passwordless", reason="unknown", **who
            )
            raise UnknownUser(user_id)
        if not user.is_active:
            await self._audit(
                "login", False, user_id, method="passwordless", reason="disabled", **who
            )
            raise AccountDisabled(user_id)
        await self._audit("login", True, user_id, method="passwordless", **who)
        return user

    # -- tokens ----------------------------------------------------------------------------

    async def issue_tokens(
        self,
        user_id: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> AuthToken:
        """Issue an access and refresh token to a user without a password: the same pair as
        :meth:`authenticate`, for SSO, OAuth callbacks, magic links and "log in after sign-up".

        Raises what :meth:`check_user` raises.
        """
        user = await self.check_user(user_id, ip_address=ip_address, user_agent=user_agent)
        return await self._issue(user)

    async def _issue(self, user: UserRecord) -> AuthToken:
        token = self._mint(user, None)
        await self.storage.store_token(token)
        await self._audit("token.issue", True, user.user_id, token_id=token.token_id)
        return token

    def _mint(self, user: UserRecord, family_id: str | None) -> AuthToken:
        access, refresh = self._codec.mint(ACCESS), self._codec.mint(REFRESH)
        now = utcnow()
        return AuthToken(
            token_id=access.selector,
            user_id=user.user_id,
            access_digest=access.verifier_digest,
            expires_at=now + self._access_ttl,
            created_at=now,
            family_id=family_id or access.selector,
            refresh_id=refresh.selector,
            refresh_digest=refresh.verifier_digest,
            refresh_expires_at=now + self._refresh_ttl,
            roles=user.roles,
            permissions=user.permissions,
            access_token=access.token,
            refresh_token=refresh.token,
        )

    async def authenticate(
        self,
        user_id: str,
        password: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> AuthToken:
        """Check a password and issue an access token with a refresh token.

        Raises what :meth:`check_password` raises.
        """
        user = await self.check_password(
            user_id, password, ip_address=ip_address, user_agent=user_agent
        )
        return await self._issue(user)

    async def verify(self, access_token: str) -> AuthToken:
        """The stored record of a valid access token.

        Raises ``InvalidToken`` with ``reason`` malformed, forged, unknown, expired or revoked.
        Junk and forged tokens are refused without touching storage.
        """
        # Parsed first: junk and forged tokens are refused even when storage cannot be opened.
        token_id, verifier = self._token_key(access_token)
        if not self._open:
            await self.open()
        nowait = self._nowait
        # A cache hit is a plain call: no coroutine to create and await.
        record = MISS if nowait is None else nowait.get_token_nowait(token_id)
        if record is MISS:
            record = await self.storage.get_token(token_id)
        return self._accept_token(access_token, token_id, verifier, record)

    def verify_nowait(self, access_token: str) -> AuthToken | None:
        """:meth:`verify` without I/O, from any thread: the record when the storage could
        answer from memory, None when only :meth:`verify` can tell (a cache miss, a storage
        without a memory path, a framework not opened yet).

        Raises ``InvalidToken`` as :meth:`verify` does; junk and forged tokens are refused here
        whatever the storage.
        """
        nowait = self._nowait
        if nowait is None or not self._open:
            return None
        token_id, verifier = self._token_key(access_token)
        record = nowait.get_token_nowait(token_id)
        if record is MISS:
            return None
        return self._accept_token(access_token, token_id, verifier, record)

    @property
    def can_answer_nowait(self) -> bool:
        """True when the storage can answer from memory, so the ``*_nowait`` methods may
        return answers; False when they always return None."""
        return self._nowait is not None

    def _token_key(self, access_token: str) -> tuple[str, str | None]:
        """(token id, secret part to check) of an access token. The secret part is None when
        this exact token passed the full check before (the memo): no hash is needed then."""
        token_id = self._verified.get(access_token)
        if token_id is not None:
            return token_id, None
        return self._codec.parse(access_token, ACCESS)

    def _accept_token(
        self, access_token: str, token_id: str, verifier: str | None, record: AuthToken | None
    ) -> AuthToken:
        """The one decision of both verify paths: the stored record, if the token is usable."""
        if record is None:
            raise InvalidToken("unknown", token_id=token_id)
        if verifier is not None:
            if not verifier_matches(verifier, record.access_digest):
                raise InvalidToken("unknown", token_id=token_id)
            self._remember(access_token, token_id)
        if record.revoked_at is not None:
            raise InvalidToken("revoked", token_id=token_id)
        if record.expires_ts <= now_ts():
            raise InvalidToken("expired", token_id=token_id)
        return record

    def _remember(
        self, access_token: str, token_id: str, verified: dict[str, str] | None = None
    ) -> None:
        if not self._verified_max:
            return
        if verified is None:
            verified = self._verified
        if len(verified) >= self._verified_max:
            # verify_nowait runs on other threads too: another thread may change the dict
            # between iter() and next(), or take the same oldest entry first. try/except, not
            # contextlib.suppress: this runs on every first verify of a token once the memo
            # is full, and a suppress() costs more than the eviction.
            try:  # noqa: SIM105
                verified.pop(next(iter(verified)), None)
            except (RuntimeError, StopIteration):
                pass
        verified[access_token] = token_id

    async def _revoke_family(self, token: AuthToken, now: datetime) -> None:
        for member in await self.storage.list_user_tokens(token.user_id):
            if member.family_id == token.family_id and not member.is_revoked:
                await self.storage.update_token(
                    replace(member, revoked_at=now, revoke_reason="family_revoked")
                )

    async def refresh(self, refresh_token: str) -> AuthToken:
        """Exchange a refresh token for a new access and refresh token (rotation).

        The old pair stops working. Presenting an already-rotated refresh token raises
        ``RefreshTokenReused`` and revokes every token of its family; other refusals raise
        ``InvalidToken``.
        """
        if not self._open:
            await self.open()
        refresh_id, verifier = self._codec.parse(refresh_token, REFRESH)
        record = await self.storage.get_token_by_refresh(refresh_id)
        if record is None or not verifier_matches(verifier, record.refresh_digest):
            raise InvalidToken("unknown", token_id=refresh_id)
        now = utcnow()
        if record.is_revoked:
            if record.revoke_reason != "rotated":
                raise InvalidToken("revoked", token_id=record.token_id)
            return await self._reused(record, now)
        if record.refresh_expires_at is None or record.refresh_expires_at <= now:
            raise InvalidToken("expired", token_id=record.token_id)
        user = await self.storage.get_user(record.user_id)
        if user is None or not user.is_active:
            await self.storage.update_token(
                replace(record, revoked_at=now, revoke_reason="user_disabled")
            )
            raise InvalidToken("revoked", token_id=record.token_id)
        new = self._mint(user, record.family_id)
        retired = replace(record, revoked_at=now, revoke_reason="rotated")
        if not await self.storage.rotate_token(retired, new):
            # Another request rotated this token first: the same refresh token was used twice.
            return await self._reused(record, now)
        await self._audit(
            "token.refresh", True, user.user_id, token_id=new.token_id, previous=record.token_id
        )
        return new

    async def _reused(self, record: AuthToken, now: datetime) -> AuthToken:
        await self._revoke_family(record, now)
        await self._audit(
            "token.refresh", False, record.user_id, reason="reused", family_id=record.family_id
        )
        raise RefreshTokenReused(
            token_id=record.token_id, user_id=record.user_id, family_id=record.family_id
        )

    async def revoke(self, token: str) -> bool:
        """Revoke an access token, or the token pair a refresh token belongs to.

        Returns True when a live token was revoked, False when it was already revoked, expired
        or unknown (revocation is idempotent). Raises ``InvalidToken`` for malformed or forged
        input.
        """
        if not self._open:
            await self.open()
        is_refresh = isinstance(token, str) and token.startswith(REFRESH)
        selector, verifier = self._codec.parse(token, REFRESH if is_refresh else ACCESS)
        if is_refresh:
            record = await self.storage.get_token_by_refresh(selector)
            digest = None if record is None else record.refresh_digest
        else:
            record = await self.storage.get_token(selector)
            digest = None if record is None else record.access_digest
        if record is None or not verifier_matches(verifier, digest) or record.is_revoked:
            return False
        self._verified.pop(token, None)
        revoked = await self.storage.update_token(
            replace(record, revoked_at=utcnow(), revoke_reason="revoked")
        )
        await self._audit("token.revoke", True, record.user_id, token_id=record.token_id)
        return revoked

    async def revoke_user(self, user_id: str) -> int:
        """Revoke every token and session of a user; return how many were live."""
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self.open()
        count = await self.storage.delete_user_tokens(user_id)
        count += await self.storage.delete_user_sessions(user_id)
        await self._audit("token.revoke", True, user_id, scope="user", revoked=count)
        return count

    # -- sessions --------------------------------------------------------------------------

    async def create_session(
        self,
        user_id: str,
        data: dict[str, Any] | None = None,
    ) -> tuple[str, SessionData]:
        """Start a server-side session; return the session id to hand out and its record.

        Roles and permissions are copied from the user record when the user exists. ``data``
        must be JSON-serialisable (``TypeError`` otherwise).
        """
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self.open()
        user = await self.storage.get_user(user_id)
        minted = self._codec.mint(SESSION)
        now = utcnow()
        absolute = now + self._absolute
        session = SessionData(
            session_id=minted.selector,
            user_id=user_id,
            verifier_digest=minted.verifier_digest,
            created_at=now,
            last_accessed=now,
            expires_at=min(now + self._idle, absolute),
            absolute_expires_at=absolute,
            data=dict(data or {}),
            roles=user.roles if user else (),
            permissions=user.permissions if user else (),
        )
        await self.storage.store_session(session)
        await self._audit("session.create", True, user_id, session_id=session.session_id)
        return minted.token, session

    async def get_session(self, session_id: str) -> SessionData:
        """The live session behind a session id, its idle deadline moved forward.

        ``last_accessed`` is written at most once per ``session_touch_interval``. Raises
        ``InvalidToken`` when the id is malformed, forged, unknown or expired.
        """
        selector, verifier = self._session_key(session_id)
        if not self._open:
            await self.open()
        found = await self.storage.get_session(selector)
        session = self._accept_session(session_id, selector, verifier, found)
        now = utcnow()
        if now - session.last_accessed >= self._touch_every:
            expires = min(now + self._idle, session.absolute_expires_at)
            if await self.storage.touch_session(selector, now, expires):
                session = replace(session, last_accessed=now, expires_at=expires)
        return session

    def get_session_nowait(self, session_id: str) -> SessionData | None:
        """:meth:`get_session` without I/O, from any thread: the session when the storage could
        answer from memory and no ``last_accessed`` write is due, None when only
        :meth:`get_session` can tell. Raises ``InvalidToken`` as :meth:`get_session` does."""
        nowait = self._nowait
        if nowait is None or not self._open:
            return None
        selector, verifier = self._session_key(session_id)
        found = nowait.get_session_nowait(selector)
        if found is MISS:
            return None
        session = self._accept_session(session_id, selector, verifier, found)
        if utcnow() - session.last_accessed >= self._touch_every:
            return None  # the touch is a write: get_session does it
        return session

    def _session_key(self, session_id: str) -> tuple[str, str | None]:
        """(selector, secret part to check) of a session id; as :meth:`_token_key`, the secret
        part is None when this exact id passed the full check before (a memo of its own, so an
        access token given as a session id is still refused as malformed, and the reverse)."""
        selector = self._verified_sessions.get(session_id)
        if selector is not None:
            return selector, None
        return self._codec.parse(session_id, SESSION)

    def _accept_session(
        self, session_id: str, selector: str, verifier: str | None, found: SessionData | None
    ) -> SessionData:
        """The one decision of both session paths: the session, if its secret part matches."""
        if found is None:
            raise InvalidToken("unknown", token_id=selector)
        if verifier is not None:
            if not verifier_matches(verifier, found.verifier_digest):
                raise InvalidToken("unknown", token_id=selector)
            self._remember(session_id, selector, self._verified_sessions)
        return found

    async def save_session(self, session: SessionData, data: dict[str, Any]) -> SessionData:
        """Store new data for a session; return the updated record."""
        if not self._open:
            await self.open()
        updated = replace(session, data=dict(data))
        await self.storage.store_session(updated)
        return updated

    async def destroy_session(self, session_id: str) -> bool:
        """End a session; True when a live one was removed. Forged ids raise ``InvalidToken``."""
        if not self._open:
            await self.open()
        selector, verifier = self._codec.parse(session_id, SESSION)
        session = await self.storage.get_session(selector)
        if session is None or not verifier_matches(verifier, session.verifier_digest):
            return False
        self._verified_sessions.pop(session_id, None)
        await self._audit("session.destroy", True, session.user_id, session_id=selector)
        return await self.storage.delete_session(selector)
