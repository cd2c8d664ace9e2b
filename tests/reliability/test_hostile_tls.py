"""Hostile input that TLS and HTTP/2 bring, beyond the surfaces test_hostile_http.py already
sends over them (its ``uvicorn-tls`` and ``hypercorn-h2`` fronts).

Over HTTPS (uvicorn) and HTTP/2 (hypercorn, ALPN), with a throwaway CA and certificate: the
session cookie is Secure and a real client's jar sends it back over https; many concurrent
streams on one HTTP/2 connection, valid and forged credentials mixed, each answered with its
own principal; a session cookie split into separate cookie fields among others (RFC 9113
8.2.3) still authenticates; thousands of headers never make a 5xx or the wrong principal.
Cases count into the reliability report (tests/reliability/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authmw import AuthFramework, InMemoryStorage
from tests.support import tls
from tests.support.hostile import authorization_values, cookie_values
from tests.support.reliability import (
    CASES,
    FORMS,
    IN_PROCESS,
    OTHER_PASSWORD,
    TLS_SERVERS,
    VICTIM_PASSWORD,
    Front,
    Seeded,
    check_reply,
    examples,
    front,
    fuzz_settings,
    make_config,
    seed,
    starlette_app,
)

ANONYMOUS = {"authenticated": False, "user": ""}
VICTIM = {"authenticated": True, "user": "victim"}
OTHER = {"authenticated": True, "user": "other"}
#: Cookies a browser sends beside the session's (HTTP/2 may send each as its own field).
NEIGHBOURS = [b"theme=dark", b"lang=en-GB", b"_ga=GA1.2.3.4", b"consent=yes"]

servers = pytest.mark.parametrize("server", TLS_SERVERS)


@dataclass
class Served:
    """The reliability app over TLS: a Front for raw requests, the port, the seeded users."""

    front: Front
    port: int
    victim: Seeded
    other_token: str


@contextmanager
def served(server: str) -> Iterator[Served]:
    """A fresh app on ``server`` with the victim and the other user seeded (and a bearer token
    for the other user too)."""
    auth = AuthFramework(InMemoryStorage(), make_config())
    with tls.served(server, starlette_app(auth)) as port, tls.client(server) as client:
        front = Front(server, tls.httpx_caller(client, port, tls.HTTP_VERSIONS[server]))
        victim = seed(front)
        issued = front.send(
            "POST", "/token", json_body={"user": "other", "password": OTHER_PASSWORD}
        )
        assert issued.status == 200, issued
        yield Served(front, port, victim, issued.json()["access_token"])


def split_cookie(session: str) -> list[tuple[bytes, bytes]]:
    """The session cookie as its own cookie field among others, as HTTP/2 may send it."""
    own = b"authmw_session=" + session.encode()
    return [(b"cookie", NEIGHBOURS[0]), (b"cookie", own), *((b"cookie", n) for n in NEIGHBOURS[1:])]


@servers
def test_session_cookie_secure_over_https(server: str) -> None:
    """The session cookie is set Secure and HttpOnly, and a real client's jar sends it back
    over https: the login holds for a read and for a CSRF-checked write."""
    auth = AuthFramework(InMemoryStorage(), make_config())
    with tls.served(server, starlette_app(auth)) as port, tls.client(server) as client:
        body = {"user": "victim", "password": VICTIM_PASSWORD}
        assert client.post(tls.url(port, "/signup"), json=body).status_code == 201
        login = client.post(tls.url(port, "/login"), json=body)
        assert login.status_code == 200 and login.http_version == tls.HTTP_VERSIONS[server]
        session = next(
            v for v in login.headers.get_list("set-cookie") if v.startswith("authmw_session=")
        )
        attributes = {a.strip().lower() for a in session.split(";")[1:]}
        assert {"secure", "httponly"} <= attributes, session
        whoami = client.get(tls.url(port, "/whoami"))  # the jar's cookies, nothing by hand
        assert whoami.json() == VICTIM, whoami.text
        cart = client.post(
            tls.url(port, "/cart"),
            json={"item": "tls"},
            headers={"x-csrf-token": client.cookies["authmw_csrf"]},
        )
        assert cart.status_code == 200 and cart.json()["cart"] == ["tls"], cart.text


@servers
def test_split_session_cookie_authenticates(server: str) -> None:
    """A session cookie sent as its own cookie field among others authenticates, for a read
    and for a write with its CSRF token; a forged one split the same way does not."""
    with served(server) as app:
        victim = app.victim
        reply = app.front.send("GET", "/whoami", split_cookie(victim.session))
        assert reply.status == 200 and reply.json() == VICTIM, reply
        headers = [
            *split_cookie(victim.session),
            (b"cookie", b"authmw_csrf=" + victim.csrf.encode()),
            (b"x-csrf-token", victim.csrf.encode()),
        ]
        reply = app.front.send("POST", "/cart", headers, json_body={"item": "split"})
        assert reply.status == 200 and reply.json()["cart"] == ["seed", "split"], reply
        reply = app.front.send("GET", "/whoami", split_cookie(victim.session[:-2] + "xx"))
        assert reply.status == 200 and reply.json() == ANONYMOUS, reply


@pytest.mark.parametrize("front_name", [*IN_PROCESS, "uvicorn", "werkzeug"])
def test_split_session_cookie_other_fronts(front_name: str) -> None:
    """Cookie fields handed over uncombined (an ASGI scope's repeated headers) or joined with a
    comma as WSGI servers join any repeated header: the session in its own field among others
    still authenticates, for a read and for a write with its CSRF token."""
    with front(front_name) as app:
        victim = seed(app)
        reply = app.send("GET", "/whoami", split_cookie(victim.session))
        assert reply.status == 200 and reply.json() == VICTIM, reply
        headers = [
            *split_cookie(victim.session),
            (b"cookie", b"authmw_csrf=" + victim.csrf.encode()),
            (b"x-csrf-token", victim.csrf.encode()),
        ]
        reply = app.send("POST", "/cart", headers, json_body={"item": "split"})
        assert reply.status == 200 and reply.json()["cart"] == ["seed", "split"], reply


# -- many concurrent streams on one HTTP/2 connection ---------------------------------------------


VALID_KINDS = ["victim-bearer", "other-bearer", "victim-cookie", "other-cookie", "victim-split"]


def forged_values(victim: Seeded) -> st.SearchStrategy[tuple[str, bytes]]:
    """A forged credential: the hostile generators' Authorization and Cookie values as the
    client sends them, never holding a real token or session id."""
    token = victim.access_token.encode()
    sessions = (victim.session.encode(), victim.other_session.encode())
    return st.one_of(
        authorization_values(victim.access_token)
        .map(tls.sendable)
        .filter(lambda v: token not in v)
        .map(lambda v: ("forged-bearer", v)),
        cookie_values(victim.session, victim.csrf)
        .map(tls.sendable)
        .filter(lambda v: not any(s in v for s in sessions))
        .map(lambda v: ("forged-cookie", v)),
    )


@st.composite
def stream_batches(draw: st.DrawFn, victim: Seeded) -> list[tuple[str, Any]]:
    """100 to 250 streams' credentials: valid ones of either user (bearer, cookie, split
    cookie), none, or forged ones. The forged values (up to 8, some of them kilobytes long)
    are drawn once and reused, which keeps a batch within Hypothesis's data budget."""
    forged = draw(st.lists(forged_values(victim), min_size=1, max_size=8))
    kinds = draw(
        st.lists(st.sampled_from([*VALID_KINDS, "nothing", "forged"]), min_size=100, max_size=250)
    )
    return [
        forged[i % len(forged)] if kind == "forged" else (kind, None)
        for i, kind in enumerate(kinds)
    ]


def stream_request(
    kind: str, value: bytes | None, app: Served
) -> tuple[list[tuple[bytes, bytes]], dict[str, Any] | None]:
    """The headers for one stream and the principal it must get (None: anonymous or refused)."""
    victim = app.victim
    bearer = {"victim-bearer": victim.access_token, "other-bearer": app.other_token}
    cookie = {"victim-cookie": victim.session, "other-cookie": victim.other_session}
    if kind in bearer:
        return [(b"authorization", f"Bearer {bearer[kind]}".encode())], (
            VICTIM if kind == "victim-bearer" else OTHER
        )
    if kind in cookie:
        return [(b"cookie", f"authmw_session={cookie[kind]}".encode())], (
            VICTIM if kind == "victim-cookie" else OTHER
        )
    if kind == "victim-split":
        return split_cookie(victim.session), VICTIM
    if kind == "nothing":
        return [], ANONYMOUS
    assert value is not None
    return [(b"authorization" if kind == "forged-bearer" else b"cookie", value)], None


async def streams(app: Served, batch: list[tuple[str, Any]]) -> None:
    """``batch`` as concurrent GET /whoami streams on one HTTP/2 connection; each answer is
    its own credential's principal."""
    async with httpx.AsyncClient(
        verify=tls.client_context(),
        http2=True,
        timeout=60,
        limits=httpx.Limits(max_connections=1),  # every stream on the one connection
    ) as client:
        requests = [stream_request(kind, value, app) for kind, value in batch]
        replies = await asyncio.gather(
            *(client.get(tls.url(app.port, "/whoami"), headers=h) for h, _ in requests)
        )
    for (kind, value), (_, expected), reply in zip(batch, requests, replies, strict=True):
        assert reply.http_version == "HTTP/2", reply.http_version
        assert reply.status_code < 500 and b"Traceback" not in reply.content, reply.text
        if expected is not None:
            assert reply.status_code == 200 and reply.json() == expected, (kind, reply.text)
        elif reply.status_code == 200:
            assert reply.json() == ANONYMOUS, (kind, value, reply.text)
        else:
            assert reply.status_code in (400, 401), (kind, value, reply.status_code)


@pytest.mark.parametrize("form", FORMS)
def test_concurrent_streams_no_crossed_principals(form: str) -> None:
    """Batches of 100 to 250 concurrent streams on one HTTP/2 connection, valid credentials of
    two users mixed with forged ones: every stream gets its own principal, never another's."""
    # Bounded: 3 batches (300 to 750 streams); long: AUTHMW_FUZZ_LONG_EXAMPLES / 50 batches.
    batches = max(3, examples(form, server=True) // (16 if form == "bounded" else 50))
    with served("hypercorn-h2") as app:

        @fuzz_settings(batches)
        @given(batch=stream_batches(app.victim))
        def case(batch: list[tuple[str, Any]]) -> None:
            CASES["h2-streams", "hypercorn-h2"] += len(batch)
            asyncio.run(streams(app, batch))

        case()


@servers
@pytest.mark.parametrize("form", FORMS)
def test_many_headers(server: str, form: str) -> None:
    """Hundreds to thousands of headers (fillers, and cookie fields around the session's):
    never a 5xx, never another principal; a request within the server's limits is served."""
    with served(server) as app:
        victim = app.victim

        # Thousands of headers cost the client as much as the server: half the server count
        # (25) in the bounded form, at most 200 in the long one.
        @fuzz_settings(min(examples(form, server=True) // (2 if form == "bounded" else 1), 200))
        @given(
            fillers=st.integers(0, 3000),
            cookies=st.integers(0, 500),
            size=st.integers(1, 40),
            valid=st.booleans(),
        )
        def case(fillers: int, cookies: int, size: int, valid: bool) -> None:
            CASES["many-headers", server] += 1
            session = victim.session if valid else victim.session[:-2] + "xx"
            cookie_fields = [(b"cookie", b"c%d=%s" % (i, b"v" * size)) for i in range(cookies)]
            headers = [
                *((b"x-filler-%d" % i, b"f" * size) for i in range(fillers)),
                *cookie_fields[: cookies // 2],
                (b"cookie", b"authmw_session=" + session.encode()),
                *cookie_fields[cookies // 2 :],
            ]
            reply = app.front.send("GET", "/whoami", headers)
            check_reply(reply)
            if reply.status == 200:
                assert reply.json() == (VICTIM if valid else ANONYMOUS), reply
            else:  # the server's header limits: a clean refusal, or no answer
                assert reply.status in (400, 413, 431, 0), reply
            total = sum(len(k) + len(v) + 32 for k, v in headers)  # RFC 9113 6.5.2's size
            if total < 8_000:  # well inside both servers' limits: must be served
                assert reply.status == 200, (total, reply)

        case()
