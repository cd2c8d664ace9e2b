"""The demo app and the authmw console script, through their real entry points."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from authmw.cli._demo_app import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEMO_PASSWORD,
    DEMO_USER,
    build_app,
    make_auth,
)

ROOT = Path(__file__).resolve().parents[2]


async def log_in(client: httpx.AsyncClient, data: dict[str, str]) -> httpx.Response:
    """Post the login form as a browser does: the page first, for its CSRF token."""
    page = (await client.get("/login")).text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return await client.post("/login", data={**data, "csrf_token": token})


def authmw_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authmw.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_demo_app_login_and_api() -> None:
    """The demo app logs a browser in by form and serves its API by bearer token."""
    app = build_app(make_auth("memory://"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        refused = await client.post("/login", data={"user": DEMO_USER, "password": DEMO_PASSWORD})
        assert refused.status_code == 403 and "expired" in refused.text  # login CSRF
        page = (await client.get("/")).text
        assert "Log in as" in page
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"user": DEMO_USER, "password": DEMO_PASSWORD, "csrf_token": token}
        response = await client.post("/login", data=form)
        assert response.status_code == 303
        assert "<td id='visits'>1</td>" in (await client.get("/")).text
        assert "<td id='visits'>2</td>" in (await client.get("/")).text
        assert (await client.get("/api/me")).json()["auth_method"] == "session"
        assert (await client.post("/logout")).status_code == 403  # no CSRF header
        csrf = client.cookies["authmw_csrf"]
        out = await client.post("/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login?bye=1"
        assert (await client.get("/api/me")).status_code == 401
        token = (
            await client.post("/api/token", json={"user": DEMO_USER, "password": DEMO_PASSWORD})
        ).json()
        me = await client.get(
            "/api/me", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert me.json()["user"] == DEMO_USER and me.json()["auth_method"] == "bearer"
        page = (await client.get("/")).text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        bad = await client.post(
            "/login", data={"user": DEMO_USER, "password": "wrong", "csrf_token": token}
        )
        assert bad.status_code == 401
        client.cookies.clear()  # an API client: no session cookie, so no CSRF token either
        assert (await client.post("/api/token", content=b"not json")).status_code == 400


def test_walkthrough_runs() -> None:
    """`authmw demo --walkthrough` narrates every core flow and exits 0."""
    result = authmw_cli("demo", "--walkthrough")
    assert result.returncode == 0, result.stderr
    for line in (
        "registered user123",
        "reuse detected",
        "refused (revoked)",
        "refused (malformed)",
    ):
        assert line in result.stdout


def test_help_reads_well() -> None:
    """`authmw --help` and `authmw demo --help` describe the commands."""
    top = authmw_cli("--help")
    assert top.returncode == 0 and "demo" in top.stdout
    demo = authmw_cli("demo", "--help")
    assert demo.returncode == 0 and "--walkthrough" in demo.stdout


def test_bad_storage_url_is_one_line() -> None:
    """A bad storage URL gives a one-line message and a non-zero exit, no traceback."""
    result = authmw_cli("demo", "--walkthrough", "mysql://nowhere")
    assert result.returncode == 1
    assert "unknown storage scheme 'mysql'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_demo_pages_guard_their_actions() -> None:
    """Sign-up errors show on the form, the admin page is for role admin only, and a user can
    revoke only their own sessions."""
    auth = make_auth("memory://")
    app = build_app(auth)
    transport = httpx.ASGITransport(app=app)
    base = "http://127.0.0.1"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=base) as user,
        httpx.AsyncClient(transport=transport, base_url=base) as admin,
    ):
        taken = await user.post("/signup", data={"user": DEMO_USER, "password": "x" * 12})
        assert taken.status_code == 400 and "is taken" in taken.text and 'id="error"' in taken.text
        await log_in(user, {"user": DEMO_USER, "password": DEMO_PASSWORD})
        csrf = {"X-CSRF-Token": user.cookies["authmw_csrf"]}
        assert (await user.get("/admin")).status_code == 403
        refused = await user.post("/admin/action", data={"user": ADMIN_USER, "action": "disable"})
        assert refused.status_code == 403  # no CSRF header: refused before the role check
        refused = await user.post(
            "/admin/action", data={"user": ADMIN_USER, "action": "disable"}, headers=csrf
        )
        assert refused.status_code == 403
        await log_in(admin, {"user": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert "user-demo" in (await admin.get("/admin")).text
        admin_session = (await auth.storage.list_user_sessions(ADMIN_USER))[0]
        await user.post(
            "/sessions/revoke",
            data={"kind": "session", "id": admin_session.session_id},
            headers=csrf,
        )
        assert (await admin.get("/admin")).status_code == 200  # still logged in


def test_demo_serves_with_accounts_and_access_log() -> None:
    """`authmw demo --storage URL` prints the URL and both ready accounts, serves the pages and
    logs each request (uvicorn's access log)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "authmw.cli", "demo", "--storage", "memory://", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert f"http://127.0.0.1:{port}/" in lines[0] and "memory://" in lines[0]
        assert f"{DEMO_USER} / {DEMO_PASSWORD}" in lines[2]
        assert f"{ADMIN_USER} / {ADMIN_PASSWORD}" in lines[3]
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/login", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo did not serve within 60 s"
                time.sleep(0.1)
        assert page.status_code == 200 and 'autocomplete="current-password"' in page.text
        # uvicorn writes the access line as it answers; the loop ends there (or at exit).
        logged = any('"GET /login HTTP/1.1" 200' in line for line in proc.stdout)
        assert logged, "no access log line for GET /login"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_demo_login_returns_to_the_page_asked_for() -> None:
    """A login from a guarded page goes back to it; a `next` off the site goes home instead."""
    app = build_app(make_auth("memory://"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        asked = await client.get("/sessions", headers={"Accept": "text/html"})
        assert asked.status_code == 303 and "/login?next=" in asked.headers["location"]
        page = await client.get(asked.headers["location"])
        assert 'name="next" value="/sessions"' in page.text
        creds = {"user": DEMO_USER, "password": DEMO_PASSWORD}
        back = await log_in(client, {**creds, "next": "/sessions"})
        assert back.headers["location"] == "/sessions"
        await client.post("/logout", headers={"X-CSRF-Token": client.cookies["authmw_csrf"]})
        for elsewhere in ("//evil.example/", "https://evil.example/", "/\\x", "http:/x"):
            away = await log_in(client, {**creds, "next": elsewhere})
            assert away.headers["location"] == "/", elsewhere
            await client.post("/logout", headers={"X-CSRF-Token": client.cookies["authmw_csrf"]})
