"""Anonymous sessions, login CSRF and CSRF tokens in HTML form fields, on every backend.

Each test runs on a Starlette app (ASGI, templates through ``Jinja2Templates``) and a Flask
app (WSGI, ``AuthMW``) over each backend's storage, through an httpx client: the same routes,
the same assertions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import jinja2
import pytest
from flask import Flask, jsonify, render_template_string
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.testclient import TestClient

import authmw
from authmw import AuthFramework, AuthMiddleware, CsrfFailed
from authmw.integrations import flask as authmw_flask
from authmw.middleware import templating
from authmw.models import StorageStatistics
from authmw.storage import AuthStorage

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import Stack  # noqa: E402 - after the rewrite registration
from tests.support.wsgi_apps import client as wsgi_client  # noqa: E402

pytest_plugins = ["tests.support.wsgi_apps"]

T = TypeVar("T")

FORM = """<form method="post" action="/login">{{ csrf_field() }}
<input name="user"><input name="password" type="password"><button>Log in</button></form>
<p>token: {{ csrf_token() }}</p>"""
TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


# -- the two apps --------------------------------------------------------------------------


def starlette_app(auth: AuthFramework, **options: Any) -> Starlette:
    """The routes under test, for ASGI: session read/write, a login form, form posts."""
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.DictLoader({"f": FORM})))
    templating.install(templates)

    async def page(request: Request) -> Response:
        return JSONResponse(dict(request.session))

    async def flash(request: Request) -> Response:
        request.session["flash"] = (await request.json())["message"]
        return PlainTextResponse("ok")

    async def big(request: Request) -> Response:
        request.session["blob"] = "x" * 10_000
        return PlainTextResponse("ok")

    async def form(request: Request) -> Response:
        return templates.TemplateResponse(request, "f")

    async def login(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.json()
        else:
            body = dict(await request.form())
        try:
            user = await authmw.login(request, body["user"], body["password"])
        except CsrfFailed as exc:
            return JSONResponse({"error": exc.error}, status_code=403)
        return JSONResponse({"user": user.user_id, "session": dict(request.session)})

    async def cart(request: Request) -> Response:
        got = await request.form()
        request.session.setdefault("cart", []).append(got["item"])
        fields = {k: v for k, v in got.items() if isinstance(v, str)}
        files = {k: (await v.read()).decode() for k, v in got.items() if not isinstance(v, str)}
        return JSONResponse({"fields": fields, "files": files, "cart": request.session["cart"]})

    return Starlette(
        routes=[
            Route("/page", page),
            Route("/flash", flash, methods=["POST"]),
            Route("/big", big, methods=["POST"]),
            Route("/form", form),
            Route("/login", login, methods=["POST"]),
            Route("/cart", cart, methods=["POST"]),
        ],
        middleware=[Middleware(AuthMiddleware, auth=auth, **options)],
    )


def flask_app(auth: AuthFramework, **options: Any) -> tuple[Flask, authmw_flask.AuthMW]:
    """The same routes for WSGI, through the Flask extension (its Jinja globals included)."""
    app = Flask(__name__)
    ext = authmw_flask.AuthMW(app, auth, **options)
    session = authmw_flask.current_session

    @app.get("/page")
    def page() -> Any:
        return jsonify(dict(session))

    @app.post("/flash")
    def flash() -> Any:
        session["flash"] = flask_request.get_json()["message"]
        return "ok"

    @app.post("/big")
    def big() -> Any:
        session["blob"] = "x" * 10_000
        return "ok"

    @app.get("/form")
    def form() -> Any:
        return render_template_string(FORM)

    @app.post("/login")
    def login() -> Any:
        body = flask_request.get_json() if flask_request.is_json else flask_request.form
        try:
            user = authmw_flask.login(body["user"], body["password"])
        except CsrfFailed as exc:
            return jsonify(error=exc.error), 403
        return jsonify(user=user.user_id, session=dict(session))

    @app.post("/cart")
    def cart() -> Any:
        session.setdefault("cart", []).append(flask_request.form["item"])
        files = {k: v.read().decode() for k, v in flask_request.files.items()}
        return jsonify(fields=flask_request.form.to_dict(), files=files, cart=session["cart"])

    return app, ext


@dataclass
class Site:
    """One app on one front: an https client and a way to run framework calls on its loop."""

    client: httpx.Client
    run: Callable[[Coroutine[Any, Any, Any]], Any]
    auth: AuthFramework

    def stats(self) -> StorageStatistics:
        result: StorageStatistics = self.run(self.auth.storage.get_statistics())
        return result

    def form_token(self) -> str:
        """GET the login form (starting a session if none) and return its CSRF field."""
        page = self.client.get("/form")
        assert page.status_code == 200, page.text
        found = TOKEN.search(page.text)
        assert found is not None, page.text
        return found.group(1)


def open_site(kind: str, stack: Stack, *, register: bool = True, **options: Any) -> Iterator[Site]:
    """A :class:`Site` of ``kind`` ("asgi" or "flask") over the stack's storage, with the
    user ann registered unless ``register`` is False."""
    auth = stack.framework()
    if kind == "asgi":
        with TestClient(starlette_app(auth, **options), base_url="https://testserver") as client:

            def run(coro: Coroutine[Any, Any, T]) -> T:
                async def call() -> T:
                    return await coro

                return client.portal.call(call)

            if register:
                run(auth.register_user("ann", "password"))
            yield Site(client, run, auth)
        return
    app, ext = flask_app(auth, **options)
    assert ext.middleware is not None
    stack.adopt(ext.middleware)
    if register:
        ext.run(auth.register_user("ann", "password"))
    with wsgi_client(ext.middleware) as client:
        yield Site(client, ext.run, auth)


@pytest.fixture(params=["asgi", "flask"])
def site(request: pytest.FixtureRequest, stack: Stack) -> Iterator[Site]:
    """Each front in turn over each backend's storage."""
    yield from open_site(request.param, stack)


def cookies(response: httpx.Response) -> dict[str, str]:
    """The cookies a response sets (name -> value; "" for a deletion)."""
    return {
        c.split(";", 1)[0].split("=", 1)[0]: c.split(";", 1)[0].split("=", 1)[1]
        for c in response.headers.get_list("set-cookie")
    }


# -- anonymous sessions ----------------------------------------------------------------------


def test_read_only_visitor_gets_no_cookie_and_no_write(site: Site) -> None:
    """A visitor who only reads the session gets no cookie, and nothing is stored."""
    for _ in range(3):
        response = site.client.get("/page")
        assert response.status_code == 200 and response.json() == {}
        assert "set-cookie" not in response.headers
    stats = site.stats()
    assert (stats.active_sessions, stats.anonymous_sessions) == (0, 0)


def test_anonymous_write_creates_exactly_one_session(site: Site) -> None:
    """The first write starts one anonymous session with its cookie; later writes reuse it."""
    first = site.client.post("/flash", json={"message": "hi"})
    assert first.status_code == 200
    set_now = cookies(first)
    assert set(set_now) == {"authmw_session", "authmw_csrf"}
    assert site.client.get("/page").json() == {"flash": "hi"}
    again = site.client.post(
        "/flash", json={"message": "again"}, headers={"X-CSRF-Token": set_now["authmw_csrf"]}
    )
    assert again.status_code == 200 and "set-cookie" not in again.headers
    assert site.client.get("/page").json() == {"flash": "again"}
    stats = site.stats()
    assert (stats.active_sessions, stats.anonymous_sessions) == (1, 1)
    # An anonymous session is not a login: the visitor stays anonymous.
    assert site.client.cookies["authmw_session"] == set_now["authmw_session"]


def test_anonymous_session_needs_csrf_like_any_session(site: Site) -> None:
    """An unsafe request of an anonymous session without its token is refused (403)."""
    site.client.post("/flash", json={"message": "hi"})
    refused = site.client.post("/flash", json={"message": "forged"})
    assert refused.status_code == 403
    assert site.client.get("/page").json() == {"flash": "hi"}


def test_anonymous_session_data_is_bounded(site: Site) -> None:
    """A write above anonymous_session_max_bytes is refused with 413 and nothing is stored."""
    response = site.client.post("/big")
    assert response.status_code == 413
    assert "authmw_session" not in cookies(response)
    assert site.stats().active_sessions == 0


def test_cart_survives_login_with_a_new_session_id(site: Site) -> None:
    """A cart put in an anonymous session is in the user's session after login, under a new
    id; the pre-login id is gone (fixation impossible)."""
    token = site.form_token()
    before = site.client.cookies["authmw_session"]
    added = site.client.post("/cart", data={"item": "book", "csrf_token": token})
    assert added.status_code == 200, added.text
    logged_in = site.client.post(
        "/login", data={"user": "ann", "password": "password", "csrf_token": token}
    )
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json() == {"user": "ann", "session": {"cart": ["book"]}}
    after = site.client.cookies["authmw_session"]
    assert after != before
    assert site.client.get("/page").json() == {"cart": ["book"]}
    stats = site.stats()
    assert (stats.active_sessions, stats.anonymous_sessions) == (1, 0)
    site.client.cookies.clear()
    stale = site.client.get("/page", headers={"Cookie": f"authmw_session={before}"})
    assert stale.json() == {}
    assert "authmw_session" in cookies(stale)  # the unknown id's cookie is deleted


def test_relogin_while_logged_in(site: Site) -> None:
    """Posting the login form again while logged in works (its token is the session's)."""
    token = site.form_token()
    form = {"user": "ann", "password": "password"}
    assert site.client.post("/login", data={**form, "csrf_token": token}).status_code == 200
    again = site.client.post("/login", data={**form, "csrf_token": site.form_token()})
    assert again.status_code == 200, again.text


# -- login CSRF --------------------------------------------------------------------------------


def test_login_form_without_pre_login_session_is_refused(site: Site) -> None:
    """A login posted as a form without the pre-login session's token is refused (403)."""
    form = {"user": "ann", "password": "password"}
    assert site.client.post("/login", data=form).status_code == 403
    site.form_token()
    wrong = site.client.post("/login", data={**form, "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert "authmw_session" in site.client.cookies  # still the anonymous one
    assert site.stats().anonymous_sessions == 1


def test_json_login_needs_no_token(site: Site) -> None:
    """An API login with a JSON body (which needs a CORS preflight cross-site) works."""
    response = site.client.post("/login", json={"user": "ann", "password": "password"})
    assert response.status_code == 200, response.text


# -- CSRF tokens in form bodies ----------------------------------------------------------------


def test_urlencoded_form_with_token_passes_and_app_reads_it_all(site: Site) -> None:
    """The token in a URL-encoded field passes; the app still reads every field."""
    token = site.form_token()
    fields = {"item": "pen", "csrf_token": token, "note": "x" * 5000}
    response = site.client.post("/cart", data=fields)
    assert response.status_code == 200, response.text
    assert response.json() == {"fields": fields, "files": {}, "cart": ["pen"]}


def test_multipart_form_with_token_passes_and_app_reads_it_all(site: Site) -> None:
    """The token in a multipart field passes; the app still reads fields and files."""
    token = site.form_token()
    response = site.client.post(
        "/cart",
        data={"item": "mug", "csrf_token": token},
        files={"upload": ("a.txt", b"file body\r\n--not-a-boundary")},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fields": {"item": "mug", "csrf_token": token},
        "files": {"upload": "file body\r\n--not-a-boundary"},
        "cart": ["mug"],
    }


def test_form_with_missing_or_wrong_token_refused(site: Site) -> None:
    """A form post without its session's token is 403: JSON for APIs, a page for browsers."""
    site.form_token()
    for field in (None, "", "0" * 64, "é"):
        data = {"item": "pen"} if field is None else {"item": "pen", "csrf_token": field}
        refused = site.client.post("/cart", data=data)
        assert refused.status_code == 403
        assert refused.json()["error"] == "csrf_failed"
        page = site.client.post("/cart", data=data, headers={"Accept": "text/html"})
        assert page.status_code == 403
        assert page.headers["content-type"].startswith("text/html")
        assert "<h1>403 Forbidden</h1>" in page.text
        multipart = site.client.post("/cart", data=data, files={"f": ("f", b"x")})
        assert multipart.status_code == 403
    assert site.client.get("/page").json() == {}


def test_form_above_the_bound_is_refused(stack: Stack) -> None:
    """A form whose token must be read from a body above max_form_bytes is refused (413)."""
    for kind in ("asgi", "flask"):
        for site in open_site(kind, stack, register=False, max_form_bytes=2048):
            token = site.form_token()
            small = site.client.post("/cart", data={"item": "a", "csrf_token": token})
            assert small.status_code == 200, small.text
            big = {"item": "b", "csrf_token": token, "pad": "x" * 4096}
            assert site.client.post("/cart", data=big).status_code == 413
            # With the token in the header the body is not buffered, so no bound applies.
            header = site.client.post("/cart", data=big, headers={"X-CSRF-Token": token})
            assert header.status_code == 200, header.text
            # Nor without a session cookie (another site cookie only): nothing to check.
            site.client.cookies.clear()
            other = site.client.post("/cart", data=big, headers={"Cookie": "theme=dark"})
            assert other.status_code == 200, other.text


# -- timeouts and the framework API ------------------------------------------------------------


async def test_anonymous_sessions_have_shorter_timeouts(auth: AuthFramework) -> None:
    """An anonymous session gets the anonymous idle/absolute timeouts and no user."""
    session_id, record = await auth.create_anonymous_session({"flash": "hi"})
    assert record.user_id is None
    assert record.expires_at - record.created_at == timedelta(minutes=30)
    assert record.absolute_expires_at - record.created_at == timedelta(hours=12)
    got = await auth.get_session(session_id)
    assert got.data == {"flash": "hi"} and got.user_id is None
    assert await auth.destroy_session(session_id) is True


# -- Starlette's SessionMiddleware alongside -------------------------------------------------


@pytest.mark.parametrize("outer", ["starlette", "authmw"])
def test_starlette_session_middleware_alongside(released_storage: AuthStorage, outer: str) -> None:
    """With Starlette's SessionMiddleware outside or inside AuthMiddleware, no response
    crashes: request.session is Starlette's, authmw's data is at scope["authmw.session"],
    and both survive a login."""
    auth = Stack(released_storage).framework()

    async def write(request: Request) -> Response:
        request.session["theirs"] = 1
        request.scope["authmw.session"]["cart"] = ["book"]
        return JSONResponse({})

    async def login(request: Request) -> Response:
        await authmw.login(request, "ann", "password")
        return JSONResponse(
            {"session": dict(request.session), "authmw": request.scope["authmw.session"]}
        )

    theirs = Middleware(SessionMiddleware, secret_key="k" * 32, https_only=True)
    ours = Middleware(AuthMiddleware, auth=auth)
    app = Starlette(
        routes=[Route("/write", write, methods=["POST"]), Route("/login", login, methods=["POST"])],
        middleware=[theirs, ours] if outer == "starlette" else [ours, theirs],
    )
    with TestClient(app, base_url="https://testserver") as client:
        client.portal.call(auth.register_user, "ann", "password")
        written = client.post("/write")
        assert written.status_code == 200
        assert {"session", "authmw_session"} <= set(cookies(written))
        token = client.cookies["authmw_csrf"]
        logged_in = client.post(
            "/login", json={"user": "ann", "password": "password"}, headers={"X-CSRF-Token": token}
        )
        assert logged_in.status_code == 200, logged_in.text
        assert logged_in.json()["authmw"] == {"cart": ["book"]}
        assert logged_in.json()["session"] == {"theirs": 1}
