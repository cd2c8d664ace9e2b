"""The demo app and the authmw console script, through their real entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from authmw.cli._demo_app import DEMO_PASSWORD, DEMO_USER, build_app, make_auth

ROOT = Path(__file__).resolve().parents[2]


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
        assert "Log in as" in (await client.get("/")).text
        response = await client.post("/login", data={"user": DEMO_USER, "password": DEMO_PASSWORD})
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
        bad = await client.post("/login", data={"user": DEMO_USER, "password": "wrong"})
        assert bad.status_code == 401
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
