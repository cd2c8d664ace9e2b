"""Gives Starlette routes :func:`requires`, a drop-in for ``starlette.authentication.requires``
that tells "log in" from "not allowed".

Starlette's own ``requires`` answers 403 to everyone lacking a scope, anonymous callers
included. This one answers as the FastAPI dependencies and the Flask decorators do: 401 with
``WWW-Authenticate: Bearer`` to anonymous callers, and 403 (RFC 6750 ``insufficient_scope``)
to authenticated ones lacking a scope. It raises ``HTTPException``, so the app's own
``exception_handlers`` pages render::

    from authmw.integrations.starlette import requires

    @requires("role:admin")
    async def admin(request: Request) -> Response: ...

    @requires("authenticated", redirect="login_page")  # browsers go to the login page
    async def account(request: Request) -> Response: ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse
from starlette.websockets import WebSocket

from ..middleware._edge import prefers_html
from ..middleware.principal import Refusal, refusal

__all__ = ["requires"]

P = ParamSpec("P")
R = TypeVar("R")


def requires(
    scopes: str | Sequence[str],
    status_code: int = 403,
    redirect: str | None = None,
) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
    """Let only connections whose principal has every one of ``scopes`` reach the endpoint.

    Same signature and same endpoints as ``starlette.authentication.requires`` (async or sync
    functions taking ``request``, or a ``websocket`` endpoint). Anonymous requests get 401 with
    ``WWW-Authenticate: Bearer``, or, with ``redirect`` (a route name) and a client that
    prefers HTML, a 303 to that route with ``?next=`` the page they wanted; authenticated
    requests lacking a scope get ``status_code`` (403 with an ``insufficient_scope``
    challenge). A refused websocket is closed with code 1008 before it is accepted. Raises
    ``TypeError`` when the endpoint has no ``request`` or ``websocket`` parameter.
    """
    needed = [scopes] if isinstance(scopes, str) else list(scopes)

    def decorate(func: Callable[P, Any]) -> Callable[P, Any]:
        names = list(inspect.signature(func).parameters)
        found = [i for i, name in enumerate(names) if name in ("request", "websocket")]
        if not found:
            raise TypeError(f'requires(): no "request" or "websocket" parameter on {func!r}')
        index = found[0]
        kind = names[index]

        def connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
            conn = kwargs.get(kind, args[index] if index < len(args) else None)
            if not isinstance(conn, HTTPConnection):
                raise TypeError(f"requires(): {kind!r} is a {type(conn).__name__}")
            return conn

        if kind == "websocket":

            @functools.wraps(func)
            async def websocket_wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
                websocket = connection(args, kwargs)
                assert isinstance(websocket, WebSocket)
                if _refused(websocket, needed, status_code) is not None:
                    await websocket.close(code=1008)
                    return
                await func(*args, **kwargs)

            return websocket_wrapper

        def check(request: HTTPConnection) -> RedirectResponse | None:
            refused = _refused(request, needed, status_code)
            if refused is None:
                return None
            if (
                refused.status == 401
                and redirect is not None
                and isinstance(request, Request)
                and prefers_html(request.headers.get("accept"))
            ):
                target = urlencode({"next": str(request.url)})
                return RedirectResponse(f"{request.url_for(redirect)}?{target}", status_code=303)
            raise HTTPException(
                refused.status, detail=refused.description or None, headers=refused.headers
            )

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                redirected = check(connection(args, kwargs))
                if redirected is not None:
                    return redirected
                return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            redirected = check(connection(args, kwargs))
            if redirected is not None:
                return redirected
            return func(*args, **kwargs)

        return sync_wrapper

    return decorate


def _refused(conn: HTTPConnection, needed: Sequence[str], status_code: int) -> Refusal | None:
    if "auth" not in conn.scope:
        raise RuntimeError("requires() needs AuthMiddleware in front of the app")
    return refusal(conn.user, conn.auth.scopes, needed, status_code)
