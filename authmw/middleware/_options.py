"""Defines the options both middlewares take, and checks them once when they are built.

:class:`MiddlewareOptions` is what ``AuthMiddleware`` and ``WSGIAuthMiddleware`` are configured
with. Both fronts also take its fields as keyword arguments (``Middleware(AuthMiddleware,
auth=auth, csrf=False)``); :func:`resolve` turns ``options=`` plus keywords into one
:class:`MiddlewareOptions`. Each front keeps its own protocol's extra (``lifespan`` for ASGI,
``timeout`` for WSGI) as a plain keyword argument.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from ..errors import ConfigurationError
from ._client import parse_networks

__all__ = ["MiddlewareOptions", "OptionKeywords", "parse_host", "parse_origin", "resolve"]

# RFC 9110 section 5.6.2: a header name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The characters CookieConfig refuses in a cookie name too.
_NOT_IN_COOKIE_NAME = frozenset(' ;,=\t\r\n"')
# RFC 6454's serialised origin (scheme "://" host [":" port]) and RFC 9110's Host header; an
# IPv6 literal in brackets. Nothing else (no path, user info or spaces) is an origin.
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[^\s/:?#@\[\]\\]+)(?::([0-9]{1,5}))?"
_ORIGIN = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://" + _HOST)
_HOST_HEADER = re.compile(_HOST)
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

Origin = tuple[str, str, int | None]
"""A parsed origin: (scheme, host, port), lower-case, the scheme's default port filled in."""


def parse_origin(value: str) -> Origin | None:
    """``value`` (an ``Origin`` header) as (scheme, host, port), or None if it names no origin
    (``null``, a URL with a path, junk)."""
    match = _ORIGIN.fullmatch(value)
    if match is None:
        return None
    scheme, host, port = match.group(1).lower(), match.group(2).lower(), match.group(3)
    number = _DEFAULT_PORTS.get(scheme) if port is None else int(port)
    if number is not None and number > 65535:
        return None
    return scheme, host, number


def parse_host(value: str, scheme: str) -> tuple[str, int | None] | None:
    """A ``Host`` header as (host, port), the port ``scheme``'s default when absent; None if
    it is not a Host header."""
    match = _HOST_HEADER.fullmatch(value)
    if match is None:
        return None
    port = match.group(2)
    return match.group(1).lower(), _DEFAULT_PORTS.get(scheme) if port is None else int(port)


@dataclass(frozen=True, slots=True)
class MiddlewareOptions:
    """How a middleware authenticates requests; the same for ASGI and WSGI.

    ``bearer`` and ``session_cookie`` switch each kind of credential on (both are on; bearer
    wins when a request carries both). ``csrf`` turns on the double-submit check on unsafe
    cookie-authenticated requests: the ``csrf_cookie`` cookie's value echoed in the
    ``csrf_header`` header. ``exclude_paths`` are served without authentication (``"/static"``
    covers ``/static/...``). ``retry_after`` is the whole seconds sent in ``Retry-After`` with
    a 503. ``websocket_origins`` are the origins (``"https://app.example.com"``) besides the
    request's own host whose pages may open a websocket authenticated by the session cookie
    (ASGI only; a handshake from any other ``Origin``, or none, is refused).
    ``trusted_proxies`` are the addresses or networks (``"10.0.0.0/8"``) of reverse proxies
    whose ``X-Forwarded-For`` names the client (the right-most hop that is not one of them);
    empty (the default), the client is the connection's peer and the header is ignored.

    ``anonymous_sessions`` gives a visitor who is not logged in a server-side session the
    first time the app writes to it (or renders a CSRF token); a visitor who never does gets
    no cookie and costs no storage write. ``csrf_field`` is the form field an HTML form sends
    the token in (``application/x-www-form-urlencoded`` or ``multipart/form-data``), read when
    the header is absent from a body of at most ``max_form_bytes`` (a larger one is refused
    with 413); the app still reads the whole body.

    Raises ``ConfigurationError`` for a header or cookie name that cannot be one, an
    ``exclude_paths`` that is a single string or holds something other than paths starting
    with ``/``, a ``retry_after`` that is not a whole number of seconds >= 0, or a
    ``websocket_origins`` that is a single string or holds something other than an origin.
    """

    bearer: bool = True
    session_cookie: bool = True
    csrf: bool = True
    csrf_header: str = "X-CSRF-Token"
    csrf_cookie: str = "authmw_csrf"
    # Any iterable of paths; kept as a tuple.
    exclude_paths: Iterable[str] = ()
    retry_after: int = 5
    # Any iterable of origins; kept as a tuple.
    websocket_origins: Iterable[str] = ()
    # Any iterable of addresses or networks; kept as a tuple.
    trusted_proxies: Iterable[str] = ()
    anonymous_sessions: bool = True
    csrf_field: str = "csrf_token"
    max_form_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if not isinstance(self.csrf_field, str) or not self.csrf_field:
            raise ConfigurationError(f"csrf_field {self.csrf_field!r} is not a form field name")
        if (
            not isinstance(self.max_form_bytes, int)
            or isinstance(self.max_form_bytes, bool)
            or self.max_form_bytes < 1
        ):
            raise ConfigurationError(
                f"max_form_bytes: expected whole bytes >= 1, got {self.max_form_bytes!r}"
            )
        if not isinstance(self.csrf_header, str) or not _HEADER_NAME.fullmatch(self.csrf_header):
            raise ConfigurationError(f"csrf_header {self.csrf_header!r} is not a header name")
        if (
            not isinstance(self.csrf_cookie, str)
            or not self.csrf_cookie
            or not _NOT_IN_COOKIE_NAME.isdisjoint(self.csrf_cookie)
        ):
            raise ConfigurationError(f"csrf_cookie {self.csrf_cookie!r} is not a cookie name")
        # A single string would be taken character by character, and its "/" would exclude
        # every path: refuse it rather than switch authentication off.
        if isinstance(self.exclude_paths, (str, bytes)):
            raise ConfigurationError(
                f"exclude_paths: expected a list of paths, not one string: [{self.exclude_paths!r}]"
            )
        paths = tuple(self.exclude_paths)
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigurationError(f"exclude_paths: {path!r} is not a path starting with '/'")
        object.__setattr__(self, "exclude_paths", paths)
        if (
            not isinstance(self.retry_after, int)
            or isinstance(self.retry_after, bool)
            or self.retry_after < 0
        ):
            raise ConfigurationError(
                f"retry_after: expected whole seconds >= 0, got {self.retry_after!r}"
            )
        if isinstance(self.websocket_origins, (str, bytes)):
            raise ConfigurationError(
                "websocket_origins: expected a list of origins, not one string: "
                f"[{self.websocket_origins!r}]"
            )
        origins = tuple(self.websocket_origins)
        for origin in origins:
            if not isinstance(origin, str) or parse_origin(origin) is None:
                raise ConfigurationError(
                    f"websocket_origins: {origin!r} is not an origin like 'https://example.com'"
                )
        object.__setattr__(self, "websocket_origins", origins)
        proxies = self.trusted_proxies
        if not isinstance(proxies, (str, bytes)):
            proxies = tuple(proxies)
        parse_networks(proxies)  # raises for a single string or anything not an address
        object.__setattr__(self, "trusted_proxies", proxies)


class OptionKeywords(TypedDict, total=False):
    """:class:`MiddlewareOptions`' fields as the middlewares' keyword arguments (a test pins
    that the two list the same names)."""

    bearer: bool
    session_cookie: bool
    csrf: bool
    csrf_header: str
    csrf_cookie: str
    exclude_paths: Iterable[str]
    retry_after: int
    websocket_origins: Iterable[str]
    trusted_proxies: Iterable[str]
    anonymous_sessions: bool
    csrf_field: str
    max_form_bytes: int


def resolve(options: MiddlewareOptions | None, keywords: OptionKeywords) -> MiddlewareOptions:
    """``options`` (the defaults when None) with the fields given as ``keywords`` replaced.

    Raises ``ConfigurationError`` for a bad value and ``TypeError`` for an unknown name.
    """
    if options is None:
        return MiddlewareOptions(**keywords)
    if not isinstance(options, MiddlewareOptions):
        raise ConfigurationError(f"options: expected a MiddlewareOptions, got {options!r}")
    return dataclasses.replace(options, **keywords) if keywords else options
