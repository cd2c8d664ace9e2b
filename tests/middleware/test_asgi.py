"""AuthMiddleware on a real Starlette app, on every backend: the edge table row by row."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest

from authmw import AuthConfig, AuthFramework, CookieConfig
from authmw.storage import AuthStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET
from tests.support.apps import client, make_app
from tests.support.factories import RemoteLikeMemory


async def login_token(auth: AuthFramework, user: str = "alice", **kwargs: object) -> str:
    await auth.register_user(user, "password", **kwargs)  # type: ignore[arg-type]
    return (await auth.authenticate(user, "password")).access_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_credentials_is_anonymous(auth: AuthFramework) -> None:
    """Without credentials the app runs with UnauthenticatedUser and decides itself."""
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami")
        assert response.status_code == 200
        assert response.json() == {
            "authenticated": False,
            "user": "",
            "method": None,
            "scopes": [],
            "current": "",
        }
        assert "set-cookie" not in response.headers
        assert (await http.get("/private")).status_code == 403


async def test_valid_bearer(auth: AuthFramework) -> None:
    """A valid bearer token reaches the app as an AuthUser with scopes for roles/permissions."""
    token = await login_token(auth, roles=["admin"], permissions=["read"])
    async with client(make_app(auth)) as http:
        body = (await http.get("/whoami", headers=bearer(token))).json()
        assert body == {
            "authenticated": True,
            "user": "alice",
            "method": "bearer",
            "scopes": ["authenticated", "read", "role:admin"],
            "current": "alice",
        }
        assert (await http.get("/private", headers=bearer(token))).text == "hello alice"
        assert (await http.get("/admin", headers=bearer(token))).status_code == 200


async def test_starlette_requires_denies_missing_role(auth: AuthFramework) -> None:
    """Starlette's requires() refuses a user lacking the role scope."""
    token = await login_token(auth)
    async with client(make_app(auth)) as http:
        assert (await http.get("/admin", headers=bearer(token))).status_code == 403


@pytest.mark.parametrize("mutate", ["junk", "forged", "revoked", "expired", "unknown"])
async def test_bad_bearer_is_401(storage: AuthStorage, mutate: str) -> None:
    """Unknown, expired, revoked, forged or junk tokens get 401 invalid_token; app not called."""
    ttl = 0.2 if mutate == "expired" else 3600
    auth = AuthFramework(
        storage,
        AuthConfig(
            secret_key=TEST_SECRET, access_token_ttl=ttl, password_hasher=fast_password_hasher()
        ),
    )
    token = await login_token(auth)
    if mutate == "junk":
        token = "definitely-not-a-token"
    elif mutate == "forged":
        token = token[:-2] + ("00" if not token.endswith("00") else "11")
    elif mutate == "revoked":
        await auth.revoke(token)
    elif mutate == "expired":
        await asyncio.sleep(0.3)
    elif mutate == "unknown":
        await auth.revoke_user("alice")
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami", headers=bearer(token))
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer ab=cd", "Bearer " + "a" * 5000, "Bearer \u00e9"],
)
async def test_malformed_authorization_is_400(auth: AuthFramework, header: str) -> None:
    """Malformed Authorization headers get 400 invalid_request."""
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami", headers={"Authorization": header.encode("utf-8")})
    assert response.status_code == 400
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


async def test_other_schemes_pass_through(auth: AuthFramework) -> None:
    """A Basic Authorization header is left to the app (anonymous)."""
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 200 and response.json()["authenticated"] is False


async def test_excluded_paths_skip_authentication(auth: AuthFramework) -> None:
    """Excluded paths are served anonymously even with a bad token."""
    async with client(make_app(auth)) as http:
        response = await http.get("/health", headers=bearer("garbage"))
    assert response.status_code == 200 and response.json()["authenticated"] is False


async def test_session_login_flow(auth: AuthFramework) -> None:
    """Login sets a session cookie; the session authenticates and persists data; logout ends it."""
    await auth.register_user("bob", "password", roles=["staff"])
    async with client(make_app(auth)) as http:
        response = await http.post("/login", json={"user": "bob", "password": "password"})
        assert response.status_code == 200
        assert response.json() == {"user": "bob", "current": "bob"}
        cookies = response.headers.get_list("set-cookie")
        session_cookie = next(c for c in cookies if c.startswith("authmw_session="))
        for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
            assert attribute in session_cookie
        csrf = http.cookies["authmw_csrf"]

        who = (await http.get("/whoami")).json()
        assert who["user"] == "bob" and who["method"] == "session"
        assert "role:staff" in who["scopes"]
        cart = await http.post("/cart", json={"item": "apple"}, headers={"X-CSRF-Token": csrf})
        assert cart.json() == {"cart": ["apple"]}
        assert (await http.get("/session")).json() == {"cart": ["apple"]}
        old_cookie = http.cookies["authmw_session"]

        response = await http.post("/logout", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200
        assert any(
            c.startswith("authmw_session=") and "Max-Age=0" in c
            for c in response.headers.get_list("set-cookie")
        )
        assert (await http.get("/whoami")).json()["authenticated"] is False
    # The old cookie is dead server-side, not just forgotten by the client.
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami", headers={"Cookie": f"authmw_session={old_cookie}"})
        assert response.json()["authenticated"] is False
        assert "Max-Age=0" in response.headers["set-cookie"]


async def test_session_saved_only_when_changed(auth: AuthFramework) -> None:
    """Reading a session writes nothing and re-signs nothing (no Set-Cookie); changing it
    writes once."""
    await auth.register_user("cat", "password")
    writes = 0
    original = auth.storage.update_session

    async def counting(session):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        return await original(session)

    async with client(make_app(auth)) as http:
        await http.post("/login", json={"user": "cat", "password": "password"})
        auth.storage.update_session = counting  # type: ignore[method-assign]
        try:
            for _ in range(3):
                response = await http.get("/session")
                assert response.status_code == 200
                assert "set-cookie" not in response.headers
            assert writes == 0
            await http.post(
                "/cart",
                json={"item": "pear"},
                headers={"X-CSRF-Token": http.cookies["authmw_csrf"]},
            )
            assert writes == 1
        finally:
            del auth.storage.update_session  # type: ignore[method-assign]


async def test_login_rotates_session_id(auth: AuthFramework) -> None:
    """Logging in again issues a new session id and the old one stops working."""
    await auth.register_user("dan", "password")
    async with client(make_app(auth)) as http:
        await http.post("/login", json={"user": "dan", "password": "password"})
        first = http.cookies["authmw_session"]
        await http.post(
            "/cart", json={"item": "kiwi"}, headers={"X-CSRF-Token": http.cookies["authmw_csrf"]}
        )
        await http.post(
            "/login",
            json={"user": "dan", "password": "password"},
            headers={"X-CSRF-Token": http.cookies["authmw_csrf"]},
        )
        second = http.cookies["authmw_session"]
        assert first != second
        assert (await http.get("/session")).json() == {"cart": ["kiwi"]}
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami", headers={"Cookie": f"authmw_session={first}"})
        assert response.json()["authenticated"] is False


async def test_failed_login_sets_no_cookie(auth: AuthFramework) -> None:
    """A wrong password creates no session and sets no cookie."""
    await auth.register_user("eve", "password")
    async with client(make_app(auth)) as http:
        response = await http.post("/login", json={"user": "eve", "password": "nope"})
        assert response.status_code == 401 and "set-cookie" not in response.headers
    assert await auth.storage.list_user_sessions("eve") == []


@pytest.mark.parametrize("cookie", ["garbage", "st1.a.b.c.sig", ""])
async def test_tampered_cookie_is_anonymous_and_deleted(auth: AuthFramework, cookie: str) -> None:
    """A tampered or junk session cookie: anonymous, and the response deletes it."""
    async with client(make_app(auth)) as http:
        response = await http.get("/whoami", headers={"Cookie": f"authmw_session={cookie}"})
    assert response.status_code == 200 and response.json()["authenticated"] is False
    if cookie:
        assert "Max-Age=0" in response.headers["set-cookie"]


async def test_expired_session_cookie(storage: AuthStorage) -> None:
    """An expired session is anonymous and its cookie is deleted."""
    auth = AuthFramework(
        storage,
        AuthConfig(
            secret_key=TEST_SECRET, session_idle_timeout=0.2, password_hasher=fast_password_hasher()
        ),
    )
    await auth.register_user("fin", "password")
    async with client(make_app(auth)) as http:
        await http.post("/login", json={"user": "fin", "password": "password"})
        await asyncio.sleep(0.3)
        response = await http.get("/whoami")
        assert response.json()["authenticated"] is False
        assert "Max-Age=0" in response.headers["set-cookie"]


async def test_bearer_wins_over_cookie(auth: AuthFramework) -> None:
    """With both a bearer token and a session cookie, the bearer token decides."""
    await auth.register_user("gil", "password")
    token = await login_token(auth, "hal")
    async with client(make_app(auth)) as http:
        await http.post("/login", json={"user": "gil", "password": "password"})
        body = (await http.get("/whoami", headers=bearer(token))).json()
    assert body["user"] == "hal" and body["method"] == "bearer"


async def test_csrf(auth: AuthFramework) -> None:
    """Unsafe cookie requests need the CSRF header; bearer requests are exempt."""
    await auth.register_user("ivy", "password")
    token = await login_token(auth, "jon")
    async with client(make_app(auth)) as http:
        await http.post("/login", json={"user": "ivy", "password": "password"})
        missing = await http.post("/cart", json={"item": "x"})
        assert missing.status_code == 403 and "CSRF" in missing.json()["error_description"]
        wrong = await http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        assert (await http.get("/session")).json() == {}
        ok = await http.post(
            "/cart", json={"item": "x"}, headers={"X-CSRF-Token": http.cookies["authmw_csrf"]}
        )
        assert ok.status_code == 200
    async with client(make_app(auth)) as http:
        response = await http.post("/cart", json={"item": "y"}, headers=bearer(token))
        assert response.status_code == 200


async def test_csrf_can_be_turned_off(auth: AuthFramework) -> None:
    """With csrf=False unsafe cookie requests pass without the header."""
    await auth.register_user("kai", "password")
    async with client(make_app(auth, csrf=False)) as http:
        await http.post("/login", json={"user": "kai", "password": "password"})
        assert "authmw_csrf" not in http.cookies
        assert (await http.post("/cart", json={"item": "x"})).status_code == 200


async def test_fallback_key_cookie_is_resigned(storage: AuthStorage) -> None:
    """A cookie signed with a fallback key is accepted and re-signed with the current key."""
    old_key, new_key = "old-key-0123456789abcdef0123456789", "new-key-0123456789abcdef0123456789"
    old = AuthFramework(
        storage, AuthConfig(secret_key=old_key, password_hasher=fast_password_hasher())
    )
    await old.register_user("lou", "password")
    async with client(make_app(old)) as http:
        await http.post("/login", json={"user": "lou", "password": "password"})
        old_cookie = http.cookies["authmw_session"]
    new = AuthFramework(
        storage,
        AuthConfig(
            secret_key=new_key,
            secret_key_fallbacks=[old_key],
            password_hasher=fast_password_hasher(),
        ),
    )
    async with client(make_app(new)) as http:
        response = await http.get("/whoami", headers={"Cookie": f"authmw_session={old_cookie}"})
        assert response.json()["user"] == "lou"
        resigned = http.cookies["authmw_session"]
        assert resigned != old_cookie
        response = await http.get("/whoami", headers={"Cookie": f"authmw_session={resigned}"})
        assert response.json()["user"] == "lou" and "set-cookie" not in response.headers


async def test_cookie_attributes_follow_config(storage: AuthStorage) -> None:
    """Cookie name, path, domain, SameSite and Max-Age come from CookieConfig."""
    config = AuthConfig(
        secret_key=TEST_SECRET,
        password_hasher=fast_password_hasher(),
        cookie=CookieConfig(name="__Host-sid", same_site="strict", max_age=600),
    )
    auth = AuthFramework(storage, config)
    await auth.register_user("mia", "password")
    async with client(make_app(auth)) as http:
        response = await http.post("/login", json={"user": "mia", "password": "password"})
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-sid="))
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Max-Age=600", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie


async def test_storage_down_is_503() -> None:
    """When storage fails, credentials get 503 with Retry-After, never a 500 or anonymity."""
    from authmw.errors import StorageUnavailable

    class Broken(RemoteLikeMemory):
        async def get_token(self, token_id: str):  # type: ignore[no-untyped-def]
            raise StorageUnavailable("memory", "get_token", "simulated outage")

        async def get_session(self, session_id: str):  # type: ignore[no-untyped-def]
            raise StorageUnavailable("memory", "get_session", "simulated outage")

    auth = AuthFramework(
        Broken(), AuthConfig(secret_key=TEST_SECRET, password_hasher=fast_password_hasher())
    )
    await auth.register_user("ned", "password")
    token = (await auth.authenticate("ned", "password")).access_token
    sid, _ = await auth.create_session("ned")
    cookie = auth_cookie(auth, sid)
    async with client(make_app(auth, retry_after=7)) as http:
        for headers in (bearer(token), {"Cookie": f"authmw_session={cookie}"}):
            response = await http.get("/whoami", headers=headers)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "7"
        assert (await http.get("/whoami")).status_code == 200


def auth_cookie(auth: AuthFramework, session_id: str) -> str:
    from authmw.middleware._cookies import SessionCookieCodec

    return SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "x").sign(session_id)


async def test_session_save_failure_is_503(auth: AuthFramework) -> None:
    """If a changed session cannot be saved, the client gets 503 instead of a lie."""
    from authmw.errors import StorageUnavailable

    await auth.register_user("oda", "password")
    async with client(make_app(auth)) as http:
        await http.post("/login", json={"user": "oda", "password": "password"})

        async def failing(session):  # type: ignore[no-untyped-def]
            raise StorageUnavailable("test", "update_session", "simulated outage")

        auth.storage.update_session = failing  # type: ignore[method-assign]
        try:
            response = await http.post(
                "/cart", json={"item": "x"}, headers={"X-CSRF-Token": http.cookies["authmw_csrf"]}
            )
        finally:
            del auth.storage.update_session  # type: ignore[method-assign]
        assert response.status_code == 503 and "retry-after" in response.headers


async def test_context_variable_isolated_between_requests(auth: AuthFramework) -> None:
    """Concurrent requests each see their own principal in current_user()."""
    tokens = {f"user{i}": await login_token(auth, f"user{i}") for i in range(20)}
    async with client(make_app(auth)) as http:
        responses = await asyncio.gather(
            *(http.get("/whoami", headers=bearer(t)) for t in tokens.values()),
            *(http.get("/whoami") for _ in range(20)),
        )
    named = [r.json() for r in responses[:20]]
    assert [b["current"] for b in named] == list(tokens)
    assert all(r.json()["current"] == "" for r in responses[20:])


async def test_context_variable_reset_after_error(auth: AuthFramework) -> None:
    """current_user() is back to anonymous after an app that raised."""
    import authmw

    token = await login_token(auth)
    async with client(make_app(auth)) as http:
        response = await http.get("/boom", headers=bearer(token))
    assert response.status_code == 500
    assert authmw.current_user().is_authenticated is False


async def ws_call(app: object, headers: dict[str, str]) -> list[dict[str, object]]:
    """Drive one websocket connection through the ASGI app on this loop; return what it sent."""
    incoming: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return await incoming.get()

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            await incoming.put({"type": "websocket.disconnect", "code": 1000})

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "scheme": "wss",
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    await asyncio.wait_for(app(scope, receive, send), 10)  # type: ignore[operator]
    return sent


async def test_websockets(auth: AuthFramework) -> None:
    """Websockets: a valid token is accepted; bad credentials close with 1008 before accept."""
    import json

    token = await login_token(auth)
    app = make_app(auth)
    sent = await ws_call(app, bearer(token))
    assert sent[0]["type"] == "websocket.accept"
    assert json.loads(str(sent[1]["text"])) == {"user": "alice"}
    anonymous = await ws_call(app, {})
    assert json.loads(str(anonymous[1]["text"])) == {"user": ""}
    for headers in (bearer("junk"), {"Authorization": "Bearer a b"}):
        refused = await ws_call(app, headers)
        assert [m["type"] for m in refused] == ["websocket.close"]
        assert refused[0]["code"] == 1008


async def test_lifespan_opens_and_closes(storage: AuthStorage) -> None:
    """The app's lifespan startup opens the framework and shutdown closes it."""
    auth = AuthFramework(
        storage, AuthConfig(secret_key=TEST_SECRET, password_hasher=fast_password_hasher())
    )
    app = make_app(auth)
    incoming: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[str] = []
    started = asyncio.Event()

    async def send(message: dict[str, str]) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await incoming.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, incoming.get, send)
    )
    await asyncio.wait_for(started.wait(), 10)
    assert auth._open
    await incoming.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 10)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert not auth._open


async def test_non_http_scopes_pass_through(auth: AuthFramework) -> None:
    """Scopes other than http/websocket/lifespan reach the app untouched."""
    seen: list[dict[str, object]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(dict(scope))

    from authmw import AuthMiddleware

    await AuthMiddleware(app, auth)({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == [{"type": "custom"}]


async def test_login_helper_needs_middleware() -> None:
    """authmw.login outside the middleware raises a clear RuntimeError."""
    from starlette.requests import Request

    import authmw

    request = Request({"type": "http", "headers": [], "method": "POST"})
    with pytest.raises(RuntimeError, match="AuthMiddleware"):
        await authmw.login(request, "x", "y")


async def test_disabled_credentials_sources(auth: AuthFramework) -> None:
    """bearer=False ignores Authorization; session_cookie=False ignores the cookie."""
    token = await login_token(auth)
    async with client(make_app(auth, bearer=False)) as http:
        body = (await http.get("/whoami", headers=bearer(token))).json()
        assert body["authenticated"] is False
    await auth.register_user("pia", "password")
    async with client(make_app(auth, session_cookie=False)) as http:
        await http.post("/login", json={"user": "pia", "password": "password"})
        assert (await http.get("/whoami")).json()["authenticated"] is False


async def test_refused_principal_never_reaches_app(auth: AuthFramework) -> None:
    """The app is not called at all for a refused bearer token."""
    calls = 0

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1

    from authmw import AuthMiddleware

    transport = httpx.ASGITransport(app=AuthMiddleware(app, auth))
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as http:
        assert (await http.get("/", headers=bearer("x"))).status_code == 401
    assert calls == 0
    assert dataclasses.is_dataclass(auth.config)
