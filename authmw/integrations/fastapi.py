"""Gives FastAPI routes the principal :class:`authmw.AuthMiddleware` found, as dependencies.

They read the principal the middleware already put on the request (no second verification)
and declare a bearer security scheme, so ``/docs`` shows the lock and the "Authorize" button::

    app = FastAPI()
    app.add_middleware(AuthMiddleware, auth=auth)

    @app.get("/me")
    async def me(user: AuthUser = Depends(current_user)) -> dict[str, str]:
        return {"user": user.user_id}

    @app.delete("/items/{id}", dependencies=[Depends(require_scopes("role:admin"))])
    async def delete_item(id: int) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..middleware.principal import AuthUser

__all__ = ["bearer_scheme", "current_user", "optional_user", "require_scopes"]

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="authmw",
    description="An authmw access token (a session cookie works too).",
)


def optional_user(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> AuthUser | None:
    """The authenticated user, or None for anonymous requests."""
    if "user" not in request.scope:
        raise RuntimeError("authmw dependencies need AuthMiddleware in front of the app")
    user = request.scope["user"]
    return user if isinstance(user, AuthUser) else None


def current_user(user: AuthUser | None = Depends(optional_user)) -> AuthUser:
    """The authenticated user; 401 with ``WWW-Authenticate: Bearer`` for anonymous requests."""
    if user is None:
        raise HTTPException(
            status_code=401, detail="Not authenticated", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def require_scopes(*scopes: str) -> Callable[..., AuthUser]:
    """A dependency demanding every scope (a permission, or ``"role:<name>"``); 403 if not."""
    wanted = frozenset(scopes)

    def dependency(request: Request, user: AuthUser = Depends(current_user)) -> AuthUser:
        granted = set(request.auth.scopes)
        missing = sorted(wanted - granted)
        if missing:
            raise HTTPException(status_code=403, detail=f"missing scope: {', '.join(missing)}")
        return user

    return dependency
