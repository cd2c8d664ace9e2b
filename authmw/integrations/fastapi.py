"""Gives FastAPI routes the principal :class:`authmw.AuthMiddleware` found, as dependencies.

They read the principal the middleware already put on the request (no second verification).
:func:`current_user` and :func:`require_scopes` declare a bearer security scheme, so ``/docs``
shows the lock; :func:`optional_user` declares none, so routes open to everyone show none.
:func:`document_auth` adds their 401/403 answers to the OpenAPI schema and, with
:func:`token_endpoint`, lets ``/docs``' "Authorize" log in with a user name and password::

    app = FastAPI()
    app.add_middleware(AuthMiddleware, auth=auth)
    app.include_router(token_endpoint(auth))          # POST /token, OAuth2 password flow
    document_auth(app, token_url="/token")

    @app.get("/me")
    async def me(user: AuthUser = Depends(current_user)) -> dict[str, str]:
        return {"user": user.user_id}

    @app.delete("/items/{id}", dependencies=[Depends(require_scopes("role:admin"))])
    async def delete_item(id: int) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBearer,
    OAuth2PasswordRequestForm,
)

from ..errors import AuthmwError, InvalidCredentials
from ..framework import AuthFramework
from ..middleware.handlers import handle_authmw_error
from ..middleware.principal import AuthUser, refusal

__all__ = [
    "AUTH_RESPONSES",
    "bearer_scheme",
    "current_user",
    "document_auth",
    "optional_user",
    "require_scopes",
    "token_endpoint",
]

SCHEME = "authmw"
PASSWORD_SCHEME = "authmw_password"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME,
    description="An authmw access token (a session cookie works too).",
)

_ERROR_BODY = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
}

#: The answers of the protected dependencies, for a route's or router's ``responses=``
#: (:func:`document_auth` adds them to every protected route by itself).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Not authenticated: no valid access token or session cookie "
        "(answered with WWW-Authenticate: Bearer)",
        "content": {"application/json": {"schema": _ERROR_BODY}},
    },
    403: {
        "description": "Authenticated, but a required scope (permission or role:<name>) is missing",
        "content": {"application/json": {"schema": _ERROR_BODY}},
    },
}


def optional_user(request: Request) -> AuthUser | None:
    """The authenticated user, or None for anonymous requests (no lock in ``/docs``)."""
    if "user" not in request.scope:
        raise RuntimeError("authmw dependencies need AuthMiddleware in front of the app")
    user = request.scope["user"]
    return user if isinstance(user, AuthUser) else None


def _refuse(request: Request, needed: list[str]) -> AuthUser:
    user = request.scope.get("user")
    if user is None:
        raise RuntimeError("authmw dependencies need AuthMiddleware in front of the app")
    # Every principal with a scope is authenticated; without scopes, that is what is needed.
    refused = refusal(user, request.auth.scopes, needed or ["authenticated"])
    if refused is not None:
        detail = "Not authenticated" if refused.status == 401 else refused.description
        raise HTTPException(refused.status, detail=detail, headers=refused.headers)
    assert isinstance(user, AuthUser)
    return user


def current_user(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> AuthUser:
    """The authenticated user; 401 with ``WWW-Authenticate: Bearer`` for anonymous requests."""
    return _refuse(request, [])


def require_scopes(*scopes: str) -> Callable[..., AuthUser]:
    """A dependency demanding every scope (a permission, or ``"role:<name>"``): 401 for
    anonymous requests, 403 (``insufficient_scope``) when one is missing. The scopes show in
    the route's security requirement in OpenAPI."""
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"require_scopes() takes scope names as strings, got {scope!r}")
    needed = list(scopes)

    def dependency(
        request: Request,
        # A default, not Annotated: FastAPI resolves string annotations in the module's
        # globals, where ``needed`` does not exist.
        _credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme, scopes=needed),
    ) -> AuthUser:
        return _refuse(request, needed)

    return dependency


def document_auth(app: FastAPI, *, token_url: str | None = None) -> None:
    """Complete ``app``'s OpenAPI schema for authmw's dependencies (built lazily, as usual).

    Every operation guarded by :func:`current_user` or :func:`require_scopes` gets its 401
    answer, and its 403 when it demands scopes (:data:`AUTH_RESPONSES`). With ``token_url``
    (where :func:`token_endpoint` is mounted), an OAuth2 password-flow scheme is offered beside
    the bearer one, so ``/docs``' "Authorize" logs in with a user name and password.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        if token_url is not None:
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[PASSWORD_SCHEME] = {
                "type": "oauth2",
                "description": "Log in with an authmw user name and password.",
                "flows": {"password": {"tokenUrl": token_url, "scopes": {}}},
            }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                requirements = operation.get("security", [])
                ours = [r[SCHEME] for r in requirements if SCHEME in r]
                if not ours:
                    continue
                responses = operation.setdefault("responses", {})
                responses.setdefault("401", AUTH_RESPONSES[401])
                if any(ours):
                    responses.setdefault("403", AUTH_RESPONSES[403])
                if token_url is not None:
                    # Either scheme will do: an alternative requirement, same scopes.
                    requirements.append({PASSWORD_SCHEME: []})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def token_endpoint(auth: AuthFramework, path: str = "/token") -> APIRouter:
    """A router with ``POST path``: the OAuth2 password grant (RFC 6749 section 4.3).

    Reads the form ``username``/``password`` (``OAuth2PasswordRequestForm``; FastAPI needs
    the ``python-multipart`` package, in authmw's ``fastapi`` extra) and answers
    ``{"access_token", "token_type": "bearer", "expires_in", "refresh_token"}`` through
    :meth:`AuthFramework.authenticate`. Wrong credentials are 400 ``invalid_grant`` (as the
    RFC says); a locked account 429 and a storage outage 503, with ``Retry-After``.
    """
    router = APIRouter()

    @router.post(
        path,
        summary="Log in with a user name and password (OAuth2 password flow)",
        responses={
            400: {"description": "Wrong user name or password (invalid_grant)"},
            429: {"description": "Account locked after failed logins; see Retry-After"},
            503: {"description": "Authentication storage unavailable; see Retry-After"},
        },
    )
    async def token(
        request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
    ) -> Response:
        client = request.client
        try:
            issued = await auth.authenticate(
                form.username,
                form.password,
                ip_address=client.host if client else None,
                user_agent=request.headers.get("user-agent"),
            )
        except InvalidCredentials:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "wrong user name or password"},
                status_code=400,
            )
        except AuthmwError as exc:
            return await handle_authmw_error(request, exc)
        body: dict[str, Any] = {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": max(0, int((issued.expires_at - issued.created_at).total_seconds())),
        }
        if issued.refresh_token:
            body["refresh_token"] = issued.refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router
