"""Answers every :class:`authmw.AuthmwError` over HTTP by itself: ``authmw.exception_handlers``.

``Starlette(exception_handlers=authmw.exception_handlers)``, or in FastAPI
``app.add_exception_handler(AuthmwError, authmw.handle_authmw_error)``: a duplicate sign-up is a
409, a locked account a 429 with ``Retry-After``, a login while the storage is down a 503 with
``Retry-After``, never a 500 with a traceback. The status and headers are the error's own
(:attr:`authmw.AuthmwError.status_code`, ``.headers``); the body is JSON
(``{"error": ..., "error_description": ...}``) or a small HTML page, chosen by the request's
``Accept`` as everywhere in authmw (:func:`authmw.middleware._edge.prefers_html`). Server faults
(``ConfigurationError``, ``BackupError``) answer 500 with a generic text; their reason goes to
the ``authmw.middleware`` logger at ERROR. An app overrides any of it with its own handler for
the error class (``{**authmw.exception_handlers, UserExists: my_page}``): Starlette picks the
most specific class. The Flask extension registers :func:`error_answer` the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocketClose

from ..errors import AuthmwError, StorageUnavailable
from ._edge import RequestState, html_page, prefers_html

__all__ = ["ErrorAnswer", "error_answer", "exception_handlers", "handle_authmw_error"]

log = logging.getLogger("authmw.middleware")

_STATE = "authmw"  # where AuthMiddleware keeps the request's state on the scope


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """The HTTP answer to an :class:`authmw.AuthmwError`, independent of any web framework."""

    status: int
    headers: dict[str, str]
    media_type: str
    body: str

    @property
    def ws_close_code(self) -> int:
        """The websocket close code for the same refusal (1013 try later, 1011, or 1008)."""
        if self.status == 503:
            return 1013
        return 1011 if self.status >= 500 else 1008


def error_answer(
    exc: AuthmwError, accept: str | None, *, retry_after: int | None = None
) -> ErrorAnswer:
    """The answer to ``exc`` for a request that sent ``accept`` (its ``Accept`` header).

    ``retry_after`` replaces the ``Retry-After`` of a ``StorageUnavailable`` (the middleware's
    option, so the edge and the handlers say the same). Server faults are logged here.
    """
    status = exc.status_code
    if status >= 500:
        if isinstance(exc, StorageUnavailable):
            log.warning("answering %d: %s", status, exc)
        else:
            # The reason is for the operator: logged with its traceback, never shown.
            log.error("answering %d: %s", status, exc, exc_info=exc)
    headers = dict(exc.headers)
    if retry_after is not None and isinstance(exc, StorageUnavailable):
        headers["Retry-After"] = str(retry_after)
    description = exc.description
    if prefers_html(accept):
        return ErrorAnswer(status, headers, "text/html", html_page(status, description))
    body = json.dumps({"error": exc.error, "error_description": description})
    return ErrorAnswer(status, headers, "application/json", body)


def _retry_after(conn: HTTPConnection) -> int | None:
    state = conn.scope.get(_STATE)
    return state.edge.options.retry_after if isinstance(state, RequestState) else None


async def handle_authmw_error(request: Request, exc: Exception) -> Response:
    """The Starlette/FastAPI exception handler for :class:`authmw.AuthmwError` and subclasses.

    Answers with the error's status and headers, in JSON or HTML by ``Accept``; a websocket is
    closed with the matching close code instead. Re-raises anything that is not an
    ``AuthmwError`` (registered under another class by mistake).
    """
    if not isinstance(exc, AuthmwError):
        raise exc
    conn: HTTPConnection = request
    answer = error_answer(exc, conn.headers.get("accept"), retry_after=_retry_after(conn))
    if conn.scope["type"] == "websocket":
        # Starlette runs what a handler returns as an ASGI app on both kinds of connection.
        return cast(Response, WebSocketClose(answer.ws_close_code, exc.error))
    return Response(
        answer.body, status_code=answer.status, headers=answer.headers, media_type=answer.media_type
    )


#: ``Starlette(exception_handlers=authmw.exception_handlers)`` or FastAPI's
#: ``exception_handlers=``: :func:`handle_authmw_error` for every :class:`authmw.AuthmwError`.
#: Typed as FastAPI's parameter, so it passes to both; copy it to add the app's own handlers.
exception_handlers: dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
] = {AuthmwError: handle_authmw_error}
