"""The principal the middleware reuses between requests: shared only while it is still true."""

from __future__ import annotations

import pickle

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authmw import AuthConfig, AuthFramework, AuthMiddleware, InMemoryStorage
from authmw.middleware.principal import AuthUser, FrozenCredentials, credentials_for
from tests.support.apps import client, make_app


async def login_token(auth: AuthFramework, user: str = "alice", **kwargs: object) -> str:
    await auth.register_user(user, "password", **kwargs)  # type: ignore[arg-type]
    return (await auth.authenticate(user, "password")).access_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_revoked_token_refused_after_reuse(auth: AuthFramework) -> None:
    """A token whose principal was reused is refused on the request after its revocation."""
    token = await login_token(auth)
    async with client(make_app(auth)) as http:
        for _ in range(3):
            assert (await http.get("/private", headers=bearer(token))).status_code == 200
        await auth.revoke(token)
        assert (await http.get("/private", headers=bearer(token))).status_code == 401


async def test_role_change_reaches_next_request(auth: AuthFramework) -> None:
    """A user's new roles show in the scopes of the token's next request."""
    token = await login_token(auth)
    async with client(make_app(auth)) as http:
        assert (await http.get("/admin", headers=bearer(token))).status_code == 403
        await auth.set_roles("alice", ["admin"])
        body = (await http.get("/whoami", headers=bearer(token))).json()
        assert body["scopes"] == ["authenticated", "role:admin"]
        assert (await http.get("/admin", headers=bearer(token))).status_code == 200


async def test_disabled_user_refused_after_reuse(auth: AuthFramework) -> None:
    """Disabling a user refuses the token's next request even though its principal was reused."""
    token = await login_token(auth)
    async with client(make_app(auth)) as http:
        assert (await http.get("/private", headers=bearer(token))).status_code == 200
        await auth.disable_user("alice")
        assert (await http.get("/private", headers=bearer(token))).status_code == 401


async def test_same_principal_object_for_repeat_requests(config: AuthConfig) -> None:
    """On memory, the requests of one token get the very same principal and credentials."""
    seen: list[tuple[object, object]] = []

    async def note(request: Request) -> Response:
        seen.append((request.user, request.auth))
        return JSONResponse({})

    async with AuthFramework(InMemoryStorage(), config) as auth:
        token = await login_token(auth, roles=["admin"])
        app = Starlette(
            routes=[Route("/", note)], middleware=[Middleware(AuthMiddleware, auth=auth)]
        )
        async with client(app) as http:
            for _ in range(3):
                assert (await http.get("/", headers=bearer(token))).status_code == 200
    users, creds = {id(u) for u, _ in seen}, {id(c) for _, c in seen}
    assert len(seen) == 3 and len(users) == 1 and len(creds) == 1


async def test_app_cannot_change_a_shared_principal(auth: AuthFramework) -> None:
    """An app's write to the principal or its scopes fails instead of reaching other requests."""
    failures: list[str] = []

    async def tamper(request: Request) -> Response:
        try:
            request.user.roles = ("admin",)
        except AttributeError:
            failures.append("roles")
        try:
            request.auth.scopes.append("role:admin")
        except TypeError:
            failures.append("scopes")
        return JSONResponse(list(request.auth.scopes))

    token = await login_token(auth)
    app = Starlette(routes=[Route("/", tamper)], middleware=[Middleware(AuthMiddleware, auth=auth)])
    async with client(app) as http:
        for _ in range(2):
            assert (await http.get("/", headers=bearer(token))).json() == ["authenticated"]
    assert failures == ["roles", "scopes"] * 2


async def test_login_on_a_bearer_request_sets_the_cookie(auth: AuthFramework) -> None:
    """A login made while handling a bearer request still sets the session cookie."""
    token = await login_token(auth)
    async with client(make_app(auth)) as http:
        response = await http.post(
            "/login", json={"user": "alice", "password": "password"}, headers=bearer(token)
        )
        assert response.status_code == 200
        assert "authmw_session" in response.headers.get("set-cookie", "")


def test_frozen_credentials_copy_to_plain_lists() -> None:
    """Scopes compare equal to a list, and copy or pickle to a plain, changeable list."""
    user = AuthUser("bob", roles=("admin",), permissions=("read",), auth_method="bearer")
    creds = credentials_for(user)
    assert isinstance(creds, FrozenCredentials)
    assert creds.scopes == ["authenticated", "read", "role:admin"]
    copied = pickle.loads(pickle.dumps(creds.scopes))
    copied.append("more")
    assert type(copied) is list and creds.scopes == ["authenticated", "read", "role:admin"]
    with pytest.raises(AttributeError):
        creds.scopes = []  # type: ignore[misc]
