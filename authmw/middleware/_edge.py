"""The one edge decision both middlewares call: credentials in, principal or refusal out.

The ASGI and WSGI fronts only translate their protocol to these calls, so the behaviour at the
edge (DESIGN.md's table) is written once. A request goes through three steps: :meth:`Edge._read`
finds its credentials (a bearer token, or a signed session cookie), the framework looks the
record up, and :meth:`Edge._conclude` (or :meth:`Edge._refused`, when the look-up raised) turns
the outcome into the request's principal or the response that refuses it. The async path
(:meth:`Edge.authenticate`) and the synchronous fast path (:meth:`Edge.authenticate_nowait`)
differ only in the middle step: ``await`` the look-up, or ask for an in-memory answer and give
up without one. On the way back, :meth:`Edge.finish` saves a changed session and gives the
cookies to set (:meth:`Edge.finish_nowait` does so when there is nothing to save);
:meth:`Edge.login` and :meth:`Edge.logout` serve both fronts' ``login``/``logout``.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import logging
import urllib.parse
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any, Final

from itsdangerous import BadSignature
from starlette.requests import cookie_parser

from .._outage import OutageLog
from ..errors import (
    ConfigurationError,
    CsrfFailed,
    InvalidToken,
    MalformedAuthorization,
    SessionTooLarge,
    StorageUnavailable,
)
from ..framework import AuthFramework
from ..models import AuthToken, SessionData, UserRecord
from ..tokens import parse_authorization
from ._client import TrustedProxies
from ._cookies import SessionCookieCodec, data_fingerprint
from ._options import MiddlewareOptions, parse_host, parse_origin
from .principal import ANONYMOUS, AnonymousUser, AuthUser

log = logging.getLogger("authmw.middleware")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_ANONYMOUS = ANONYMOUS

# What Edge._read found; plain ints, compared on every request.
_NOTHING: Final = 0  # no credentials to look up (none sent, or a tampered cookie)
_BEARER: Final = 1  # RequestState.credential is an access token
_SESSION: Final = 2  # RequestState.credential is a session id, .cookies the request's cookies

# What a look-up may raise that the edge answers for (see Edge._refused).
_ANSWERED = (InvalidToken, MalformedAuthorization, StorageUnavailable)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A response the middleware sends instead of calling the app."""

    status: int
    body: dict[str, str]
    headers: tuple[tuple[str, str], ...] = ()
    ws_close_code: int = 1008
    html: bool = False  # answer with an HTML page (the client prefers HTML) instead of JSON

    def body_bytes(self) -> bytes:
        """The JSON body, or the HTML page when :attr:`html`."""
        if self.html:
            return html_page(self.status, self.body.get("error_description", "")).encode()
        return json.dumps(self.body).encode()

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` of :meth:`body_bytes`."""
        return "text/html; charset=utf-8" if self.html else "application/json"

    def negotiated(self, accept: str | None) -> Refusal:
        """This refusal for a request that sent ``accept``: an HTML page for browsers
        (:func:`prefers_html`), else itself. Only refusals pay for the negotiation."""
        return replace(self, html=True) if prefers_html(accept) else self


class RequestState:
    """Per-request authentication state, kept on the scope/environ for login and logout.

    ``credential``, ``resign`` and ``cookies`` are what :meth:`Edge._read` found; the other
    fields are the outcome, which :meth:`Edge.finish`, ``login`` and ``logout`` work from.
    """

    # A plain slotted class rather than a dataclass: one is built per request.
    __slots__ = (
        "cookies",
        "credential",
        "csrf_verified",
        "delete_cookie",
        "edge",
        "fingerprint",
        "resign",
        "session",
        "session_id",
        "session_record",
        "set_cookie",
        "unsaved",
        "user",
    )

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.user: AuthUser | AnonymousUser = _ANONYMOUS
        self.session: dict[str, Any] = {}
        self.session_record: SessionData | None = None
        self.session_id: str | None = None
        self.fingerprint: str | None = None
        self.set_cookie = False
        self.delete_cookie = False
        self.credential = ""
        self.resign = False
        self.cookies: dict[str, str] | None = None
        # The request's CSRF token was checked and matched its session (login CSRF reads it).
        self.csrf_verified = False
        # An anonymous session minted during the request, not in storage yet (finish stores it).
        self.unsaved = False


class Edge:
    """Authenticates one request's credentials through an :class:`AuthFramework`.

    Raises ``ConfigurationError`` when the CSRF cookie would share the session cookie's name.
    """

    def __init__(self, auth: AuthFramework, options: MiddlewareOptions) -> None:
        self.auth = auth
        self.options = options
        self.cookies = SessionCookieCodec(
            auth.config.signing_keys, auth.config.cookie, options.csrf_cookie
        )
        self.cookie_name = auth.config.cookie.name
        self.outage_log = OutageLog(log)
        if options.csrf_cookie == self.cookie_name:
            raise ConfigurationError(
                f"csrf_cookie {options.csrf_cookie!r} is the session cookie's name"
            )
        # Read on every request: plain attributes, not a trip through the options.
        self._bearer = options.bearer
        self._session_cookie = options.session_cookie
        self._csrf = options.csrf
        self._excluded = tuple(p.rstrip("/") for p in options.exclude_paths)
        self._anonymous = options.anonymous_sessions and options.session_cookie
        self._csrf_field = options.csrf_field
        self._answers_nowait = auth.can_answer_nowait
        # Authorization header -> (its token, the record verify returned, that record's
        # principal), for tokens that verified. A repeat request skips parsing the header and
        # building the principal while verify returns the very record it did (it does until
        # the record or its user changes: see AuthFramework.verify); verify itself still runs
        # on every request, so a revocation takes effect at once. Bounded like the
        # framework's own memo of verified tokens.
        self._bearers: dict[bytes, tuple[str, AuthToken, AuthUser]] = {}
        self._memo_max = auth.config.verified_token_cache
        self.max_form_bytes = options.max_form_bytes
        self._origins = frozenset(parse_origin(o) for o in options.websocket_origins)
        self.proxies = TrustedProxies(options.trusted_proxies)
        self._unavailable = Refusal(
            503,
            {
                "error": "service_unavailable",
                "error_description": "authentication storage is unavailable",
            },
            (("retry-after", str(options.retry_after)),),
            ws_close_code=1013,
        )
        self._csrf_failed = Refusal(
            403,
            {
                "error": "csrf_failed",
                "error_description": f"CSRF token missing or incorrect: send the "
                f"{options.csrf_cookie} cookie's value in the "
                f"{options.csrf_header} header or the {options.csrf_field} form field",
            },
        )
        self._form_too_large = Refusal(
            413,
            {
                "error": "payload_too_large",
                "error_description": f"a form whose CSRF token is read from its body may "
                f"have at most {options.max_form_bytes} bytes; send the token in the "
                f"{options.csrf_header} header instead",
            },
        )
        self._origin_refused = Refusal(
            403,
            {
                "error": "origin_refused",
                "error_description": "a websocket authenticated by the session cookie must "
                "come from the site's own origin or one of websocket_origins",
            },
        )

    def excluded(self, path: str) -> bool:
        """Whether ``path`` bypasses authentication (``exclude_paths``, prefix-aware)."""
        return any(path == p or path.startswith(p + "/") for p in self._excluded)

    async def authenticate(
        self,
        method: str,
        authorization: bytes | None,
        cookie_header: str | None,
        csrf_header: str | None,
        *,
        websocket: bool = False,
        origin: str | None = None,
        host: str | None = None,
    ) -> RequestState | Refusal:
        """The request's principal, or the response that refuses it.

        For a websocket handshake give its ``Origin`` and ``Host`` headers: a session cookie
        counts only from an allowed origin (:meth:`origin_allowed`)."""
        state = RequestState(self)
        kind = _NOTHING
        try:
            kind = self._read(state, authorization, cookie_header)
            if kind == _BEARER:
                token = await self.auth.verify(state.credential)
                state.user = self._principal(authorization, state.credential, token)
                return state
            if kind == _SESSION:
                if websocket and not self.origin_allowed(origin, host):
                    # Cross-site websocket hijacking: a browser sends the cookie whoever's
                    # page opens the socket, and a handshake carries no CSRF token; its Origin
                    # says whose page it is. Refused before the look-up: no I/O, no hint
                    # whether the session is alive.
                    return self._origin_refused
                record = await self.auth.get_session(state.credential)
            else:
                return state
        except _ANSWERED as exc:
            return self._refused(state, kind, exc)
        return self._conclude(state, record, method, csrf_header, websocket)

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Whether a page of ``origin`` may use the session cookie: the request's own host and
        port (the ``Host`` header; without a port, the default of the origin's
        scheme) or one of ``websocket_origins``. No ``Origin`` (or ``null``) is not allowed."""
        parsed = None if origin is None else parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self._origins:
            return True
        # The page's scheme tells the default port of a Host without one (a proxy in front
        # may have ended TLS, so the request's own scheme would not).
        own = None if host is None else parse_host(host, parsed[0])
        return own is not None and parsed[1:] == own

    def authenticate_nowait(
        self,
        method: str,
        authorization: bytes | None,
        cookie_header: str | None,
        csrf_header: str | None,
    ) -> RequestState | Refusal | None:
        """:meth:`authenticate` when no I/O is needed (a cached token or session, or a refusal
        decided in-process), callable from any thread; None when only :meth:`authenticate`
        can answer (always, unless the storage answers from memory)."""
        if not self._answers_nowait:
            return None
        auth = self.auth
        state = RequestState(self)
        kind = _NOTHING
        try:
            kind = self._read(state, authorization, cookie_header)
            if kind == _BEARER:
                token = auth.verify_nowait(state.credential)
                if token is None:
                    return None
                state.user = self._principal(authorization, state.credential, token)
                return state
            if kind != _SESSION:
                return state
            record = auth.get_session_nowait(state.credential)
        except _ANSWERED as exc:
            return self._refused(state, kind, exc)
        if record is None:
            return None
        return self._conclude(state, record, method, csrf_header, False)

    def _read(
        self, state: RequestState, authorization: bytes | None, cookie_header: str | None
    ) -> int:
        """Which credentials the request carries (``_BEARER``, ``_SESSION`` or ``_NOTHING``),
        noted on ``state``. A tampered cookie is nothing, and marked for deletion.

        Raises ``MalformedAuthorization`` for a bearer header that breaks RFC 6750.
        """
        if authorization is not None and self._bearer:
            known = self._bearers.get(authorization)
            token = parse_authorization(authorization) if known is None else known[0]
            if token is not None:
                state.credential = token
                return _BEARER
        if cookie_header and self._session_cookie:
            cookies = cookie_parser(cookie_header)
            raw = cookies.get(self.cookie_name)
            if not raw and "," in cookie_header:
                # An HTTP/2 client may send each cookie as its own field (RFC 9113 8.2.3),
                # and WSGI servers (werkzeug, gunicorn, hypercorn's WSGI) join repeated fields
                # with a comma instead of "; ". Our cookies' values never hold a comma, so a
                # comma read as a separator finds them without changing any value we use.
                cookies = cookie_parser(cookie_header.replace(",", ";"))
                raw = cookies.get(self.cookie_name)
            if raw:
                try:
                    state.credential, state.resign = self.cookies.unsign(raw)
                except BadSignature:
                    # Tampered: serve the request anonymously, drop the cookie.
                    state.delete_cookie = True
                    return _NOTHING
                state.cookies = cookies
                return _SESSION
        return _NOTHING

    def _principal(self, authorization: bytes | None, token: str, record: AuthToken) -> AuthUser:
        """The principal of a verified token: the one built for ``record`` when verify
        returned that very record for this header before (see ``_bearers``)."""
        if authorization is None or not self._answers_nowait:
            # A storage read without a memory path returns a new record every time: nothing
            # to reuse, so nothing is kept. (No header: not reached, a token comes from one.)
            return AuthUser.from_token(record)
        bearers = self._bearers
        known = bearers.get(authorization)
        if known is not None and known[1] is record:
            return known[2]
        user = AuthUser.from_token(record)
        _remember(bearers, authorization, (token, record, user), self._memo_max)
        return user

    def _conclude(
        self,
        state: RequestState,
        record: SessionData,
        method: str,
        csrf_header: str | None,
        websocket: bool,
    ) -> RequestState | Refusal:
        """The principal behind a looked-up session, after the CSRF check."""
        session_id = state.credential
        # Every method but the four safe ones needs the token, whatever its spelling:
        # methods are case-sensitive, so "post" or "PROPFIND" are unsafe too.
        if self._csrf and not websocket and method not in SAFE_METHODS:
            echoed = state.cookies.get(self.options.csrf_cookie, "") if state.cookies else ""
            # Tokens are hex: anything else is refused before compare_digest, which raises
            # TypeError for non-ASCII text.
            if not (csrf_header and csrf_header.isascii() and echoed.isascii()):
                return self._csrf_failed
            key = (
                self.cookies.csrf_key(session_id, csrf_header)
                if hmac.compare_digest(csrf_header, echoed)
                else None
            )
            if key is None:
                return self._csrf_failed
            state.csrf_verified = True
            if key:
                # Derived under a fallback key: send the current key's token back.
                state.resign = True
        self._adopt(state, session_id, record)
        state.set_cookie = state.resign
        return state

    def _refused(self, state: RequestState, kind: int, exc: Exception) -> RequestState | Refusal:
        """The answer when reading or looking up the credentials raised ``exc``."""
        if isinstance(exc, InvalidToken):
            if kind == _SESSION:
                # Expired or unknown session: serve the request anonymously, drop the cookie.
                state.delete_cookie = True
                return state
            return self._bearer_refusal(401, "invalid_token", f"the access token is {exc.reason}")
        if isinstance(exc, MalformedAuthorization):
            return self._bearer_refusal(400, "invalid_request", exc.problem)
        self.outage_log.warning("refusing request with 503", exc)
        return self._unavailable

    @staticmethod
    def _bearer_refusal(status: int, error: str, description: str) -> Refusal:
        challenge = f'Bearer error="{error}", error_description="{description}"'
        return Refusal(
            status,
            {"error": error, "error_description": description},
            (("www-authenticate", challenge),),
        )

    @staticmethod
    def _adopt(state: RequestState, session_id: str, record: SessionData) -> None:
        # An anonymous session (no user) carries data and a CSRF token, not a principal.
        state.user = _ANONYMOUS if record.user_id is None else AuthUser.from_session(record)
        state.session_id = session_id
        state.session_record = record
        state.session = record.data
        state.fingerprint = data_fingerprint(record.data)

    def ensure_session(self, state: RequestState) -> str | None:
        """The request's session id, minting an anonymous session when it has none (stored by
        :meth:`finish`, which also sets its cookie); None where a session cannot exist
        (bearer-authenticated requests, anonymous sessions or session cookies switched off).
        """
        if state.session_id is not None:
            return state.session_id
        if not self._anonymous or isinstance(state.user, AuthUser):
            return None
        # Minted now (no I/O): its CSRF token is known at once, for the page being rendered.
        session_id, record = self.auth.new_anonymous_session()
        state.session_id, state.session_record, state.fingerprint = session_id, record, None
        state.unsaved = True
        state.set_cookie, state.delete_cookie = True, False
        return session_id

    def csrf_token(self, state: RequestState) -> str:
        """The CSRF token of the request's session for a form's ``csrf_token`` field (an
        anonymous session is started for it if needed); "" where no session can exist."""
        session_id = self.ensure_session(state)
        return "" if session_id is None else self.cookies.csrf_token(session_id)

    def _wants_anonymous(self, state: RequestState) -> bool:
        """Whether the app wrote to the session of a request that has none: the lazy start
        of an anonymous session. A request that never writes pays one truth test."""
        return (
            state.session_record is None
            and bool(state.session)
            and self._anonymous
            and not isinstance(state.user, AuthUser)
        )

    async def finish(self, state: RequestState) -> list[str]:
        """Save a changed session and return the ``Set-Cookie`` values for the response.

        Raises ``StorageUnavailable`` when a change cannot be saved and ``SessionTooLarge``
        when an anonymous session's data is above its bound; the caller answers 503 or 413.
        """
        if self._wants_anonymous(state):
            self.ensure_session(state)
        record = state.session_record
        if record is not None and state.unsaved:
            state.session_record = await self.auth.store_anonymous_session(record, state.session)
            state.unsaved = False
            state.fingerprint = data_fingerprint(state.session)
        elif record is not None and data_fingerprint(state.session) != state.fingerprint:
            try:
                state.session_record = await self.auth.save_session(record, state.session)
            except InvalidToken:
                # Ended meanwhile (logout, revoke_user) by another request: the response goes
                # out as the app made it, and the client's cookie is removed.
                state.session_record = state.session_id = state.fingerprint = None
                state.set_cookie, state.delete_cookie = False, True
                return self._set_cookies(state)
            state.fingerprint = data_fingerprint(state.session)
        return self._set_cookies(state)

    def finish_nowait(self, state: RequestState) -> list[str] | None:
        """:meth:`finish` when there is nothing to save; None when a changed session must be
        saved (or an anonymous one stored), which only :meth:`finish` can do."""
        if state.session_record is not None and (
            state.unsaved or data_fingerprint(state.session) != state.fingerprint
        ):
            return None
        if self._wants_anonymous(state):
            return None
        return self._set_cookies(state)

    def finish_refusal(self, exc: StorageUnavailable | SessionTooLarge) -> Refusal:
        """The response that replaces the app's when :meth:`finish` raised ``exc``."""
        if isinstance(exc, SessionTooLarge):
            return Refusal(413, {"error": exc.error, "error_description": exc.description})
        self.outage_log.warning("session save failed, answering 503", exc)
        return self._unavailable

    def needs_form_token(self, method: str, content_type: str | None) -> bool:
        """Whether an unsafe request that sent a session cookie but no CSRF header carries a
        form whose ``csrf_field`` may hold the token (the front then reads the body)."""
        return (
            self._csrf
            and self._session_cookie
            and method not in SAFE_METHODS
            and content_type is not None
            and form_kind(content_type) is not None
        )

    def form_token(self, content_type: str, body: bytes) -> str | None:
        """The ``csrf_field`` value of a form body, or None."""
        return form_field(content_type, body, self._csrf_field)

    def form_too_large(self) -> Refusal:
        """The 413 refusal of a form too large to look for its CSRF field in."""
        return self._form_too_large

    def _set_cookies(self, state: RequestState) -> list[str]:
        if state.session_record is not None and state.session_id is not None:
            if state.set_cookie:
                return self.cookies.set_headers(state.session_id, csrf=self._csrf)
            return []
        if state.delete_cookie:
            return self.cookies.delete_headers(csrf=self._csrf)
        return []

    def unavailable(self) -> Refusal:
        """The 503 refusal."""
        return self._unavailable

    async def login(
        self,
        state: RequestState,
        user_id: str,
        password: str,
        *,
        ip_address: str | None,
        user_agent: str | None,
        forwarded_for: str | None = None,
        method: str | None = None,
        content_type: str | None = None,
    ) -> AuthUser:
        """Check a password and start a fresh session (a new id even if one existed).

        Data of an anonymous session or of one of the same user carries over; another user's
        is dropped. ``ip_address`` is the peer's; ``forwarded_for`` the ``X-Forwarded-For``
        values, read only when the peer is a trusted proxy (:class:`TrustedProxies`).
        ``method`` and ``content_type`` are the request's: a login a cross-site form could
        have sent needs the pre-login session's CSRF token (``CsrfFailed``).
        """
        self._check_login_csrf(state, method, content_type)
        ip_address = self.proxies.client(ip_address, forwarded_for)
        account = await self.auth.check_password(
            user_id, password, ip_address=ip_address, user_agent=user_agent
        )
        return await self._start_session(state, account, ip_address, user_agent)

    def _check_login_csrf(
        self, state: RequestState, method: str | None, content_type: str | None
    ) -> None:
        """Login CSRF: refuse a password login a cross-site page could have made a browser
        send (a plain form post, or any request without a JSON-like body) unless it carried
        the CSRF token of the browser's pre-login session, which the edge checked. JSON and
        other bodies need a CORS preflight cross-site, so API logins need no token.

        Raises ``CsrfFailed``.
        """
        if not (self._csrf and self._session_cookie) or state.csrf_verified:
            return
        if method not in SAFE_METHODS and not form_like(content_type):
            return
        raise CsrfFailed(
            f"a login sent as a form must carry its page's CSRF token in the "
            f"{self._csrf_field} field or the {self.options.csrf_header} header"
        )

    async def login_user(
        self,
        state: RequestState,
        user_id: str,
        *,
        ip_address: str | None,
        user_agent: str | None,
        forwarded_for: str | None = None,
    ) -> AuthUser:
        """:meth:`login` without a password (:meth:`AuthFramework.check_user` decides)."""
        ip_address = self.proxies.client(ip_address, forwarded_for)
        account = await self.auth.check_user(user_id, ip_address=ip_address, user_agent=user_agent)
        return await self._start_session(state, account, ip_address, user_agent)

    async def _start_session(
        self,
        state: RequestState,
        account: UserRecord,
        ip_address: str | None,
        user_agent: str | None,
    ) -> AuthUser:
        """Log ``account`` in on a fresh session id (fixation: never the one the client had)."""
        # An anonymous visitor's cart carries over into the user's session (under a new id).
        carry = (
            dict(state.session)
            if (
                state.session_record is not None
                and state.session_record.user_id in (None, account.user_id)
            )
            else {}
        )
        if state.session_id is not None and not state.unsaved:
            await self.auth.destroy_session(state.session_id)
        session_id, record = await self.auth.create_session(
            account.user_id, carry, ip_address=ip_address, user_agent=user_agent
        )
        self._adopt(state, session_id, record)
        state.unsaved = False
        state.set_cookie, state.delete_cookie = True, False
        user = state.user
        assert isinstance(user, AuthUser)  # a user's session always has a principal
        return user

    async def logout(self, state: RequestState) -> None:
        """End the current session server-side and remove the cookie."""
        if state.session_id is not None:
            await self.auth.destroy_session(state.session_id)
        state.user = _ANONYMOUS
        state.session = {}
        state.session_record = state.session_id = state.fingerprint = None
        state.unsaved = False
        state.set_cookie, state.delete_cookie = False, True


def _remember(memo: dict[Any, Any], key: object, value: object, limit: int) -> None:
    """Put ``key`` in a memo of at most ``limit`` entries (0: none), the oldest evicted first."""
    if not limit:
        return
    if len(memo) >= limit and key not in memo:
        # WSGI request threads may change the dict meanwhile (as the framework's memos do).
        with contextlib.suppress(RuntimeError, StopIteration):
            memo.pop(next(iter(memo)), None)
    memo[key] = value


_FORM_KINDS = ("application/x-www-form-urlencoded", "multipart/form-data")
# What a cross-site HTML form (or a CORS "simple request") can send without a preflight.
_SIMPLE_KINDS = frozenset({"", *_FORM_KINDS, "text/plain"})


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def form_kind(content_type: str) -> str | None:
    """``application/x-www-form-urlencoded`` or ``multipart/form-data`` when ``content_type``
    is one of them, else None."""
    media = _media_type(content_type)
    return media if media in _FORM_KINDS else None


def form_like(content_type: str | None) -> bool:
    """Whether a body of this ``Content-Type`` (None: no body type) could come from a
    cross-site page without a CORS preflight: a form, ``text/plain``, or nothing."""
    return content_type is None or _media_type(content_type) in _SIMPLE_KINDS


def form_field(content_type: str, body: bytes, name: str) -> str | None:
    """The first value of field ``name`` in a form body (URL-encoded or multipart), or None.

    Only what a CSRF token needs: a short text field. A malformed body gives None (the token
    is then missing and the request refused), never an exception.
    """
    kind = form_kind(content_type)
    if kind == "application/x-www-form-urlencoded":
        for key, value in urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if key == name:
                return value
        return None
    if kind != "multipart/form-data":
        return None
    boundary = _parameter(content_type, "boundary")
    if not boundary:
        return None
    # Field names are sent as UTF-8; compared as latin-1 text, byte for byte.
    wanted = name.encode("utf-8", "replace").decode("latin-1")
    for part in body.split(b"--" + boundary.encode("latin-1", "replace")):
        head, found, content = part.partition(b"\r\n\r\n")
        if not found:
            continue
        for line in head.decode("latin-1").split("\r\n"):
            header, _, value = line.partition(":")
            if header.strip().lower() == "content-disposition" and (
                _parameter(value, "name") == wanted
            ):
                return content.removesuffix(b"\r\n").decode("latin-1")
    return None


def _parameter(header: str, wanted: str) -> str | None:
    """A parameter's value in a header like ``form-data; name="x"`` (quotes removed)."""
    for item in header.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        if key.strip().lower() == wanted:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def prefers_html(accept: str | None) -> bool:
    """Whether a request's ``Accept`` header ranks ``text/html`` above ``application/json``.

    The one content negotiation of authmw's answers (error handlers, Flask's login redirect):
    a browser navigating (``text/html,...,*/*;q=0.8``) gets HTML; API clients, ``*/*``, a tie
    and a missing or unparsable header get JSON. Each type's quality is that of its most
    specific matching range (``text/html`` over ``text/*`` over ``*/*``), as RFC 9110 says.
    """
    if not accept:
        return False
    html = _quality(accept, "text", "html")
    return html > 0 and html > _quality(accept, "application", "json")


def _quality(accept: str, kind: str, sub: str) -> float:
    best, specificity = 0.0, -1
    for item in accept.split(","):
        media, _, params = item.partition(";")
        media_kind, _, media_sub = media.strip().lower().partition("/")
        if media_kind == kind and media_sub == sub:
            rank = 2
        elif media_kind == kind and media_sub == "*":
            rank = 1
        elif media_kind == "*" and media_sub == "*":
            rank = 0
        else:
            continue
        if rank <= specificity:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    quality = 0.0
        best, specificity = quality, rank
    return best


def html_page(status: int, description: str) -> str:
    """The small HTML page that answers a refusal or an error for a browser."""
    title = f"{status} {HTTPStatus(status).phrase}"
    return (
        f"<!doctype html>\n<html><head><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{html.escape(description)}</p></body></html>\n"
    )
