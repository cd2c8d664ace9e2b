"""Hypothesis strategies for hostile input: near misses of real credentials, any bytes, huge
values, NUL bytes, non-UTF-8, repeated headers, confusable user ids, odd bodies."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from authmw._accounts import normalize_user_id
from authmw.errors import InvalidInput

B64TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
MEGABYTE = 1 << 20

#: Strings that look like "victim" to a person (or to a sloppy comparison) and are not it.
CONFUSABLES = [
    "v\u0456ctim",  # Cyrillic i
    "VICTIM",
    "Victim",
    "victim\u200b",  # zero-width space
    "\uff56\uff49\uff43\uff54\uff49\uff4d",  # fullwidth
    "victi\u0301m",
    "victim ",
    " victim",
    "victim\x00",
    "victim\x00admin",
    "vic\ttim",
    "victim\n",
    "\u202evictim",  # right-to-left override
    "victim\ud800",  # lone surrogate
    "victim" * 1000,
]

#: Values every text field gets tried with: empty, 1 MB, NUL bytes, control characters.
EXTREMES = [
    "",
    "\x00",
    "a\x00b",
    "x" * MEGABYTE,
    "\x00" * 1024,
    "\ud800",
    "\r\n",
    "%00",
    "${jndi:ldap://x}",
    "' OR 1=1 --",
    "{victim}",
    "{{7*7}}",
    "\u0000" * 3 + "victim",
]


@st.composite
def near_miss(draw: st.DrawFn, original: str) -> str:
    """``original`` with one character replaced, removed or inserted (never unchanged)."""
    i = draw(st.integers(0, len(original) - 1))
    edit = draw(st.sampled_from(["replace", "delete", "insert", "case", "truncate"]))
    if edit == "delete":
        return original[:i] + original[i + 1 :]
    if edit == "truncate":
        return original[:i]
    if edit == "case" and original[i].swapcase() != original[i]:
        return original[:i] + original[i].swapcase() + original[i + 1 :]
    char = draw(st.characters(codec="utf-8").filter(lambda c: c != original[i]))
    if edit == "insert":
        return original[:i] + char + original[i:]
    return original[:i] + char + original[i + 1 :]


def any_bytes(max_size: int = 200) -> st.SearchStrategy[bytes]:
    """Any bytes, non-UTF-8 and huge ones included."""
    return st.one_of(
        st.binary(max_size=max_size),
        st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\x80" * 40]),
        st.integers(4000, 9000).map(lambda n: b"A" * n),
    )


def utf8(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda s: s.encode("utf-8", "surrogatepass"))


def authorization_values(token: str) -> st.SearchStrategy[bytes]:
    """Authorization headers: garbage, near misses of a real token, odd schemes and gaps."""
    texts = st.text(alphabet=B64TOKEN + '= \t,;"\\', max_size=80)
    return st.one_of(
        any_bytes(),
        st.builds(lambda raw: b"Bearer " + raw, any_bytes(120)),
        utf8(st.builds(lambda t: f"Bearer {t}", near_miss(token))),
        utf8(
            st.builds(
                lambda scheme, gap, rest: f"{scheme}{gap}{rest}",
                st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Digest", "", "Bearer,"]),
                st.sampled_from([" ", "  ", "\t", "", "\x00"]),
                texts,
            )
        ),
        st.just(f"Bearer {token} {token}".encode()),
        st.just(f"Bearer {token},Bearer x".encode()),
    )


def cookie_values(session: str, csrf: str) -> st.SearchStrategy[bytes]:
    """Cookie headers: any bytes, near misses of a real session cookie, odd quoting, long."""
    value = st.one_of(
        near_miss(session),
        st.text(max_size=80),
        st.just(""),
        near_miss(session).map(lambda v: f'"{v}"'),
        st.sampled_from(EXTREMES[:3]),
    )
    pairs = st.lists(
        st.tuples(
            st.sampled_from(["authmw_session", "authmw_csrf", "AUTHMW_SESSION", "other", ""]),
            value,
        ),
        max_size=4,
    )
    return st.one_of(
        any_bytes(300),
        utf8(
            st.builds(
                lambda items, sep: sep.join(f"{k}={v}" for k, v in items),
                pairs,
                st.sampled_from(["; ", ";", ", ", "&"]),
            )
        ),
        st.builds(lambda n: b"authmw_session=" + b"A" * n, st.integers(3000, 9000)),
        st.just(f"authmw_session={session[:-3]}; authmw_csrf={csrf}".encode()),
    )


def header_lists(name: bytes, values: st.SearchStrategy[bytes]) -> st.SearchStrategy[Any]:
    """The header ``name`` once or repeated (up to three times)."""
    return st.lists(values, min_size=1, max_size=3).map(lambda vs: [(name, v) for v in vs])


def csrf_values(csrf: str, other_csrf: str, *, ascii_only: bool) -> st.SearchStrategy[bytes]:
    """CSRF header values that must all be refused: missing characters, another user's token,
    any bytes (non-ASCII ones only when not ``ascii_only``)."""
    tokens = st.one_of(
        near_miss(csrf).filter(lambda t: t != csrf),
        st.just(other_csrf),
        st.just(""),
        st.text(B64TOKEN, max_size=80),
        st.just(csrf + " "),
        st.just(" " + csrf),
        st.just(csrf.upper()) if csrf.upper() != csrf else st.just(csrf + "x"),
    )
    if ascii_only:
        return tokens.map(lambda t: t.encode("ascii", "ignore")).filter(
            lambda b: b.strip() != csrf.encode()
        )
    return st.one_of(utf8(tokens), any_bytes(120)).filter(lambda b: b.strip() != csrf.encode())


def json_field() -> st.SearchStrategy[Any]:
    """A JSON value where a string is expected: hostile strings, or another type."""
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(CONFUSABLES + EXTREMES),
        st.none(),
        st.integers(),
        st.booleans(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        st.floats(allow_nan=False),
    )


def same_account(user_id: str, other: str) -> bool:
    """Whether ``user_id`` is ``other``'s account under the one user-id rule (NFKC, casefold,
    strip): "VICTIM" or full-width "victim" with the victim's password is the victim's login."""
    try:
        return normalize_user_id(user_id) == normalize_user_id(other)
    except InvalidInput:
        return False


def credential_bodies(password: str) -> st.SearchStrategy[bytes]:
    """Login and sign-up bodies: JSON objects with hostile fields, the victim's id with wrong
    passwords, other JSON, bytes that are not JSON, deep nesting, form encoding."""

    def encode(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")

    objects = st.fixed_dictionaries(
        {},
        optional={
            "user": st.one_of(json_field(), st.just("victim")),
            "password": st.one_of(
                json_field(), near_miss(password).filter(lambda p: p != password)
            ),
            "extra": json_field(),
        },
    ).map(encode)
    return st.one_of(
        objects,
        st.builds(
            lambda p: encode({"user": "victim", "password": p}),
            st.one_of(json_field(), near_miss(password).filter(lambda p: p != password)),
        ),
        st.builds(
            lambda u: encode({"user": u, "password": password}),
            st.sampled_from([c for c in CONFUSABLES if not same_account(c, "victim")]),
        ),
        any_bytes(300),
        st.just(b"[" * 100_000 + b"]" * 100_000),
        st.just(b'{"user": "victim", "password": "' + b"\x00" * 10 + b'"}'),
        st.just(b'{"user": "victim", "user": "other", "password": 1e999}'),
        st.just(f"user=victim&password={password}x".encode()),
        st.just(encode({"user": "victim", "password": "p" * MEGABYTE})),
    )


def odd_content_types() -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [
            b"application/json",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"text/plain",
            b"application/json; charset=utf-7",
            b"",
            b"\xff",
        ]
    )
