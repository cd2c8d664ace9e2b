"""Hostile HTTP input at every front: Authorization headers, cookies, CSRF headers and form
fields, login and sign-up bodies, over Starlette, FastAPI and Flask in-process and over uvicorn
and werkzeug (gunicorn in the long form), and over TLS: uvicorn serving HTTPS and hypercorn
serving HTTP/2, with httpx (header bytes it refuses sent as tests/support/tls.py says).

Invariants, for every case: never a 5xx, never a traceback in a body, never a principal
without the victim's valid credentials, and never a stored record changed by a refused request
(the app's ``/_snapshot`` before and after). The bounded form runs in the normal suite; the
long one (``-m long``, ``scripts/reliability``) runs 10,000 cases per surface and front.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.support.hostile import (
    any_bytes,
    authorization_values,
    cookie_values,
    credential_bodies,
    csrf_values,
    header_lists,
    odd_content_types,
)
from tests.support.reliability import (
    CASES,
    FORMS,
    FRONTS,
    IN_PROCESS,
    VICTIM_PASSWORD,
    Front,
    Reply,
    Seeded,
    check_reply,
    examples,
    front,
    fuzz_settings,
    seed,
)

ANONYMOUS = {"authenticated": False, "user": ""}

pytestmark = pytest.mark.parametrize("form", FORMS)
front_names = pytest.mark.parametrize("front_name", FRONTS)


def count(form: str, front_name: str) -> int:
    return examples(form, server=front_name not in IN_PROCESS)


def anonymous_or_refused(reply: Reply) -> None:
    """The app served the request anonymously, or the edge refused it cleanly."""
    check_reply(reply)
    if reply.status == 200:
        assert reply.json() == ANONYMOUS, reply.body
    else:
        assert reply.status in (400, 401, 403, 404, 405, 413, 422, 429, 431, 0), reply


@front_names
def test_authorization_headers(front_name: str, form: str) -> None:
    """Garbage, near-miss and repeated Authorization headers: anonymous or 400/401, no change."""
    with front(front_name) as app:
        victim = seed(app)
        before = app.snapshot()

        @fuzz_settings(count(form, front_name))
        @given(
            method=st.sampled_from(["GET", "POST"]),
            headers=header_lists(b"authorization", authorization_values(victim.access_token)),
        )
        def case(method: str, headers: list[tuple[bytes, bytes]]) -> None:
            CASES["authorization", front_name] += 1
            reply = app.send(method, "/whoami", headers)
            anonymous_or_refused(reply)
            if reply.status in (400, 401) and reply.header("content-type") == ["application/json"]:
                assert reply.header("www-authenticate"), reply  # the edge's refusal, not a server's
            if form == "long":  # every case; the bounded form checks once at the end
                assert app.snapshot() == before

        case()
        assert app.snapshot() == before


@front_names
def test_cookies(front_name: str, form: str) -> None:
    """Any Cookie headers (bytes, non-UTF-8, long, repeated, near misses of the victim's):
    never the victim, never a change to its session."""
    with front(front_name) as app:
        victim = seed(app)
        before = app.snapshot()

        @fuzz_settings(count(form, front_name))
        @given(
            path=st.sampled_from(["/whoami", "/cart"]),
            headers=header_lists(b"cookie", cookie_values(victim.session, victim.csrf)),
            csrf=st.booleans(),
        )
        def case(path: str, headers: list[tuple[bytes, bytes]], csrf: bool) -> None:
            CASES["cookie", front_name] += 1
            if csrf:  # the victim's real CSRF token does not help without its cookie
                headers = [*headers, (b"x-csrf-token", victim.csrf.encode())]
            reply = app.send("POST" if path == "/cart" else "GET", path, headers, b"{}")
            anonymous_or_refused(reply)
            if form == "long":  # every case; the bounded form checks once at the end
                assert app.snapshot() == before

        case()
        assert app.snapshot() == before


def csrf_case(app: Front, victim: Seeded, front_name: str, ascii_only: bool, form: str) -> None:
    before = app.snapshot()

    @fuzz_settings(count(form, front_name))
    @given(
        method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
        header=st.one_of(
            st.none(), csrf_values(victim.csrf, victim.other_csrf, ascii_only=ascii_only)
        ),
        cookie_csrf=st.one_of(
            st.just(victim.csrf),
            st.just(victim.other_csrf),
            st.none(),
            csrf_values(victim.csrf, victim.other_csrf, ascii_only=ascii_only).map(
                lambda b: b.decode("latin-1")
            ),
        ),
        content_type=odd_content_types(),
        field=st.sampled_from(["csrf_token", "csrfmiddlewaretoken", "_csrf", "authmw_csrf"]),
        override=st.sampled_from([None, b"GET", b"HEAD", b"OPTIONS"]),
    )
    def case(
        method: str,
        header: bytes | None,
        cookie_csrf: str | None,
        content_type: bytes,
        field: str,
        override: bytes | None,
    ) -> None:
        # The token in the csrf_token field of a URL-encoded form, with its cookie, is how an
        # HTML form sends it (MiddlewareOptions.csrf_field; tests/middleware/test_form_field.py).
        assume(
            not (
                header is None
                and cookie_csrf == victim.csrf
                and field == "csrf_token"
                and content_type == b"application/x-www-form-urlencoded"
            )
        )
        CASES["csrf-ascii" if ascii_only else "csrf-any", front_name] += 1
        cookie = f"authmw_session={victim.session}"
        if cookie_csrf is not None:
            cookie += f"; authmw_csrf={cookie_csrf}"
        headers = [
            (b"cookie", cookie.encode("latin-1", "replace")),
            (b"content-type", content_type),
        ]
        if header is not None:
            headers.append((b"x-csrf-token", header))
        if override is not None:  # method override headers must not make a POST "safe"
            headers += [(b"x-http-method-override", override), (b"x-method-override", override)]
        # The valid token in another form field, or in a body that is not a URL-encoded form,
        # is no substitute for the header.
        body = f"{field}={victim.csrf}&item=evil".encode()
        path = "/cart" if method == "POST" else "/whoami"
        reply = app.send(method, path, headers, body)
        check_reply(reply)
        assert reply.status in (400, 403, 431), reply
        assert app.snapshot() == before

    case()
    assert app.snapshot() == before


@front_names
def test_csrf_ascii(front_name: str, form: str) -> None:
    """Unsafe requests of a logged-in session with a missing, wrong, other user's, or
    form-field CSRF token, any content type, and method-override headers: 403, no change."""
    with front(front_name) as app:
        csrf_case(app, seed(app), front_name, True, form)


@front_names
def test_csrf_any_bytes(front_name: str, form: str) -> None:
    """As test_csrf_ascii, with any bytes (non-ASCII, non-UTF-8) in the CSRF header and cookie."""
    with front(front_name) as app:
        csrf_case(app, seed(app), front_name, False, form)


@front_names
def test_unusual_methods_need_csrf(front_name: str, form: str) -> None:
    """Every method except GET, HEAD, OPTIONS and TRACE needs the CSRF token: odd, lower-case
    and WebDAV methods of a logged-in session without it are refused, never a 500."""
    with front(front_name) as app:
        victim = seed(app)
        before = app.snapshot()

        @fuzz_settings(min(count(form, front_name), 200))
        @given(
            method=st.one_of(
                st.sampled_from(
                    ["PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "post", "get", "Get", "PURGE"]
                ),
                st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&'*+-.^_`|~", min_size=1, max_size=12),
            ).filter(lambda m: m not in ("GET", "HEAD", "OPTIONS", "TRACE"))
        )
        def case(method: str) -> None:
            CASES["method", front_name] += 1
            cookie = f"authmw_session={victim.session}; authmw_csrf={victim.csrf}"
            reply = app.send(method, "/cart", [(b"cookie", cookie.encode())], b'{"item": "x"}')
            check_reply(reply)
            assert reply.status in (400, 403, 405, 431), reply
            if form == "long":  # every case; the bounded form checks once at the end
                assert app.snapshot() == before

        case()
        assert app.snapshot() == before


def body_case(app: Front, front_name: str, form: str, path: str) -> None:
    victim = seed(app)
    before = app.snapshot()

    @fuzz_settings(count(form, front_name))
    @given(
        body=credential_bodies(VICTIM_PASSWORD),
        content_type=odd_content_types(),
        cookie=st.sampled_from([None, victim.victim_cookie()]),
    )
    def case(body: bytes, content_type: bytes, cookie: bytes | None) -> None:
        CASES[path.strip("/"), front_name] += 1
        headers = [(b"content-type", content_type)]
        if cookie is not None:  # logged-in client without the CSRF header
            headers.append((b"cookie", cookie))
        reply = app.send("POST", path, headers, body)
        check_reply(reply)
        after = app.snapshot()
        if path == "/login" or reply.status != 201:
            assert reply.status in (400, 401, 403, 404, 405, 409, 413, 422, 429, 431, 0), reply
            assert after == before
        else:  # a sign-up that is valid creates exactly one user, nothing else
            assert after["counts"][0] == before["counts"][0] + 1
            assert after["counts"][1:] == before["counts"][1:]
            assert {k: v for k, v in after.items() if k != "counts"} == {
                k: v for k, v in before.items() if k != "counts"
            }
            before.update(after)

    case()


@front_names
def test_login_bodies(front_name: str, form: str) -> None:
    """Hostile login bodies (wrong types, confusables of the victim, NUL, 1 MB, not JSON,
    deep nesting): never a session or a 5xx; nothing but failure counters changes."""
    with front(front_name) as app:
        body_case(app, front_name, form, "/login")


@front_names
def test_signup_bodies(front_name: str, form: str) -> None:
    """Hostile sign-up bodies: a refused sign-up changes nothing, an accepted one adds one
    user and touches no other record (the victim's least of all)."""
    with front(front_name) as app:
        body_case(app, front_name, form, "/signup")


@front_names
def test_any_header_anywhere(front_name: str, form: str) -> None:
    """Any bytes in any of the headers the middleware reads, at once, on any path."""
    with front(front_name) as app:
        seed(app)  # the victim's records are what must not change
        before = app.snapshot()

        @fuzz_settings(count(form, front_name))
        @given(
            method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "DELETE"]),
            path=st.sampled_from(["/whoami", "/cart", "/logout", "/nowhere", "/_snapshot/x"]),
            values=st.lists(
                st.tuples(
                    st.sampled_from(
                        [b"authorization", b"cookie", b"x-csrf-token", b"origin", b"user-agent"]
                    ),
                    any_bytes(),
                ),
                max_size=6,
            ),
        )
        def case(method: str, path: str, values: list[tuple[bytes, bytes]]) -> None:
            CASES["any-header", front_name] += 1
            reply = app.send(method, path, values, b"")
            check_reply(reply)
            if reply.status == 200 and path == "/whoami" and method in ("GET", "POST", "DELETE"):
                assert reply.json() == ANONYMOUS
            if form == "long":  # every case; the bounded form checks once at the end
                assert app.snapshot() == before

        case()
        assert app.snapshot() == before
