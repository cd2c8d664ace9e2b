"""AuthFramework: registration, login, tokens and sessions over any ``AuthStorage``.

The framework knows storage only through the Protocol in :mod:`authmw.storage.base`; it never
sees HTTP. Every public method opens the framework on first use (once, under a lock), so the
storage guide's example runs without an explicit ``open()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, NamedTuple

from ._accounts import Accounts, normalize_user_id
from ._devices import Devices, SessionInfo, TokenInfo
from ._throttle import LoginThrottle, Refusal
from ._time import now_ts, seconds
from .config import AuthConfig
from .errors import (
    AccountDisabled,
    AccountLocked,
    AuthmwError,
    ConfigurationError,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    SessionTooLarge,
    StorageUnavailable,
    UnknownUser,
)
from .models import AuditEvent, AuthToken, SessionData, UserRecord, utcnow
from .passwords import PasswordManager, check_password_rules
from .storage.base import MISS, AuthStorage, Miss, SupportsNowaitReads, SupportsOwnerReads
from .tokens import ACCESS, REFRESH, SESSION, TokenCodec, verifier_matches

__all__ = ["AuthFramework"]

log = logging.getLogger("authmw.framework")
# Longest user agent or address kept in the audit log (client-supplied, so bounded).
_CLIENT_TEXT_LIMIT = 512


class _Login(NamedTuple):
    """When and from where the login a token family descends from happened."""

    at: datetime | None
    ip_address: str | None
    user_agent: str | None


class AuthFramework:
    """The authentication flows. Use ``async with AuthFramework(storage, config) as auth:``.

    When opening the storage fails, the operations that open it on first use raise
    ``StorageUnavailable`` (503) and try again at most every :attr:`reopen_interval` seconds;
    the first failure (and each new reason) is logged at ERROR on the ``authmw`` logger.
    """

    #: Seconds between attempts to open a storage that could not be opened.
    reopen_interval: float = 5.0

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
        # Password attempts are counted, locked and delayed per (user, address) and per user.
        self.throttle = LoginThrottle(storage, cfg)
        # Listing and revoking one user's sessions and tokens by their public ids.
        self.devices = Devices(storage, self._audit)
        self._anon_idle = timedelta(
            seconds=seconds(cfg.anonymous_session_idle_timeout, "anonymous_session_idle_timeout")
        )
        self._anon_absolute = timedelta(
            seconds=seconds(
                cfg.anonymous_session_absolute_timeout, "anonymous_session_absolute_timeout"
            )
        )
        # A touch interval fit for users' sessions may be too long for the shorter anonymous
        # idle timeout: those are touched at least twice per idle period.
        self._anon_touch_every = min(self._touch_every, self._anon_idle / 2)
        # Raw access token -> token id, filled only after a full check (tag and digest) passed.
        # A repeat verify then skips both hashes; storage is still asked every time, so a
        # revocation anywhere takes effect at once. Bounded, oldest entry evicted first.
        self._verified: dict[str, str] = {}
        self._verified_sessions: dict[str, str] = {}  # the same memo for session ids
        self._verified_max = cfg.verified_token_cache
        # Token id -> (stored record, storage's user_generation, answer): the answer of the
        # live account check (_follow_user), kept while neither the cached record nor any user
        # answer of the storage changed, so a cache hit does not read the user again.
        self._followed: dict[str, tuple[AuthToken, int, AuthToken]] = {}
        # A storage that answers some reads from memory (CachedStorage) lets verify_nowait and
        # get_session_nowait serve synchronous callers without an event loop.
        self._nowait = storage if isinstance(storage, SupportsNowaitReads) else None
        # Without a memory path, every verify reads the credential and its owner: a storage
        # that reads both in one round trip (Redis, PostgreSQL) is asked for both at once.
        self._owner_reads = (
            storage if self._nowait is None and isinstance(storage, SupportsOwnerReads) else None
        )
        self._open = False
        self._open_lock = asyncio.Lock()
        self._accounts = Accounts(self, self._passwords, self._audit, self.throttle.unlock)
        # The last failed attempt to open (monotonic time, error), for _reopen's back-off.
        self._open_failure: tuple[float, AuthmwError] | None = None
        self._logged_failure = ""  # the reason last logged at ERROR, so it is logged once

    def __repr__(self) -> str:
        return f"AuthFramework(storage={self.storage!r}, open={self._open})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the storage (idempotent, safe to call concurrently).

        Raises what the storage raises: ``ConfigurationError`` for settings the server refuses
        (credentials, a missing database), ``StorageUnavailable`` when it cannot be reached.
        """
        async with self._open_lock:
            await self._open_locked()

    async def _open_locked(self) -> None:
        if self._open:
            return
        try:
            await self.storage.open()
            await self._passwords.warm()
        except (ConfigurationError, StorageUnavailable) as exc:
            self._open_failure = (time.monotonic(), exc)
            raise
        if self._open_failure is not None:
            log.warning("authmw storage %r opened: requests are served again", self.storage)
            self._open_failure = None
            self._logged_failure = ""
        self._open = True

    async def try_open(self) -> bool:
        """Open the storage, or log why it cannot be opened (ERROR, on the ``authmw`` logger,
        with the fix for a ``ConfigurationError``) and return False instead of raising.

        For server start-up hooks (the middlewares' lifespan): the app starts all the same,
        requests that need the storage answer 503, and operations retry opening at most every
        :attr:`reopen_interval` seconds.
        """
        try:
            await self.open()
        except (ConfigurationError, StorageUnavailable) as exc:
            self._log_open_failure(exc)
            return False
        return True

    def _log_open_failure(self, exc: AuthmwError) -> None:
        """ERROR once per reason (with the fix); the same reason again only at DEBUG."""
        if str(exc) != self._logged_failure:
            self._logged_failure = str(exc)
            log.error("%s", _open_failed_message(exc, self.reopen_interval))
        else:
            log.debug("authmw storage still cannot be opened: %s", exc)

    @property
    def open_failure(self) -> AuthmwError | None:
        """Why the last attempt to open the storage failed; None once it is open."""
        return None if self._open_failure is None else self._open_failure[1]

    async def _reopen(self) -> None:
        """Open on first use from an operation: what cannot be opened is ``StorageUnavailable``.

        A storage that failed to open is tried again at most every :attr:`reopen_interval`
        seconds; until then (and when the retry fails) the caller gets ``StorageUnavailable``,
        which the middlewares and handlers answer 503 with ``Retry-After``, rather than a 500
        for a ``ConfigurationError`` an operator may fix while the app runs (create the
        database, correct the password on the server).
        """
        async with self._open_lock:
            if self._open:
                return
            failure = self._open_failure
            if failure is not None and time.monotonic() - failure[0] < self.reopen_interval:
                # Concurrent callers queue on the lock; only the first of them tries again.
                raise StorageUnavailable(
                    _backend(self.storage), "open", f"not retried yet: {failure[1]}"
                )
            try:
                await self._open_locked()
            except (ConfigurationError, StorageUnavailable) as exc:
                self._log_open_failure(exc)
                if isinstance(exc, StorageUnavailable):
                    raise
                raise StorageUnavailable(_backend(self.storage), "open", str(exc)) from exc

    async def close(self) -> None:
        """Close the storage. A later call reopens it."""
        async with self._open_lock:
            if self._open:
                self._open = False
                self._verified.clear()
                self._followed.clear()
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
        # The one rule (authmw._accounts.normalize_user_id) at every entry point, so "Alice",
        # "alice " and full-width "\uff41lice" are one account with one lockout counter.
        return normalize_user_id(user_id, self.config.max_user_id_length)

    def _check_password(self, password: object, *, registering: bool) -> str:
        cfg = self.config
        return check_password_rules(
            password,
            min_length=cfg.min_password_length,
            max_bytes=cfg.max_password_length,
            new=registering,
        )

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
            await self._reopen()
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
        ``AccountLocked`` once ``max_failed_logins`` failures from ``ip_address`` fall within
        the window or while the user's slow-down across addresses runs (docs/lockout.md), and
        ``InvalidInput`` for an oversized password. Rehashes when hash parameters changed.

        Each attempt counts as a failure before its hash is checked (increment-then-verify),
        so concurrent guesses never check more than ``max_failed_logins`` hashes per address
        before the lock; an attempt that ends without an answer (cancelled, storage lost)
        keeps its count.
        """
        user_id = self._check_user_id(user_id)
        password = self._check_password(password, registering=False)
        if not self._open:
            await self._reopen()
        who = {"ip": ip_address, "agent": user_agent}
        # Increment-then-verify: every attempt reserves its counts atomically before any hash
        # is checked, so concurrent guesses check no more hashes than the limits allow; the
        # reservation stands as a failure unless the password turns out right.
        attempt = await self.throttle.reserve(user_id, self._client_text(ip_address))
        if isinstance(attempt, Refusal):
            await self._audit("login", False, user_id, reason=attempt.reason, **who)
            raise AccountLocked(user_id, max(0.0, attempt.retry_after), attempt.reason)
        user = await self.storage.get_user(user_id)
        if user is None or not user.is_active:
            ok = await self._passwords.burn(password)
        else:
            ok = await self._passwords.verify(user.password_hash, password)
        if not ok or user is None:
            await self._audit("login", False, user_id, reason="invalid_credentials", **who)
            locked_for = await self.throttle.failed(attempt)
            if locked_for is not None:
                await self._audit(
                    "account.lockout", True, user_id, failures=attempt.address_failures, **who
                )
                raise AccountLocked(user_id, locked_for)
            raise InvalidCredentials(user_id)
        await self.throttle.succeeded(attempt)
        if self._passwords.needs_rehash(user.password_hash):
            user = replace(
                user, password_hash=await self._passwords.hash(password), updated_at=utcnow()
            )
            await self.storage.update_user(user)
        await self._audit("login", True, user_id, **who)
        return user

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
            await self._reopen()
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

    # -- account management (authmw._accounts does the work) ---------------------------------

    async def get_user(self, user_id: str) -> UserRecord:
        """The user record (its ``password_hash`` is never in ``repr``). Raises
        ``UnknownUser`` when there is none, ``InvalidInput`` for a malformed id."""
        return await self._accounts.get(user_id)

    async def list_users(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        role: str | None = None,
        active: bool | None = None,
    ) -> list[UserRecord]:
        """A page of at most ``limit`` (1 to 1,000) users in ascending id order (by code
        point), after the id ``after`` (pass the last id of the previous page; None starts at
        the first). ``role`` keeps users with that role, ``active`` those enabled (True) or
        disabled (False). A page shorter than ``limit`` is the last."""
        return await self._accounts.page(after, limit, role, active)

    async def set_roles(self, user_id: str, roles: Iterable[str]) -> UserRecord:
        """Replace the user's roles (a list of strings; duplicates dropped). Live tokens and
        sessions carry the new roles from their next request: no new login needed."""
        return await self._accounts.set_roles(user_id, roles)

    async def set_permissions(self, user_id: str, permissions: Iterable[str]) -> UserRecord:
        """Replace the user's permissions; live tokens and sessions follow, as
        :meth:`set_roles`."""
        return await self._accounts.set_permissions(user_id, permissions)

    async def disable_user(self, user_id: str) -> UserRecord:
        """Disable the account: logins are refused and every token and session of the user
        is revoked (refused on its next use, through every instance's cache)."""
        return await self._accounts.set_active(user_id, False)

    async def enable_user(self, user_id: str) -> UserRecord:
        """Enable a disabled account again (its old tokens and sessions stay revoked)."""
        return await self._accounts.set_active(user_id, True)

    async def set_password(
        self, user_id: str, password: str, *, keep: str | None = None
    ) -> UserRecord:
        """Set a new password without the old one (an admin reset). Every token and session
        of the user is revoked, except ``keep`` (an access token or session id) if given.
        Raises ``UnknownUser``, or ``InvalidInput`` when the password breaks the rules of
        :func:`authmw.passwords.check_password_rules`."""
        return await self._accounts.set_password(user_id, password, keep)

    async def change_password(
        self, user_id: str, old_password: str, new_password: str, *, keep: str | None = None
    ) -> UserRecord:
        """The user changes their password: ``old_password`` is checked as a login (wrong
        guesses count toward the lockout, raising what :meth:`check_password` raises), then
        as :meth:`set_password`. Pass the current session id or access token as ``keep`` to
        stay logged in there."""
        return await self._accounts.change_password(user_id, old_password, new_password, keep)

    async def delete_user(self, user_id: str) -> int:
        """Delete the account with its tokens, sessions and lockout state; return how many
        live tokens and sessions went. The audit log keeps its history. ``UnknownUser`` when
        there is no such user."""
        return await self._accounts.delete(user_id)

    async def unlock_user(self, user_id: str) -> None:
        """Lift every lockout and slow-down of the user and forget its failure counts and
        known addresses (its next login starts afresh, from any address; see
        :mod:`authmw._throttle`). ``UnknownUser`` when there is no such user."""
        await self._accounts.unlock(user_id)

    # -- per-session and per-token control -------------------------------------------------

    async def list_sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions (created, last seen, address, user agent), oldest first."""
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        return await self.devices.sessions(user_id)

    async def list_tokens(self, user_id: str) -> list[TokenInfo]:
        """The user's logged-in bearer clients, one per login (refresh family), oldest first."""
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        return await self.devices.tokens(user_id)

    async def revoke_session(self, session_id: str, *, user_id: str | None = None) -> bool:
        """End the session whose public id (``SessionInfo.session_id``) is ``session_id``;
        with ``user_id``, only if it is that user's. True when a live session ended."""
        if user_id is not None:
            user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        return await self.devices.revoke_session(session_id, user_id)

    async def revoke_token(self, token_id: str, *, user_id: str | None = None) -> bool:
        """Revoke the token whose public id (``TokenInfo.token_id``) is ``token_id`` with its
        refresh family (the client's refresh token stops working too); with ``user_id``, only
        if it is that user's. True when a live token was revoked."""
        if user_id is not None:
            user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        return await self.devices.revoke_token(token_id, user_id)

    async def logout_everywhere_else(
        self,
        user_id: str,
        *,
        keep_session: str | None = None,
        keep_token: str | None = None,
    ) -> int:
        """End every session and token of the user but the current one: ``keep_session`` (a
        session's public id, ``AuthUser.session_record.session_id``) and/or ``keep_token`` (a
        token id, ``AuthUser.token.token_id``, whose refresh family stays). Returns how many
        were live. With neither, every session and token of the user ends."""
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        return await self.devices.logout_everywhere_else(user_id, keep_session, keep_token)

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
        return await self._issue(user, ip_address, user_agent)

    async def _issue(
        self, user: UserRecord, ip_address: str | None, user_agent: str | None
    ) -> AuthToken:
        # A new login: its time is the first token's creation.
        login = _Login(None, self._client_text(ip_address), self._client_text(user_agent))
        token = self._mint(user, None, login)
        await self.storage.store_token(token)
        await self._audit("token.issue", True, user.user_id, token_id=token.token_id)
        return token

    def _mint(self, user: UserRecord, family_id: str | None, login: _Login) -> AuthToken:
        """A new token pair for ``user``, carrying the details of the login it descends from."""
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
            login_at=login.at or now,
            ip_address=login.ip_address,
            user_agent=login.user_agent,
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
        return await self._issue(user, ip_address, user_agent)

    async def verify(self, access_token: str) -> AuthToken:
        """The stored record of a valid access token.

        Raises ``InvalidToken`` with ``reason`` malformed, forged, unknown, expired or revoked.
        Junk and forged tokens are refused without touching storage.
        """
        # Parsed first: junk and forged tokens are refused even when storage cannot be opened.
        # The memo first: a token that passed the full check before needs no hashing.
        token_id: str | None = self._verified.get(access_token)
        verifier: str | None = None
        if token_id is None:
            token_id, verifier = self._codec.parse(access_token, ACCESS)
        if not self._open:
            await self._reopen()
        nowait = self._nowait
        if nowait is None:
            if self._owner_reads is not None:
                stored, owner = await self._owner_reads.get_token_and_user(token_id)
                token = self._accept_token(access_token, token_id, verifier, stored)
                return self._follow_user(token, owner)
            token = self._accept_token(
                access_token, token_id, verifier, await self.storage.get_token(token_id)
            )
            return self._follow_user(token, await self.storage.get_user(token.user_id))
        # A cache hit is a plain call: no coroutine to create and await.
        record = nowait.get_token_nowait(token_id)
        if record is MISS:
            record = await self.storage.get_token(token_id)
        token = self._accept_token(access_token, token_id, verifier, record)
        # The live account check, remembered (see _follow_nowait), inlined for the cache hit.
        memo = self._followed.get(token_id)
        if memo is not None and memo[0] is token and memo[1] == nowait.user_generation:
            return memo[2]
        followed = self._follow_nowait(nowait, token)
        if followed is MISS:
            return self._follow_user(token, await self.storage.get_user(token.user_id))
        return followed

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
        # As in verify: the memo, then the remembered account check, inlined (hot path).
        token_id: str | None = self._verified.get(access_token)
        verifier: str | None = None
        if token_id is None:
            token_id, verifier = self._codec.parse(access_token, ACCESS)
        record = nowait.get_token_nowait(token_id)
        if record is MISS:
            return None
        token = self._accept_token(access_token, token_id, verifier, record)
        memo = self._followed.get(token_id)
        if memo is not None and memo[0] is token and memo[1] == nowait.user_generation:
            return memo[2]
        followed = self._follow_nowait(nowait, token)
        return None if followed is MISS else followed

    @property
    def can_answer_nowait(self) -> bool:
        """True when the storage can answer from memory, so the ``*_nowait`` methods may
        return answers; False when they always return None."""
        return self._nowait is not None

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

    def _follow_nowait(
        self, nowait: SupportsNowaitReads, token: AuthToken
    ) -> AuthToken | Literal[Miss.MISS]:
        """:meth:`_follow_user` from memory: the remembered answer while the record and the
        storage's ``user_generation`` are unchanged, else from the user read from memory;
        ``MISS`` when the user is not in memory. (While a cache's invalidation channel is
        down, an answer can outlive its user entry by up to the token entry's ``ttl``.)"""
        generation = nowait.user_generation
        memo = self._followed.get(token.token_id)
        if memo is not None and memo[0] is token and memo[1] == generation:
            return memo[2]
        user = nowait.get_user_nowait(token.user_id)
        if user is MISS:
            return MISS
        followed = self._follow_user(token, user)
        if self._verified_max:
            followed_map = self._followed
            if len(followed_map) >= self._verified_max:
                # Other threads (verify_nowait) may change the dict meanwhile, as in _remember.
                with contextlib.suppress(RuntimeError, StopIteration):
                    followed_map.pop(next(iter(followed_map)), None)
            followed_map[token.token_id] = (token, generation, followed)
        return followed

    @staticmethod
    def _follow_user(token: AuthToken, user: UserRecord | None) -> AuthToken:
        """The token as its user's account stands now (both verify paths): refused once the
        user is disabled or deleted, with the user's current roles and permissions when they
        changed since it was issued. The stored record is left as it is: writing it back
        could undo a revocation that raced with this read."""
        if user is None or not user.is_active:
            raise InvalidToken("revoked", token_id=token.token_id)
        if user.roles != token.roles or user.permissions != token.permissions:
            return replace(token, roles=user.roles, permissions=user.permissions)
        return token

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
        # The storage marks the family (refusing its rotations) before revoking its members, so
        # a refresh of the newest token racing this cannot hand out a pair that stays live. The
        # mark lasts as long as any token of the family can: one minted by a rotation now.
        until = now + max(self._access_ttl, self._refresh_ttl)
        await self.storage.revoke_token_family(token.user_id, token.family_id, until)

    async def refresh(self, refresh_token: str) -> AuthToken:
        """Exchange a refresh token for a new access and refresh token (rotation).

        The old pair stops working. Presenting an already-rotated refresh token raises
        ``RefreshTokenReused`` and revokes every token of its family; other refusals raise
        ``InvalidToken``.
        """
        if not self._open:
            await self._reopen()
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
        login = _Login(record.login_at or record.created_at, record.ip_address, record.user_agent)
        new = self._mint(user, record.family_id, login)
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
            await self._reopen()
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

    async def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every token and session of a user; return how many were live.

        ``keep``: an access token or session id of the user to spare (the caller's own, for
        "log out everywhere else"); ``InvalidToken`` if it is malformed or forged.
        """
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        if keep is None:
            count = await self.storage.delete_user_tokens(user_id)
            count += await self.storage.delete_user_sessions(user_id)
        else:
            count = await self._revoke_others(user_id, keep)
        await self._audit("token.revoke", True, user_id, scope="user", revoked=count)
        return count

    async def _revoke_others(self, user_id: str, keep: str) -> int:
        """Delete every credential of the user but ``keep``, one by one (each delete goes
        through the storage's cache, which announces it)."""
        is_session = keep.startswith(SESSION) if isinstance(keep, str) else False
        kept, _ = self._codec.parse(keep, SESSION if is_session else ACCESS)
        storage, count = self.storage, 0
        for token in await storage.list_user_tokens(user_id):
            if token.token_id != kept and await storage.delete_token(token.token_id):
                count += not token.is_revoked
        for session in await storage.list_user_sessions(user_id):
            if session.session_id != kept and await storage.delete_session(session.session_id):
                count += 1
        return count

    # -- sessions --------------------------------------------------------------------------

    async def create_session(
        self,
        user_id: str,
        data: dict[str, Any] | None = None,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[str, SessionData]:
        """Start a server-side session; return the session id to hand out and its record.

        Roles and permissions are copied from the user record when the user exists. ``data``
        must be JSON-serialisable (``TypeError`` otherwise). The client's address and user
        agent are kept (cleaned, as the audit log keeps them) for :meth:`list_sessions`.
        """
        user_id = self._check_user_id(user_id)
        if not self._open:
            await self._reopen()
        user = await self.storage.get_user(user_id)
        token, session = self._mint_session(
            user_id,
            data,
            self._idle,
            self._absolute,
            roles=user.roles if user else (),
            permissions=user.permissions if user else (),
            ip_address=self._client_text(ip_address),
            user_agent=self._client_text(user_agent),
        )
        await self.storage.store_session(session)
        await self._audit("session.create", True, user_id, session_id=session.session_id)
        return token, session

    def _mint_session(
        self,
        user_id: str | None,
        data: dict[str, Any] | None,
        idle: timedelta,
        absolute_ttl: timedelta,
        **extra: Any,
    ) -> tuple[str, SessionData]:
        """A new session id and its record (not stored): a user's or a visitor's."""
        minted = self._codec.mint(SESSION)
        now = utcnow()
        absolute = now + absolute_ttl
        return minted.token, SessionData(
            session_id=minted.selector,
            user_id=user_id,
            verifier_digest=minted.verifier_digest,
            created_at=now,
            last_accessed=now,
            expires_at=min(now + idle, absolute),
            absolute_expires_at=absolute,
            data=dict(data or {}),
            **extra,
        )

    def new_anonymous_session(self, data: dict[str, Any] | None = None) -> tuple[str, SessionData]:
        """A session for a visitor who is not logged in, minted but not stored yet: its id
        (and so its CSRF token) is known at once, the storage write waits for
        :meth:`store_anonymous_session` (the middleware does it as the response starts).

        It has no user (``user_id`` None), no roles, and the anonymous timeouts. Not audited:
        a visitor's cart is not a security event, and bots would flood the log.
        """
        return self._mint_session(None, data, self._anon_idle, self._anon_absolute)

    async def store_anonymous_session(
        self, session: SessionData, data: dict[str, Any]
    ) -> SessionData:
        """Store a session of :meth:`new_anonymous_session` with ``data``; return the record.

        Raises ``SessionTooLarge`` when the data's JSON is above
        ``anonymous_session_max_bytes`` (nothing is stored), ``TypeError`` for data that is
        not JSON-serialisable.
        """
        self._check_anonymous_size(data)
        if not self._open:
            await self.open()
        stored = replace(session, data=dict(data))
        await self.storage.store_session(stored)
        return stored

    async def create_anonymous_session(
        self, data: dict[str, Any] | None = None
    ) -> tuple[str, SessionData]:
        """:meth:`new_anonymous_session` and :meth:`store_anonymous_session` in one call."""
        session_id, session = self.new_anonymous_session(data)
        return session_id, await self.store_anonymous_session(session, session.data)

    def _check_anonymous_size(self, data: dict[str, Any]) -> None:
        """The bound on what a visitor who never logged in may keep in storage."""
        limit = self.config.anonymous_session_max_bytes
        size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise SessionTooLarge("session data", f"{size} bytes of JSON, above {limit}")

    async def get_session(self, session_id: str) -> SessionData:
        """The live session behind a session id, its idle deadline moved forward.

        ``last_accessed`` is written at most once per ``session_touch_interval``. Raises
        ``InvalidToken`` when the id is malformed, forged, unknown or expired.
        """
        selector, verifier = self._session_key(session_id)
        if not self._open:
            await self._reopen()
        account: UserRecord | Literal[Miss.MISS] | None = MISS
        if self._owner_reads is not None:
            found, account = await self._owner_reads.get_session_and_user(selector)
        else:
            found = await self.storage.get_session(selector)
        session = self._accept_session(session_id, selector, verifier, found)
        owner = session.user_id
        if owner is not None:  # an anonymous visitor's session has no account to follow
            if account is MISS:
                nowait = self._nowait
                account = MISS if nowait is None else nowait.get_user_nowait(owner)
            if account is MISS:
                account = await self.storage.get_user(owner)
            session = self._follow_user_session(session, account)
        now = utcnow()
        users = owner is not None
        if now - session.last_accessed >= (self._touch_every if users else self._anon_touch_every):
            expires = min(
                now + (self._idle if users else self._anon_idle), session.absolute_expires_at
            )
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
        owner = session.user_id
        every = self._touch_every if owner is not None else self._anon_touch_every
        if utcnow() - session.last_accessed >= every:
            return None  # the touch is a write: get_session does it
        if owner is None:
            return session  # anonymous: no account to follow
        account = nowait.get_user_nowait(owner)
        if account is MISS:
            return None
        return self._follow_user_session(session, account)

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

    @staticmethod
    def _follow_user_session(session: SessionData, user: UserRecord | None) -> SessionData:
        """:meth:`_follow_user` for sessions. A session may belong to no registered user
        (``create_session`` allows it): it stands while it carries no roles or permissions;
        one that does lost them with its account, and is refused."""
        if user is None:
            if session.roles or session.permissions:
                raise InvalidToken("revoked", token_id=session.session_id)
            return session
        if not user.is_active:
            raise InvalidToken("revoked", token_id=session.session_id)
        if user.roles != session.roles or user.permissions != session.permissions:
            return replace(session, roles=user.roles, permissions=user.permissions)
        return session

    async def save_session(self, session: SessionData, data: dict[str, Any]) -> SessionData:
        """Store new data for a session; return the updated record.

        Raises ``InvalidToken`` (reason ``unknown``) when the session no longer exists (ended
        by logout or ``revoke_user``, or expired) while the caller held it: the save never
        brings it back; ``SessionTooLarge`` for an anonymous session's data above the bound.
        """
        if session.user_id is None:
            self._check_anonymous_size(data)
        if not self._open:
            await self._reopen()
        updated = replace(session, data=dict(data))
        if not await self.storage.update_session(updated):
            raise InvalidToken("unknown", token_id=session.session_id)
        return updated

    async def destroy_session(self, session_id: str) -> bool:
        """End a session; True when a live one was removed. Forged ids raise ``InvalidToken``."""
        if not self._open:
            await self._reopen()
        selector, verifier = self._codec.parse(session_id, SESSION)
        session = await self.storage.get_session(selector)
        if session is None or not verifier_matches(verifier, session.verifier_digest):
            return False
        self._verified_sessions.pop(session_id, None)
        await self._audit("session.destroy", True, session.user_id, session_id=selector)
        return await self.storage.delete_session(selector)


def _backend(storage: AuthStorage) -> str:
    """A short backend name for ``StorageUnavailable`` (``redis`` for ``RedisStorage``)."""
    return type(storage).__name__.removesuffix("Storage").lower() or "storage"


def _open_failed_message(exc: AuthmwError, retry_every: float) -> str:
    """The ERROR line for a storage that cannot be opened, with what to do about it."""
    if isinstance(exc, ConfigurationError):
        return (
            f"authmw storage cannot be opened, its settings are refused: {exc}. Fix: correct "
            f"the storage URL or the server (credentials, database name, user, TLS); requests "
            f"that need the storage answer 503 and opening is retried every {retry_every:g} s"
        )
    return (
        f"authmw storage cannot be opened: {exc}. Requests that need the storage answer 503 "
        f"until it is reachable; opening is retried every {retry_every:g} s"
    )
