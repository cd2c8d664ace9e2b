"""FastAPI dependencies and OpenAPI, on every backend."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Depends, FastAPI

from authmw import AuthFramework, AuthMiddleware, AuthUser
from authmw.integrations.fastapi import current_user, optional_user, require_scopes


def make_api(auth: AuthFramework) -> FastAPI:
    api = FastAPI()
    api.add_middleware(AuthMiddleware, auth=auth)

    @api.get("/me")
    async def me(user: AuthUser = Depends(current_user)) -> dict[str, Any]:
        return {"user": user.user_id, "roles": list(user.roles)}

    @api.get("/maybe")
    async def maybe(user: AuthUser | None = Depends(optional_user)) -> dict[str, Any]:
        return {"user": user.user_id if user else None}

    @api.get("/admin", dependencies=[Depends(require_scopes("role:admin", "write"))])
    async def admin() -> dict[str, str]:
        return {"ok": "yes"}

    return api


def http(api: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="https://t")


async def token_for(auth: AuthFramework, user: str, **kwargs: Any) -> dict[str, str]:
    await auth.register_user(user, "password", **kwargs)
    token = await auth.authenticate(user, "password")
    return {"Authorization": f"Bearer {token.access_token}"}


async def test_current_user(auth: AuthFramework) -> None:
    """current_user returns the AuthUser, and 401 with a Bearer challenge when anonymous."""
    headers = await token_for(auth, "ann", roles=["admin"])
    async with http(make_api(auth)) as client:
        assert (await client.get("/me", headers=headers)).json() == {
            "user": "ann",
            "roles": ["admin"],
        }
        anonymous = await client.get("/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        bad = await client.get("/me", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and "invalid_token" in bad.headers["www-authenticate"]


async def test_optional_user(auth: AuthFramework) -> None:
    """optional_user is None for anonymous requests and the user otherwise."""
    headers = await token_for(auth, "ben")
    async with http(make_api(auth)) as client:
        assert (await client.get("/maybe")).json() == {"user": None}
        assert (await client.get("/maybe", headers=headers)).json() == {"user": "ben"}


async def test_require_scopes(auth: AuthFramework) -> None:
    """require_scopes lets through users with every scope and answers 403 naming what lacks."""
    full = await token_for(auth, "cal", roles=["admin"], permissions=["write"])
    partial = await token_for(auth, "dee", roles=["admin"])
    async with http(make_api(auth)) as client:
        assert (await client.get("/admin", headers=full)).status_code == 200
        refused = await client.get("/admin", headers=partial)
        assert refused.status_code == 403 and "write" in refused.json()["detail"]
        assert (await client.get("/admin")).status_code == 401


async def test_openapi_declares_bearer(auth: AuthFramework) -> None:
    """The OpenAPI schema declares the bearer scheme on protected routes."""
    async with http(make_api(auth)) as client:
        schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["authmw"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An authmw access token (a session cookie works too).",
    }
    assert schema["paths"]["/me"]["get"]["security"] == [{"authmw": []}]
    assert schema["paths"]["/admin"]["get"]["security"] == [{"authmw": []}]
