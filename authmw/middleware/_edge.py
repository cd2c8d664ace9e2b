"""What both middlewares share: credentials in, principal or refusal out, cookies on the way back.

The ASGI and WSGI fronts only translate their protocol to these calls, so the behaviour at the
edge (DESIGN.md's table) is written once.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature
from starlette.authentication import BaseUser, UnauthenticatedUser
from starlette.requests import cookie_parser

from ..errors import InvalidToken, MalformedAuthorization, StorageUnavailable
from ..framework import AuthFramework
from ..models import SessionData
from ..tokens import parse_authorization
from ._cookies import SessionCookieCodec, data_fingerprint
from .principal import AuthUser

log = logging.getLogger("authmw.middleware")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_ANONYMOUS = UnauthenticatedUser()


@dataclass(frozen=True, slots=True)
class Refusal:
    """A response the middleware sends instead of calling the app."""

    status: int
    body: dict[str, str]
    headers: tuple[tuple[str, str], ...] = ()
    ws_close_code: int = 1008

    def body_bytes(self) -> bytes:
        """The JSON body."""
        return json.dumps(self.body).encode()


class RequestState:
    """Per-request authentication state, kept on the scope/environ for login and logout."""

    # A plain slotted class rather than a dataclass: one is built per request.
    __slots__ = ("delete_cookie", "edge", "fingerprint", "session", "session_id",
                 "session_record", "set_cookie", "user")

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.user: BaseUser = _ANONYMOUS
        self.session: dict[str, Any] = {}
        self.session_record: SessionData | None = None
        self.session_id: str | None = None
        self.fingerprint: str | None = None
        self.set_cookie = False
        self.delete_cookie = False


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Middleware options shared by the ASGI and WSGI fronts."""

    bearer: bool = True
    session_cookie: bool = True
    csrf: bool = True
    csrf_header: str = "X-CSRF-Token"
    csrf_cookie: str = "authmw_csrf"
    exclude_paths: tuple[str, ...] = ()
    retry_after: int = 5


class Edge:
    """Authenticates one request's credentials through an :class:`AuthFramework`."""

    def __init__(self, auth: AuthFramework, settings: EdgeSettings) -> None:
        self.auth = auth
        self.settings = settings
        self.cookies = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie,
                                          settings.csrf_cookie)
        self.cookie_name = auth.config.cookie.name
        self._excluded = tuple(p.rstrip("/") for p in settings.exclude_paths)
        self._unavailable = Refusal(
            503, {"error": "service_unavailable",
                  "error_description": "authentication storage is unavailable"},
            (("retry-after", str(settings.retry_after)),), ws_close_code=1013)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` bypasses authentication (``exclude_paths``, prefix-aware)."""
        return any(path == p or path.startswith(p + "/") for p in self._excluded)

    @staticmethod
    def _bearer_refusal(status: int, error: str, description: str) -> Refusal:
        challenge = f'Bearer error="{error}", error_description="{description}"'
        return Refusal(status, {"error": error, "error_description": description},
                       (("www-authenticate", challenge),))

    async def authenticate(
        self, method: str, authorization: bytes | None, cookie_header: str | None,
        csrf_header: str | None, *, websocket: bool = False,
    ) -> RequestState | Refusal:
        """The request's principal, or the response that refuses it."""
        state = RequestState(self)
        try:
            if self.settings.bearer and authorization is not None:
                token = parse_authorization(authorization)
                if token is not None:
                    state.user = AuthUser.from_token(await self.auth.verify(token))
                    return state
            if self.settings.session_cookie and cookie_header:
                return await self._from_cookie(state, method, cookie_header, csrf_header,
                                               websocket)
        except MalformedAuthorization as exc:
            return self._bearer_refusal(400, "invalid_request", exc.problem)
        except InvalidToken as exc:
            return self._bearer_refusal(401, "invalid_token", f"the access token is {exc.reason}")
        except StorageUnavailable as exc:
            log.warning("refusing request with 503: %s", exc)
            return self._unavailable
        return state

    def authenticate_nowait(
        self, method: str, authorization: bytes | None, cookie_header: str | None,
        csrf_header: str | None,
    ) -> RequestState | Refusal | None:
        """:meth:`authenticate` when no I/O is needed (a cached token or session, or a refusal
        decided in-process), callable from any thread; None when only :meth:`authenticate`
        can answer (always, unless the storage answers from memory)."""
        if not self.auth.can_answer_nowait:
            return None
        state = RequestState(self)
        try:
            if self.settings.bearer and authorization is not None:
                token = parse_authorization(authorization)
                if token is not None:
                    record = self.auth.verify_nowait(token)
                    if record is None:
                        return None
                    state.user = AuthUser.from_token(record)
                    return state
            if self.settings.session_cookie and cookie_header:
                cookies = cookie_parser(cookie_header)
                raw = cookies.get(self.cookie_name)
                if not raw:
                    return state
                try:
                    session_id, resign = self.cookies.unsign(raw)
                    session = self.auth.get_session_nowait(session_id)
                except (BadSignature, InvalidToken):
                    state.delete_cookie = True
                    return state
                if session is None:
                    return None
                return self._with_session(state, method, cookies, csrf_header, websocket=False,
                                          session_id=session_id, resign=resign, record=session)
        except MalformedAuthorization as exc:
            return self._bearer_refusal(400, "invalid_request", exc.problem)
        except InvalidToken as exc:
            return self._bearer_refusal(401, "invalid_token", f"the access token is {exc.reason}")
        return state

    async def _from_cookie(
        self, state: RequestState, method: str, cookie_header: str, csrf_header: str | None,
        websocket: bool,
    ) -> RequestState | Refusal:
        cookies = cookie_parser(cookie_header)
        raw = cookies.get(self.cookie_name)
        if not raw:
            return state
        try:
            session_id, resign = self.cookies.unsign(raw)
            record = await self.auth.get_session(session_id)
        except (BadSignature, InvalidToken):
            # Tampered, expired or unknown: serve the request anonymously, drop the cookie.
            state.delete_cookie = True
            return state
        return self._with_session(state, method, cookies, csrf_header, websocket=websocket,
                                  session_id=session_id, resign=resign, record=record)

    def _with_session(
        self, state: RequestState, method: str, cookies: dict[str, str],
        csrf_header: str | None, *, websocket: bool, session_id: str, resign: bool,
        record: SessionData,
    ) -> RequestState | Refusal:
        """The CSRF check, then the session adopted as the request's principal."""
        if self.settings.csrf and not websocket and method not in SAFE_METHODS:
            expected = self.cookies.csrf_token(session_id)
            echoed = cookies.get(self.settings.csrf_cookie, "")
            if not (csrf_header and hmac.compare_digest(csrf_header, echoed)
                    and hmac.compare_digest(csrf_header, expected)):
                return Refusal(403, {"error": "csrf_failed", "error_description":
                                     f"CSRF token missing or incorrect: send the "
                                     f"{self.settings.csrf_cookie} cookie's value in the "
                                     f"{self.settings.csrf_header} header"})
        self._adopt(state, session_id, record)
        state.set_cookie = resign
        return state

    @staticmethod
    def _adopt(state: RequestState, session_id: str, record: SessionData) -> None:
        state.user = AuthUser.from_session(record)
        state.session_id = session_id
        state.session_record = record
        state.session = record.data
        state.fingerprint = data_fingerprint(record.data)

    async def finish(self, state: RequestState) -> list[str]:
        """Save a changed session and return the ``Set-Cookie`` values for the response.

        Raises ``StorageUnavailable`` when a change cannot be saved; the caller answers 503.
        """
        csrf = self.settings.csrf
        if state.session_record is not None and state.session_id is not None:
            if data_fingerprint(state.session) != state.fingerprint:
                state.session_record = await self.auth.save_session(state.session_record,
                                                                    state.session)
                state.fingerprint = data_fingerprint(state.session)
            if state.set_cookie:
                return self.cookies.set_headers(state.session_id, csrf=csrf)
            return []
        if state.delete_cookie:
            return self.cookies.delete_headers(csrf=csrf)
        return []

    def unavailable(self) -> Refusal:
        """The 503 refusal."""
        return self._unavailable

    async def login(
        self, state: RequestState, user_id: str, password: str, *, ip_address: str | None,
        user_agent: str | None,
    ) -> AuthUser:
        """Check a password and start a fresh session (a new id even if one existed).

        Data of a session of the same user carries over; another user's is dropped.
        """
        user = await self.auth.check_password(user_id, password, ip_address=ip_address,
                                              user_agent=user_agent)
        carry = dict(state.session) if (state.session_record is not None
                                        and state.session_record.user_id == user.user_id) else {}
        if state.session_id is not None:
            await self.auth.destroy_session(state.session_id)
        session_id, record = await self.auth.create_session(user.user_id, carry)
        self._adopt(state, session_id, record)
        state.set_cookie, state.delete_cookie = True, False
        assert isinstance(state.user, AuthUser)
        return state.user

    async def logout(self, state: RequestState) -> None:
        """End the current session server-side and remove the cookie."""
        if state.session_id is not None:
            await self.auth.destroy_session(state.session_id)
        state.user = _ANONYMOUS
        state.session = {}
        state.session_record = state.session_id = state.fingerprint = None
        state.set_cookie, state.delete_cookie = False, True
