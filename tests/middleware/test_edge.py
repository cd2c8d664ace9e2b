"""The edge decision: the async path and the synchronous fast path give the same answers.

``Edge.authenticate`` awaits the look-up; ``Edge.authenticate_nowait`` (WSGI's fast path) asks
for an in-memory answer. Over a ``CachedStorage`` whose cache holds the records, both must answer
every row of DESIGN.md's edge table alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from authmw import AuthFramework, InMemoryStorage, MiddlewareOptions
from authmw.middleware._cookies import SessionCookieCodec
from authmw.middleware._edge import Edge, Refusal, RequestState
from authmw.storage import CachedStorage
from authmw.testing import test_config
from authmw.tokens import ACCESS

OLD_KEY = "an-older-secret-key-0123456789abcdef01234"

Request = tuple[str, bytes | None, str | None, str | None]  # method, Authorization, Cookie, CSRF


def outcome(result: RequestState | Refusal | None) -> Any:
    """What a client can observe of an answer: the refusal, or the principal and cookies."""
    if result is None or isinstance(result, Refusal):
        return result
    return (
        result.user.display_name,
        getattr(result.user, "auth_method", None),
        result.session_id,
        result.set_cookie,
        result.delete_cookie,
    )


class Fixture:
    """A framework over a cached memory storage with a user, a token and sessions."""

    def __init__(self, auth: AuthFramework, edge: Edge) -> None:
        self.auth, self.edge = auth, edge
        self.token = self.cookie = self.old_cookie = self.gone_cookie = self.csrf = ""
        self.old_csrf = ""


@pytest.fixture
async def world() -> AsyncIterator[Fixture]:
    """A user "ann" with a token, a session (its cookie signed under the current and an old
    key), and the cookie of a session that has ended."""
    auth = AuthFramework(
        CachedStorage(InMemoryStorage()), test_config(secret_key_fallbacks=[OLD_KEY])
    )
    await auth.open()
    edge = Edge(auth, MiddlewareOptions())
    built = Fixture(auth, edge)
    await auth.register_user("ann", "password", roles=["admin"])
    built.token = (await auth.authenticate("ann", "password")).access_token
    session_id, _ = await auth.create_session("ann")
    built.cookie = f"authmw_session={edge.cookies.sign(session_id)}"
    built.csrf = edge.cookies.csrf_token(session_id)
    old_codec = SessionCookieCodec([OLD_KEY.encode()], auth.config.cookie, "authmw_csrf")
    built.old_cookie = f"authmw_session={old_codec.sign(session_id)}"
    built.old_csrf = old_codec.csrf_token(session_id)
    gone_id, _ = await auth.create_session("ann")
    built.gone_cookie = f"authmw_session={edge.cookies.sign(gone_id)}"
    await auth.destroy_session(gone_id)
    yield built
    await auth.close()


def requests(w: Fixture) -> dict[str, Request]:
    """One request per row of the edge table (the rows of EXPECTED)."""
    bearer = f"Bearer {w.token}".encode()
    tampered = w.cookie[:-2] + ("A" if w.cookie[-2] != "A" else "B") + w.cookie[-1]
    with_csrf = f"{w.cookie}; authmw_csrf={w.csrf}"
    return {
        "nothing": ("GET", None, None, None),
        "another scheme": ("GET", b"Basic dXNlcjpwYXNz", None, None),
        "bearer": ("GET", bearer, None, None),
        "bearer, unsafe method, no csrf": ("POST", bearer, None, None),
        "forged bearer": ("GET", b"Bearer forged.token", None, None),
        "malformed bearer": ("GET", b"Bearer ", None, None),
        "malformed bearer beats a cookie": ("GET", b"Bearer a b", w.cookie, None),
        "bearer beats a cookie": ("GET", bearer, w.cookie, None),
        "cookie": ("GET", None, w.cookie, None),
        "cookie under an old key": ("GET", None, w.old_cookie, None),
        "tampered cookie": ("GET", None, tampered, None),
        "other cookies only": ("GET", None, "theme=dark", None),
        "cookie, unsafe method, no csrf": ("POST", None, w.cookie, None),
        "cookie, unsafe method, csrf header only": ("POST", None, w.cookie, w.csrf),
        "cookie, unsafe method, csrf": ("POST", None, with_csrf, w.csrf),
        "cookie, unusual method, no csrf": ("PROPFIND", None, w.cookie, None),
        "cookie, lower-case method, no csrf": ("post", None, w.cookie, None),
        "cookie, unsafe method, non-ASCII csrf": ("POST", None, f"{w.cookie}; authmw_csrf=é", "é"),
        "cookie, unsafe method, csrf under an old key": (
            "POST",
            None,
            f"{w.cookie}; authmw_csrf={w.old_csrf}",
            w.old_csrf,
        ),
        "ended session": ("GET", None, w.gone_cookie, None),
    }


EXPECTED = {
    "nothing": ("<anonymous>", None),
    "another scheme": ("<anonymous>", None),
    "bearer": ("ann", "bearer"),
    "bearer, unsafe method, no csrf": ("ann", "bearer"),
    "forged bearer": 401,
    "malformed bearer": 400,
    "malformed bearer beats a cookie": 400,
    "bearer beats a cookie": ("ann", "bearer"),
    "cookie": ("ann", "session"),
    "cookie under an old key": ("ann", "session"),
    "tampered cookie": ("<anonymous>", None),
    "other cookies only": ("<anonymous>", None),
    "cookie, unsafe method, no csrf": 403,
    "cookie, unsafe method, csrf header only": 403,
    "cookie, unsafe method, csrf": ("ann", "session"),
    "cookie, unusual method, no csrf": 403,
    "cookie, lower-case method, no csrf": 403,
    "cookie, unsafe method, non-ASCII csrf": 403,
    "cookie, unsafe method, csrf under an old key": ("ann", "session"),
    "ended session": ("<anonymous>", None),
}


@pytest.mark.parametrize("case", list(EXPECTED))
async def test_both_paths_answer_alike(world: Fixture, case: str) -> None:
    """Each row of the edge table: the async answer is the documented one, and the fast path
    (once the cache holds the record) gives the same answer without I/O."""
    method, authorization, cookie, csrf = requests(world)[case]
    edge = world.edge
    answer = await edge.authenticate(method, authorization, cookie, csrf)
    expected = EXPECTED[case]
    if isinstance(expected, int):
        assert isinstance(answer, Refusal) and answer.status == expected
    else:
        assert isinstance(answer, RequestState)
        assert (
            answer.user.display_name if answer.user.is_authenticated else "<anonymous>",
            getattr(answer.user, "auth_method", None),
        ) == expected
    fast = edge.authenticate_nowait(method, authorization, cookie, csrf)
    if case == "ended session" and fast is None:
        return  # a cache may keep no record of a session that ended: the loop then answers
    assert fast is not None, "the fast path gave up on an answer it can give without I/O"
    assert outcome(fast) == outcome(answer)


async def test_cookie_flags(world: Fixture) -> None:
    """An old-key cookie is re-signed, a tampered or ended one deleted, a current one kept."""
    req = requests(world)
    for case, set_cookie, delete_cookie in [
        ("cookie", False, False),
        ("cookie under an old key", True, False),
        ("cookie, unsafe method, csrf under an old key", True, False),
        ("tampered cookie", False, True),
        ("ended session", False, True),
    ]:
        state = await world.edge.authenticate(*req[case])
        assert isinstance(state, RequestState)
        assert (state.set_cookie, state.delete_cookie) == (set_cookie, delete_cookie), case


async def test_refusal_headers(world: Fixture) -> None:
    """401 and 400 carry RFC 6750 challenges; the CSRF 403 names the header to send."""
    req = requests(world)
    forged = await world.edge.authenticate(*req["forged bearer"])
    malformed = await world.edge.authenticate(*req["malformed bearer"])
    csrf = await world.edge.authenticate(*req["cookie, unsafe method, no csrf"])
    assert isinstance(forged, Refusal) and isinstance(malformed, Refusal)
    assert isinstance(csrf, Refusal)
    assert dict(forged.headers)["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert dict(malformed.headers)["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert csrf.body["error"] == "csrf_failed" and "X-CSRF-Token" in csrf.body["error_description"]


def test_fast_path_gives_up_without_a_memory_answer() -> None:
    """Over a storage that cannot answer from memory (Redis without the cache), the fast path
    always defers (None), even for a request it could refuse or pass without storage."""
    from authmw.storage.redis import RedisConfig, RedisStorage

    auth = AuthFramework(RedisStorage(RedisConfig(url="redis://127.0.0.1:1/0")), test_config())
    edge = Edge(auth, MiddlewareOptions())  # never opened: the fast path needs no I/O to decide
    unknown = auth._codec.mint(ACCESS).token.encode()
    assert edge.authenticate_nowait("GET", b"Bearer " + unknown, None, None) is None
    assert edge.authenticate_nowait("GET", b"Bearer forged.token", None, None) is None
    assert edge.authenticate_nowait("GET", None, None, None) is None


async def test_finish_fast_twin(world: Fixture) -> None:
    """finish_nowait gives finish's cookies when nothing needs saving, and defers (None) only
    when the session's data changed."""
    edge, req = world.edge, requests(world)
    for case in ("nothing", "bearer", "cookie", "cookie under an old key", "tampered cookie"):
        state = await edge.authenticate(*req[case])
        assert isinstance(state, RequestState)
        fast = edge.finish_nowait(state)
        assert fast is not None and fast == await edge.finish(state), case
    resigned = await edge.authenticate(*req["cookie under an old key"])
    deleted = await edge.authenticate(*req["tampered cookie"])
    assert isinstance(resigned, RequestState) and isinstance(deleted, RequestState)
    assert [c.split("=")[0] for c in edge.finish_nowait(resigned) or []] == [
        "authmw_session",
        "authmw_csrf",
    ]
    assert all("Max-Age=0" in c for c in edge.finish_nowait(deleted) or ["missing"])
    changed = await edge.authenticate(*req["cookie"])
    assert isinstance(changed, RequestState)
    changed.session["cart"] = ["tea"]
    assert edge.finish_nowait(changed) is None
    assert await edge.finish(changed) == []
    assert edge.finish_nowait(changed) == []  # saved: nothing left to do
    assert (await world.auth.get_session(changed.session_id or "")).data == {"cart": ["tea"]}
