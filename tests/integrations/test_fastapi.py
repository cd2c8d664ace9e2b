"""FastAPI dependencies and OpenAPI, on every backend."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from authmw import AuthFramework, AuthMiddleware, AuthUser
from authmw.integrations.fastapi import (
    current_user,
    document_auth,
    optional_user,
    require_scopes,
    token_endpoint,
)
from authmw.storage import InMemoryStorage
from authmw.testing import test_config


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
    assert schema["paths"]["/admin"]["get"]["security"] == [{"authmw": ["role:admin", "write"]}]
    assert "security" not in schema["paths"]["/maybe"]["get"]  # optional_user: no lock


def test_openapi_declares_refusals_and_password_flow(auth: AuthFramework) -> None:
    """document_auth: 401 on every protected operation, 403 where scopes are required, none
    on optional_user routes, and an OAuth2 password scheme pointing at the token endpoint."""
    api = make_api(auth)
    api.include_router(token_endpoint(auth))
    document_auth(api, token_url="/token")
    schema = api.openapi()
    me, admin = schema["paths"]["/me"]["get"], schema["paths"]["/admin"]["get"]
    maybe = schema["paths"]["/maybe"]["get"]
    assert "401" in me["responses"] and "403" not in me["responses"]
    assert {"401", "403"} <= set(admin["responses"])
    assert "401" not in maybe["responses"] and "security" not in maybe
    assert schema["components"]["securitySchemes"]["authmw_password"]["flows"] == {
        "password": {"tokenUrl": "/token", "scopes": {}}
    }
    assert me["security"] == [{"authmw": []}, {"authmw_password": []}]
    token_op = schema["paths"]["/token"]["post"]
    form = token_op["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in form
    assert api.openapi() is schema  # built once


async def test_token_endpoint_password_flow(auth: AuthFramework) -> None:
    """What /docs' Authorize does: POST the password form to /token, then call a protected
    route with the bearer token; wrong passwords are 400 invalid_grant."""
    await auth.register_user("eve", "password", roles=["admin"], permissions=["write"])
    api = make_api(auth)
    api.include_router(token_endpoint(auth))
    async with http(api) as client:
        answer = await client.post("/token", data={"username": "eve", "password": "password"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["token_type"] == "bearer" and body["expires_in"] > 0
        assert body["refresh_token"]
        assert answer.headers["cache-control"] == "no-store"
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert (await client.get("/me", headers=headers)).json()["user"] == "eve"
        assert (await client.get("/admin", headers=headers)).status_code == 200
        wrong = await client.post("/token", data={"username": "eve", "password": "nope"})
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"
        assert (await client.post("/token", data={"username": "eve"})).status_code == 422


def test_docs_authorize_with_test_client() -> None:
    """With FastAPI's TestClient: /docs is served, the schema offers the password flow, and
    the token it gives opens a protected route; anonymous gets 401 and no-scope 403."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    api = make_api(auth)
    api.include_router(token_endpoint(auth))
    document_auth(api, token_url="/token")
    with TestClient(api, base_url="https://testserver") as client:
        client.portal.call(auth.register_user, "fay", "password")  # type: ignore[union-attr]
        assert client.get("/docs").status_code == 200
        flows = client.get("/openapi.json").json()["components"]["securitySchemes"]
        token_url = flows["authmw_password"]["flows"]["password"]["tokenUrl"]
        body = client.post(token_url, data={"username": "fay", "password": "password"}).json()
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert client.get("/me", headers=headers).status_code == 200
        assert client.get("/me").status_code == 401
        assert client.get("/admin", headers=headers).status_code == 403
